"""Compile keys, the compiled-kernel cache (memory + disk) and the launch path.

* A :class:`CompileKey` names one compiled kernel: family, target, and the frozen config
  (dtypes, static dims, tile choices). Token counts are never in it: they stay dynamic.
* :class:`KernelCache` keeps compiled kernels in memory and on disk. Disk entries live in
  ``<cache_dir>/<fingerprint>/`` where the fingerprint hashes our kernel sources (and the
  codec tables they trace) and the
  cutlass-dsl / tvm-ffi versions, so an upgrade or a kernel edit never loads a stale
  binary. Writers take a per-entry file lock and publish with an atomic rename, so
  several worker processes starting together compile each kernel once.
* Kernels are compiled with TVM-FFI when ``tvm_ffi`` is importable (torch tensors are
  passed straight through, the lowest host overhead cutlass-dsl offers), else with the
  DLPack path.
"""

from __future__ import annotations

import ctypes
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import tempfile
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .._env import package_version, settings

_KERNEL_DIR = Path(__file__).resolve().parent
_TRACED_SOURCES = (_KERNEL_DIR.parent / "quantization" / "codecs.py",)  # tables traced into kernels


@dataclass(frozen=True)
class CompileKey:
    """Identity of one compiled kernel. ``config`` is a frozen dataclass of static choices."""

    family: str
    arch: str
    config: Any
    tvm_ffi: bool

    def fields(self) -> dict:
        return {"family": self.family, "arch": self.arch, "tvm_ffi": self.tvm_ffi, **dataclasses.asdict(self.config)}

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()[:24]

    @property
    def label(self) -> str:
        cfg = ",".join(f"{k}={v}" for k, v in dataclasses.asdict(self.config).items())
        return f"{self.family}[{self.arch}]({cfg})"


