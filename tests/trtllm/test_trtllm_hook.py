"""The three activation paths: the .pth startup hook (in fresh interpreters), the
--custom_module_dirs package, and the explicit call."""

import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import trtllm_b12x.trtllm as adapter
from trtllm_layers import FAKES, PACKAGES

REPO = Path(__file__).resolve().parents[2]
BUDGET_S = 0.050

_MEASURE = """
import json, sys, time
before_mods, before_meta = set(sys.modules), list(sys.meta_path)
t0 = time.perf_counter()
import trtllm_b12x
import trtllm_b12x.trtllm._hook as hook
armed = hook.install()
dt = time.perf_counter() - t0
new = [m for m in set(sys.modules) - before_mods if m.split(".")[0] not in sys.stdlib_module_names]
print(json.dumps({"dt": dt, "armed": armed, "new": sorted(new),
                  "meta_added": [type(f).__name__ for f in sys.meta_path if f not in before_meta],
                  "hooks": sum(type(f).__name__ == "MoEImportHook" for f in sys.meta_path),
                  "meta_kept": all(f in sys.meta_path for f in before_meta)}))
"""


def _run(code, *, env_extra=None, pythonpath=(), no_site=False, cwd=REPO, repo_on_path=True):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", adapter.ENV_DISABLE)}
    # -S keeps site-packages importable (torch, for the double) through PYTHONPATH, its .pth files unrun
    site_packages = [sysconfig.get_paths()["purelib"]] if no_site and repo_on_path else []
    env["PYTHONPATH"] = os.pathsep.join([*([str(REPO)] if repo_on_path else []), *map(str, pythonpath),
                                         *site_packages])
    env.update(env_extra or {})
    # -S: no site-packages .pth runs at start, so a hook installed in this environment (a wheel
    # install) does not change what a test measures; tests add their own site directory
    argv = [sys.executable, *(["-S"] if no_site else []), "-c", code]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _python(code, **kw):
    done = _run(code, **kw)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_hook_costs_under_50ms_and_changes_nothing_without_tensorrt_llm():
    runs = [json.loads(_python(_MEASURE, no_site=True)) for _ in range(3)]  # best of 3: a cold disk cache
    assert min(r["dt"] for r in runs) < BUDGET_S, [r["dt"] for r in runs]
    r = runs[-1]
    assert r["armed"] is True and r["meta_kept"] and r["meta_added"] == ["MoEImportHook"] and r["hooks"] == 1
    assert set(r["new"]) <= {"trtllm_b12x", "trtllm_b12x.trtllm", "trtllm_b12x.trtllm._hook"}, r["new"]


def test_opted_out_hook_installs_nothing():
    r = json.loads(_python(_MEASURE, env_extra={adapter.ENV_DISABLE: "1"}, no_site=True))
    assert r["armed"] is False and r["meta_added"] == [] and r["hooks"] == 0


def test_with_the_hook_already_installed_at_startup_there_is_one_finder(site_dir):
    """What a wheel install leaves: the .pth ran at start; arming again adds nothing."""
    r = json.loads(_python(f"import site; site.addsitedir({str(site_dir)!r})\n" + _MEASURE, no_site=True))
    assert r["armed"] is True and r["meta_added"] == [] and r["hooks"] == 1


def test_pth_is_a_silent_no_op_once_the_package_is_gone(site_dir, tmp_path):
    """After ``pip uninstall`` a copied hook stays in site-packages: Python must start cleanly."""
    done = _run(f"import site, sys; site.addsitedir({str(site_dir)!r}); "
                "print(sum(type(f).__name__ == 'MoEImportHook' for f in sys.meta_path))",
                no_site=True, cwd=tmp_path, repo_on_path=False)
    assert done.returncode == 0 and done.stderr == "" and done.stdout.strip() == "0"


def test_pth_reports_a_broken_package_in_one_line_and_python_starts(site_dir, tmp_path):
    broken = tmp_path / "pkgs" / "trtllm_b12x"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('half-installed')\n")
    done = _run(f"import site; site.addsitedir({str(site_dir)!r}); print('started')", no_site=True, cwd=tmp_path,
                repo_on_path=False, pythonpath=[broken.parent])
    assert done.returncode == 0 and done.stdout.strip() == "started"
    assert done.stderr.strip().splitlines() == [
        "trtllm-b12x: startup hook not loaded (RuntimeError('half-installed')); TensorRT-LLM runs stock"]


