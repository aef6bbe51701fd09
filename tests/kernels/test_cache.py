import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from trtllm_b12x.arch import get_target
from trtllm_b12x.kernels import cache as cache_mod
from trtllm_b12x.kernels.cache import CompileKey, KernelCache
from trtllm_b12x.kernels.quantize import QuantizeConfig, get_kernel

pytestmark = pytest.mark.compile
T90 = get_target("sm_90a")


def test_same_key_compiles_once_then_loads_from_disk(tmp_path):
    cfg = QuantizeConfig(1024)
    c1 = KernelCache(root=tmp_path)
    a = get_kernel(cfg, T90, cache=c1)
    b = get_kernel(cfg, T90, cache=c1)
    assert a is b and c1.stats.compiled == 1 and c1.stats.memory_hits == 1
    c2 = KernelCache(root=tmp_path)  # a new process would start like this
    d = get_kernel(cfg, T90, cache=c2)
    assert c2.stats.compiled == 0 and c2.stats.disk_hits == 1 and d.origin == "disk"
    assert d.seconds < 1.0
    (entry,) = c2.entries()
    assert entry["key"]["hidden"] == 1024 and entry["key"]["arch"] == "sm_90a"
    get_kernel(QuantizeConfig(1024, sf_layout="swizzled"), T90, cache=c2)
    assert c2.stats.compiled == 1 and len(c2.entries()) == 2
    c2.clear()
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_changed_source_changes_fingerprint_and_recompiles(tmp_path, monkeypatch):
    src = tmp_path / "kernels"
    shutil.copytree(cache_mod._KERNEL_DIR, src, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache_mod, "_KERNEL_DIR", src)
    cache_mod.source_fingerprint.cache_clear()
    try:
        before = cache_mod.source_fingerprint()
        c = KernelCache(root=tmp_path / "cache")
        get_kernel(QuantizeConfig(512), T90, cache=c)
        (src / "quantize.py").write_text((src / "quantize.py").read_text() + "\n# edited\n")
        cache_mod.source_fingerprint.cache_clear()
        assert cache_mod.source_fingerprint() != before
        c2 = KernelCache(root=tmp_path / "cache")
        get_kernel(QuantizeConfig(512), T90, cache=c2)
        assert c2.stats.compiled == 1 and c2.stats.disk_hits == 0
    finally:
        cache_mod.source_fingerprint.cache_clear()


def test_every_config_field_changes_the_key():
    base = CompileKey("nvfp4_quantize", "sm_90a", QuantizeConfig(2048), True)
    variants = [
        dataclasses.replace(base, arch="sm_120a"),
        dataclasses.replace(base, tvm_ffi=False),
        dataclasses.replace(base, family="other"),
        dataclasses.replace(base, config=QuantizeConfig(4096)),
        dataclasses.replace(base, config=QuantizeConfig(2048, dtype="float16")),
        dataclasses.replace(base, config=QuantizeConfig(2048, sf_layout="swizzled")),
        dataclasses.replace(base, config=QuantizeConfig(2048, threads=128)),
    ]
    digests = {base.digest} | {v.digest for v in variants}
    assert len(digests) == len(variants) + 1


def test_two_processes_make_one_entry(tmp_path):
    script = textwrap.dedent(
        f"""
        import json
        from trtllm_b12x.arch import get_target
        from trtllm_b12x.kernels.cache import KernelCache
        from trtllm_b12x.kernels.quantize import QuantizeConfig, get_kernel
        c = KernelCache(root={str(tmp_path)!r})
        get_kernel(QuantizeConfig(768), get_target("sm_120a"), cache=c)
        print(json.dumps({{"compiled": c.stats.compiled, "disk": c.stats.disk_hits}}))
        """
    )
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(o["compiled"] for o in outs) == 1 and sum(o["disk"] for o in outs) == 1
    objs = [p for p in tmp_path.rglob("*.o")]
    assert len(objs) == 1 and not list(tmp_path.rglob("*.tmp"))


def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # 4 KiB of flipped bytes in the middle: same size, different content
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 4096]) + data[mid + 4096 :])


@pytest.mark.parametrize("suffix, how", [(".o", "truncated"), (".json", "empty"), (".o", "flipped"),
                                         (".cubin", "flipped"), (".cubin", "truncated")])
def test_a_damaged_entry_is_evicted_recompiled_and_heals(tmp_path, caplog, suffix, how):
    cfg = QuantizeConfig(512)
    get_kernel(cfg, T90, cache=KernelCache(root=tmp_path))
    (obj,) = tmp_path.rglob("*.o")
    _damage(obj.with_suffix(suffix), how)
    c = KernelCache(root=tmp_path)
    with caplog.at_level("WARNING", logger="trtllm_b12x"):
        ck = get_kernel(cfg, T90, cache=c)
    assert ck.origin == "compiled" and c.stats.compiled == 1 and c.stats.disk_hits == 0
    (msg,) = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert str(obj.with_suffix("")) in msg and "evicted, recompiling" in msg
    healed = KernelCache(root=tmp_path)
    assert get_kernel(cfg, T90, cache=healed).origin == "disk" and healed.stats.compiled == 0


def test_a_held_lock_times_out_naming_the_lock_and_its_holder(tmp_path):
    import fcntl

    cfg = QuantizeConfig(512)
    c = KernelCache(root=tmp_path, lock_timeout=0.3)
    key = CompileKey("nvfp4_quantize", "sm_90a", cfg, False)
    c.directory.mkdir(parents=True)
    lock = c.directory / f"{key.digest}.lock"
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 4242 on builder-7\n")
        held.flush()
        with pytest.raises(cache_mod.CacheLockTimeout, match=r"lock .*\.lock .* is held by pid 4242 on builder-7"):
            c.get(key, lambda: pytest.fail("compiled while another process held the lock"))


def test_compile_dumps_are_private_per_compile_and_removed(tmp_path):
    import os
    import re
    import stat

    opts = [cache_mod.compile_options(T90, False) for _ in range(2)]
    dirs = [re.search(r"--dump-dir=(\S+)", o)[1] for o in opts]
    root = cache_mod._dump_root()
    assert dirs[0] != dirs[1] and all(os.path.dirname(d) == root for d in dirs)
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700 and str(os.getpid()) in os.path.basename(root)
    c = KernelCache(root=tmp_path)
    ck = get_kernel(QuantizeConfig(256), T90, cache=c)
    assert ck.cubin and ck.cubin[:4] == b"\x7fELF"
    leftovers = [p for p in os.listdir(root) if p not in {os.path.basename(d) for d in dirs}]
    assert leftovers == []  # the compile's own dump directory was removed once its cubin was read
