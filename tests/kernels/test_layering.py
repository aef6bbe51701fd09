"""Imports flow one way: kernels never import the runner, the adapter or the oracle, and the
decode kernel's base module never imports its SM120 subclass (the registry picks the tier)."""

import ast
from pathlib import Path

import trtllm_b12x

PKG = Path(trtllm_b12x.__file__).parent


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute module names a file of the package imports (relative imports resolved), at any depth."""
    mod = ".".join(path.relative_to(PKG.parent).with_suffix("").parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = mod.rsplit(".", node.level)[0] if node.level else ""
            name = f"{base}.{node.module}" if node.module and base else (node.module or base)
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def test_kernels_import_neither_the_runner_nor_the_adapter_nor_the_oracle():
    banned = ("trtllm_b12x.moe", "trtllm_b12x.trtllm", "trtllm_b12x.reference", "trtllm_b12x.bench")
    for path in sorted((PKG / "kernels").glob("*.py")):
        bad = {m for m in _imports(path) if any(m == b or m.startswith(b + ".") for b in banned)}
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_decode_base_module_does_not_import_its_subclass():
    assert not any("moe_decode_sm120" in m for m in _imports(PKG / "kernels" / "moe_decode.py"))
    assert {"trtllm_b12x.kernels.moe_decode_sm120"} <= _imports(PKG / "kernels" / "decode.py")


def test_the_layering_check_sees_relative_imports():
    """The checker itself: it must resolve ``from ..moe import X`` (else the tests above pass on anything)."""
    got = _imports(PKG / "kernels" / "probe.py",
                   "from ..moe import DECODE_MAX_TOKENS\nfrom .moe_decode_sm120 import FusedDecodeSm120\n")
    assert "trtllm_b12x.moe" in got and "trtllm_b12x.kernels.moe_decode_sm120" in got