@pytest.fixture
def site_dir(tmp_path):
    """A site directory holding the shipped .pth file, as site-packages would."""
    shutil.copy(adapter.hook_file(), tmp_path / "trtllm_b12x_hook.pth")
    return tmp_path


@pytest.mark.parametrize("gen", ["G1", "G2"])
def test_pth_enables_in_a_fresh_interpreter_when_tensorrt_llm_loads(site_dir, gen):
    code = (f"import site, sys; site.addsitedir({str(site_dir)!r}); "
            "import trtllm_b12x.trtllm as t; before = str(t.status()); "
            f"import {PACKAGES[gen]}; print(before + ' -> ' + str(t.status()))")
    out = _python(code, pythonpath=[FAKES], no_site=True)
    assert out == f"off -> active ({gen}, {PACKAGES[gen]})"


@pytest.mark.parametrize("opted_out", [True, False])
def test_pth_respects_the_opt_out(site_dir, opted_out):
    """The .pth ran (its module is loaded) and, opted out, armed nothing; without the opt-out
    the same start promotes. A .pth that did not run at all fails both."""
    code = (f"import site, sys; site.addsitedir({str(site_dir)!r}); "
            "ran = 'trtllm_b12x.trtllm._hook' in sys.modules; "
            "armed = sum(type(f).__name__ == 'MoEImportHook' for f in sys.meta_path); "
            f"import {PACKAGES['G2']}; import trtllm_b12x.trtllm as t; print(ran, armed, t.status())")
    env = {adapter.ENV_DISABLE: "1"} if opted_out else {}
    out = _python(code, pythonpath=[FAKES], env_extra=env, no_site=True)
    assert out == ("True 0 off" if opted_out else f"True 1 active (G2, {PACKAGES['G2']})")


def test_custom_module_dir_is_importable_the_way_tensorrt_llm_imports_it(g2):
    """TensorRT-LLM puts the directory's parent first on sys.path and imports it by name."""
    path = Path(adapter.custom_module_dir())
    assert sorted(p.name for p in path.parent.iterdir() if p.name != "__pycache__") == ["__init__.py", path.name]
    sys.path.insert(0, str(path.parent))
    try:
        module = importlib.import_module(path.name)
    finally:
        sys.path.remove(str(path.parent))
        sys.modules.pop(path.name, None)
    assert module.status.state == "active" and adapter.status().generation == "G2"


def test_explicit_call_reports_where_it_stands(g1):
    st = adapter.enable()
    assert str(st) == "active (G1, tensorrt_llm._torch.modules.fused_moe)"
    assert adapter.enable() is st
    assert str(adapter.disable()) == "off"


def test_module_commands(tmp_path):
    assert _python("import runpy, sys; sys.argv = ['x', 'custom-module-dir']; "
                   "runpy.run_module('trtllm_b12x.trtllm', run_name='__main__')") == adapter.custom_module_dir()
    out = _python("import runpy, sys; sys.argv = ['x', 'install-hook', %r]; "
                  "runpy.run_module('trtllm_b12x.trtllm', run_name='__main__')" % str(tmp_path))
    assert Path(out).read_bytes() == Path(adapter.hook_file()).read_bytes()
    uninstall = ("import runpy, sys; sys.argv = ['x', 'uninstall-hook', %r]; "
                 "runpy.run_module('trtllm_b12x.trtllm', run_name='__main__')" % str(tmp_path))
    assert _python(uninstall) == f"removed {out}" and not Path(out).exists()
    assert _python(uninstall) == f"no startup hook at {out}"


def _broken_detect(name):
    raise AttributeError("module 'tensorrt_llm._torch.moe.fused_moe.create_moe' has no attribute 'get_moe_cls'")


@pytest.mark.parametrize("path", ["enable", "hook"])
def test_a_broken_tensorrt_llm_is_left_stock_by_enable_and_by_the_hook_alike(g2, monkeypatch, caplog, path):
    from trtllm_b12x.trtllm import _hook, promote

    res = importlib.import_module("tensorrt_llm._torch.moe.fused_moe.moe_resolution")
    prio = res.IMPL_PRIORITY
    monkeypatch.setattr(promote, "detect", _broken_detect)
    with caplog.at_level("WARNING"):
        if path == "enable":
            adapter.enable()
        else:
            _hook._enable(PACKAGES["G2"])
    st = adapter.status()
    assert st.state == "failed" and st.reason.startswith("AttributeError: module")
    assert res.IMPL_PRIORITY is prio  # nothing patched
    (line,) = [r.getMessage() for r in caplog.records if "not enabled" in r.getMessage()]
    assert "running stock TensorRT-LLM" in line
