"""Compile keys, the compiled-kernel cache (memory + disk) and the launch path.

* A :class:`CompileKey` names one compiled kernel: family, target, and the frozen config
  (dtypes, static dims, tile choices). Token counts are never in it: they stay dynamic.
* :class:`KernelCache` keeps compiled kernels in memory and on disk. Disk entries live in
  ``<cache_dir>/<fingerprint>/`` where the fingerprint hashes our kernel sources (and the
  codec tables they trace) and the
  cutlass-dsl / tvm-ffi versions, so an upgrade or a kernel edit never loads a stale
  binary. Writers take a per-entry file lock and publish with an atomic rename, so
  several worker processes starting together compile each kernel once.
* Entries verify themselves: the metadata records each file's size and SHA-256, checked on
  every load. A damaged entry (truncated, flipped bytes, unreadable metadata, an object the
  loader rejects) is evicted and recompiled with one log line, so it heals on the next start
  instead of failing every start. A lock held longer than ``lock_timeout`` seconds raises an
  error naming the lock file and the process holding it.
* Compile dumps (the cubin kept for the cache and the SASS checks) go to a private
  directory of this process, one fresh subdirectory per compile, removed once read.
* Kernels are compiled with TVM-FFI when ``tvm_ffi`` is importable (torch tensors are
  passed straight through, the lowest host overhead cutlass-dsl offers), else with the
  DLPack path.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import fcntl
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .._env import package_version, settings

log = logging.getLogger("trtllm_b12x")
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


_DUMP_ROOT: tuple[int, str] | None = None  # (pid, directory): a forked child makes its own
_made_dumps = threading.local()  # dump directories this thread's compiles made, removed once read


def _dump_root() -> str:
    """This process's private dump directory (mode 0700), removed at exit."""
    global _DUMP_ROOT
    if _DUMP_ROOT is None or _DUMP_ROOT[0] != os.getpid():
        path = tempfile.mkdtemp(prefix=f"trtllm-b12x-dumps-{os.getpid()}-")
        atexit.register(shutil.rmtree, path, True)
        _DUMP_ROOT = (os.getpid(), path)
    return _DUMP_ROOT[1]


def compile_options(target, tvm_ffi: bool) -> str:
    """``cute.compile`` options of every kernel: the explicit target (a GPU-less machine
    would otherwise silently target sm_100a), the cubin kept for the cache and SASS checks.
    Each compile dumps into a fresh subdirectory of this process's private directory: the
    DSL cuts long kernel names, so two configs could otherwise write the same file name."""
    dump = tempfile.mkdtemp(prefix="c", dir=_dump_root())
    _made_dumps.__dict__.setdefault("dirs", []).append(dump)
    return f"--gpu-arch {target.name} --keep-cubin --dump-dir={dump}" + (" --enable-tvm-ffi" if tvm_ffi else "")


class CacheLockTimeout(TimeoutError):
    """Another process held a cache entry's compile lock for longer than the timeout."""