@functools.lru_cache(maxsize=1)
def have_tvm_ffi() -> bool:
    return importlib.util.find_spec("tvm_ffi") is not None


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """Hash of every kernel source file plus the compiler and FFI versions."""
    h = hashlib.sha256()
    sources = sorted(_KERNEL_DIR.rglob("*.py")) + list(_TRACED_SOURCES)
    for path in sources:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    h.update(f"cutlass-dsl={package_version('nvidia-cutlass-dsl')};tvm-ffi={package_version('apache-tvm-ffi')}".encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _load_runtime_libraries() -> None:
    """Make the DSL's host runtime (and libtvm_ffi) visible to loaded kernel objects."""
    from cutlass.runtime import find_runtime_libraries

    for lib in find_runtime_libraries(enable_tvm_ffi=have_tvm_ffi()):
        ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


def compile_options(target, tvm_ffi: bool) -> str:
    """``cute.compile`` options of every kernel: the explicit target (a GPU-less machine
    would otherwise silently target sm_100a), the cubin kept for the cache and SASS checks
    (its file copy goes to a temporary directory, not the working directory)."""
    dump = os.path.join(tempfile.gettempdir(), "trtllm-b12x-dumps")
    os.makedirs(dump, exist_ok=True)
    return f"--gpu-arch {target.name} --keep-cubin --dump-dir={dump}" + (" --enable-tvm-ffi" if tvm_ffi else "")


@dataclass
class CompiledKernel:
    key: CompileKey
    fn: Callable  # the launcher; arguments as the kernel's __call__ declares
    origin: str  # "compiled" | "disk"
    seconds: float  # compile or load time
    cubin: bytes | None = None  # the device binary (kept on disk beside the host object)


@dataclass
class CacheStats:
    compiled: int = 0
    disk_hits: int = 0
    memory_hits: int = 0


@dataclass
class KernelCache:
    """Memory + disk cache of compiled kernels. ``directory=None`` uses the configured root."""

    root: Path | None = None
    use_disk: bool = True
    stats: CacheStats = field(default_factory=CacheStats)
    _mem: dict = field(default_factory=dict, repr=False)

    @property
    def directory(self) -> Path:
        return Path(self.root or settings().cache_dir) / source_fingerprint()

    def entries(self) -> list[dict]:
        d = self.directory
        return [json.loads(p.read_text()) for p in sorted(d.glob("*.json"))] if d.exists() else []

    def clear(self) -> None:
        """Forget every compiled kernel, in memory and on disk (all fingerprints)."""
        self._mem.clear()
        shutil.rmtree(Path(self.root or settings().cache_dir), ignore_errors=True)

    def get(self, key: CompileKey, build: Callable[[], Any]) -> CompiledKernel:
        """The kernel for ``key``: from memory, else disk, else ``build()`` (a ``cute.compile``
        that keeps its cubin)."""
        hit = self._mem.get(key)
        if hit is not None:
            self.stats.memory_hits += 1
            return hit
        if not self.use_disk:
            ck = self._compile(key, build)
        else:
            d = self.directory
            d.mkdir(parents=True, exist_ok=True)
            obj = d / f"{key.digest}.o"
            ck = self._load(key, obj)
            if ck is None:
                with open(d / f"{key.digest}.lock", "w") as lock:
                    fcntl.flock(lock, fcntl.LOCK_EX)  # one compiler per entry across processes
                    ck = self._load(key, obj)
                    if ck is None:
                        ck = self._compile(key, build)
                        self._store(key, ck, obj)
        self._mem[key] = ck
        return ck

    # -- internals -------------------------------------------------------------------------
    def _compile(self, key: CompileKey, build: Callable[[], Any]) -> CompiledKernel:
        t0 = time.perf_counter()
        compiled = build()
        self.stats.compiled += 1
        ck = CompiledKernel(key, compiled, "compiled", time.perf_counter() - t0)
        artifacts = getattr(compiled, "artifacts", None)
        cubin = getattr(artifacts, "CUBIN", None) if artifacts is not None else None
        if isinstance(cubin, (str, os.PathLike)):  # with --dump-dir the artifact is the file
            cubin = Path(cubin).read_bytes()
        ck.cubin = cubin
        return ck

    def _store(self, key: CompileKey, ck: CompiledKernel, obj: Path) -> None:
        _load_runtime_libraries()
        prefix = f"b12x_{key.digest}"
        data = ck.fn.dump_to_object(prefix)
        meta = {
            "key": key.fields(),
            "label": key.label,
            "prefix": prefix,
            "function_name": ck.fn.function_name,
            "compile_seconds": ck.seconds,
            "created": time.time(),
        }
        files = [(obj, data), (obj.with_suffix(".cubin"), ck.cubin or b"")]
        # metadata last: its presence marks a complete entry
        files.append((obj.with_suffix(".json"), json.dumps(meta, indent=1).encode()))
        for path, payload in files:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(payload)
            os.replace(tmp, path)  # atomic publish: readers see all or nothing

    def _load(self, key: CompileKey, obj: Path) -> CompiledKernel | None:
        meta_path = obj.with_suffix(".json")
        if not (obj.exists() and meta_path.exists()):
            return None
        t0 = time.perf_counter()
        meta = json.loads(meta_path.read_text())
        if meta["key"] != key.fields():
            return None  # digest collision or a hand-edited entry: recompile
        _load_runtime_libraries()
        from cutlass.cute.runtime import load_module

        module = load_module(str(obj), enable_tvm_ffi=False)
        if key.tvm_ffi:
            import tvm_ffi

            ptr = module.engine.lookup(f"{meta['prefix']}___tvm_ffi_{meta['function_name']}")
            fn = tvm_ffi.Function.__from_extern_c__(ptr, keep_alive_object=module.engine)
        else:
            fn = getattr(module, meta["prefix"])
        cubin = obj.with_suffix(".cubin").read_bytes() if obj.with_suffix(".cubin").exists() else None
        self.stats.disk_hits += 1
        return CompiledKernel(key, fn, "disk", time.perf_counter() - t0, cubin or None)


@functools.lru_cache(maxsize=1)
def default_cache() -> KernelCache:
    """The process-wide cache (configured by TRTLLM_B12X_CACHE_DIR)."""
    return KernelCache()


def launch(ck: CompiledKernel, *tensors) -> None:
    """Call a compiled kernel on torch tensors (and int scalars) on the current stream (TVM-FFI or DLPack)."""
    # the raw handle getter costs well under a microsecond; torch.cuda.current_stream() ~5 µs
    stream = torch._C._cuda_getCurrentRawStream(tensors[0].device.index)
    if ck.key.tvm_ffi:
        ck.fn(*tensors, stream)
    else:
        from cuda.bindings.driver import CUstream
        from cutlass.cute.runtime import from_dlpack

        # dynamic layouts, as compiled from the fake tensors (one-element tensors stay static)
        args = [from_dlpack(t, assumed_align=16) if isinstance(t, torch.Tensor) else t for t in tensors]
        args = [a if not isinstance(t, torch.Tensor) or t.numel() == 1 else a.mark_layout_dynamic()
                for a, t in zip(args, tensors)]
        ck.fn(*args, CUstream(stream))