def _digest(data: bytes) -> dict:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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
    lock_timeout: float | None = None  # seconds; None: the configured default
    stats: CacheStats = field(default_factory=CacheStats)
    _mem: dict = field(default_factory=dict, repr=False)

    @property
    def directory(self) -> Path:
        return Path(self.root or settings().cache_dir) / source_fingerprint()

    def entries(self) -> list[dict]:
        """Metadata of the readable entries of this fingerprint."""
        out = []
        for p in sorted(self.directory.glob("*.json")) if self.directory.exists() else ():
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue  # damaged: evicted on its next load
        return out

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
            ck = self._load(key, obj, evict=False)
            if ck is None:
                with self._locked(d / f"{key.digest}.lock", key):  # one compiler per entry across processes
                    ck = self._load(key, obj, evict=True)
                    if ck is None:
                        ck = self._compile(key, build)
                        self._store(key, ck, obj)
        self._mem[key] = ck
        return ck

    # -- internals -------------------------------------------------------------------------
    def _compile(self, key: CompileKey, build: Callable[[], Any]) -> CompiledKernel:
        t0 = time.perf_counter()
        _made_dumps.dirs = []
        try:
            compiled = build()
            self.stats.compiled += 1
            ck = CompiledKernel(key, compiled, "compiled", time.perf_counter() - t0)
            artifacts = getattr(compiled, "artifacts", None)
            cubin = getattr(artifacts, "CUBIN", None) if artifacts is not None else None
            if isinstance(cubin, (str, os.PathLike)):  # some DSL versions give the dumped file
                cubin = Path(cubin).read_bytes()
            ck.cubin = cubin
        finally:
            for d in _made_dumps.dirs:
                shutil.rmtree(d, ignore_errors=True)
            _made_dumps.dirs = []
        return ck

    @contextlib.contextmanager
    def _locked(self, path: Path, key: CompileKey):
        """The entry's exclusive lock; the holder's pid and host are written into the file so a
        waiter can say who holds it. Waits at most ``lock_timeout`` seconds."""
        timeout = settings().lock_timeout_s if self.lock_timeout is None else self.lock_timeout
        with open(path, "a+") as f:
            t0 = time.monotonic()
            told = False
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = time.monotonic() - t0
                    if waited >= timeout:
                        raise CacheLockTimeout(
                            f"compile cache lock {path} ({key.label}) is held by {_holder(path)}; waited "
                            f"{waited:.0f} s (limit {timeout:g} s, TRTLLM_B12X_LOCK_TIMEOUT); if that process is "
                            "stuck, stop it or point TRTLLM_B12X_CACHE_DIR elsewhere"
                        ) from None
                    if not told and waited >= min(5.0, timeout / 2):
                        log.info("trtllm-b12x: waiting for compile cache lock %s held by %s", path, _holder(path))
                        told = True
                    time.sleep(0.05)
            try:
                f.seek(0)
                f.truncate()
                f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
                f.flush()
                yield
            finally:
                f.truncate(0)
                fcntl.flock(f, fcntl.LOCK_UN)

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
            "files": {".o": _digest(data), ".cubin": _digest(ck.cubin or b"")},
        }
        files = [(obj, data), (obj.with_suffix(".cubin"), ck.cubin or b"")]
        # metadata last: its presence marks a complete entry
        files.append((obj.with_suffix(".json"), json.dumps(meta, indent=1).encode()))
        for path, payload in files:
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(payload)
            os.replace(tmp, path)  # atomic publish: readers see all or nothing

    def _load(self, key: CompileKey, obj: Path, *, evict: bool) -> CompiledKernel | None:
        """The entry, verified; None when absent or damaged (``evict``: then removed, with one
        log line; without the lock a half-replaced entry only sends us to the locked path)."""
        meta_path = obj.with_suffix(".json")
        if not (obj.exists() and meta_path.exists()):
            return None
        t0 = time.perf_counter()
        try:
            meta = json.loads(meta_path.read_text())
            if meta["key"] != key.fields():
                return None  # digest collision or a hand-edited entry: recompile
            blobs = {suffix: obj.with_suffix(suffix).read_bytes() for suffix in (".o", ".cubin")}
            for suffix, want in meta["files"].items():
                if _digest(blobs[suffix]) != want:
                    raise ValueError(f"{obj.with_suffix(suffix).name}: {len(blobs[suffix])} bytes, sha256 "
                                     f"{_digest(blobs[suffix])['sha256'][:12]}; recorded {want['size']} bytes, "
                                     f"sha256 {want['sha256'][:12]}")
            fn = self._link(key, obj, meta)
        except Exception as exc:  # any damage: unreadable, truncated, altered, rejected by the loader
            if evict:
                self._evict(obj, key, f"{type(exc).__name__}: {exc}")
            return None
        self.stats.disk_hits += 1
        return CompiledKernel(key, fn, "disk", time.perf_counter() - t0, blobs[".cubin"] or None)

    @staticmethod
    def _link(key: CompileKey, obj: Path, meta: dict):
        _load_runtime_libraries()
        from cutlass.cute.runtime import load_module

        module = load_module(str(obj), enable_tvm_ffi=False)
        if key.tvm_ffi:
            import tvm_ffi

            ptr = module.engine.lookup(f"{meta['prefix']}___tvm_ffi_{meta['function_name']}")
            return tvm_ffi.Function.__from_extern_c__(ptr, keep_alive_object=module.engine)
        return getattr(module, meta["prefix"])

    @staticmethod
    def _evict(obj: Path, key: CompileKey, why: str) -> None:
        for suffix in (".json", ".o", ".cubin"):  # metadata first: the entry stops being complete
            obj.with_suffix(suffix).unlink(missing_ok=True)
        log.warning("trtllm-b12x: compile cache entry %s (%s) is damaged (%s); evicted, recompiling",
                    obj.with_suffix(""), key.label, why)


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process (no pid recorded)"
    except OSError:
        return "another process"


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

        # dynamic layouts, as compiled from the fake tensors. Every tensor: a one-element one (a
        # decode batch of one routed pair) left static would reach a kernel compiled for a
        # symbolic size with the wrong size. All our kernel tensors are row-major, so the
        # leading dimension is the last (size-1 dimensions leave it ambiguous otherwise).
        args = [from_dlpack(t, assumed_align=16).mark_layout_dynamic(leading_dim=t.dim() - 1)
                if isinstance(t, torch.Tensor) else t for t in tensors]
        ck.fn(*args, CUstream(stream))
