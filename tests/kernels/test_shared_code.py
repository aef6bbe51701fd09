"""How much of the SM120 decode tier is the code the Hopper tier runs (and is tested with).

Code lines (no blanks, comments or docstrings) of the SM120 tier = the shared skeleton
(``kernels/moe_decode.py`` minus what only the SM90 variant executes) + the SM120 variant
(``kernels/moe_decode_sm120.py``). SM90-only: the base methods the SM120 classes override
without calling, and the helpers only those call.
"""

import ast
import inspect
import io
import tokenize

import pytest

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed")

from trtllm_b12x.kernels import moe_decode, moe_decode_sm120  # noqa: E402


def _code_lines(source: str) -> set[int]:
    """Line numbers holding code: not blank, not only a comment, not a docstring."""
    tree = ast.parse(source)
    doc = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None:
            d = node.body[0]
            doc.update(range(d.lineno, d.end_lineno + 1))
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
            code.update(range(tok.start[0], tok.end[0] + 1))
    return code - doc


def _method_lines(cls, name) -> set[int]:
    fn = cls.__dict__[name]
    fn = getattr(fn, "__func__", fn)
    fn = inspect.unwrap(fn)
    lines, start = inspect.getsourcelines(fn)
    return set(range(start, start + len(lines)))


SM90_ONLY = {
    moe_decode.DecodeGemvSm90: ("token_tensor", "intermediate_tensor", "operand_scale", "token_operand", "tile_mma",
                                "fragment", "fragment_global", "dequant", "store_intermediate"),
    moe_decode.FusedDecode: ("expert_scalars", "intermediate_bytes", "intermediate_view", "kernel_tokens"),
}


def test_sm90_only_list_is_not_used_by_the_sm120_tier():
    sm120_src = inspect.getsource(moe_decode_sm120)
    for base, names in SM90_ONLY.items():
        for name in names:
            assert f"{base.__name__}.{name}" not in sm120_src and f"super().{name}" not in sm120_src


def _split(module, marker):
    """(code lines before ``marker``, code lines from it on) of a module's source."""
    src = inspect.getsource(module)
    cut = src[: src.index(marker)].count("\n") + 1
    lines = _code_lines(src)
    return {n for n in lines if n < cut}, {n for n in lines if n >= cut}


def test_shared_share_of_the_sm120_tier():
    """Kernel lines (what runs on the GPU and its compile-time configuration) are the measure;
    the host classes (weight packing, workspace, launches) are reported beside them."""
    base_kernel, base_host = _split(moe_decode, "# -- host side")
    own_kernel, own_host = _split(moe_decode_sm120, "class FusedDecodeSm120")
    sm90_only = {cls: set().union(*(_method_lines(cls, n) for n in names)) for cls, names in SM90_ONLY.items()}
    shared_kernel = base_kernel - sm90_only[moe_decode.DecodeGemvSm90]
    shared_host = base_host - sm90_only[moe_decode.FusedDecode]
    kernel = len(shared_kernel) / (len(shared_kernel) + len(own_kernel))
    host = len(shared_host) / (len(shared_host) + len(own_host))
    print(f"SM120 decode kernel: {len(shared_kernel)} shared + {len(own_kernel)} own code lines = "
          f"{100 * kernel:.1f}% shared; host side: {len(shared_host)} + {len(own_host)} = {100 * host:.1f}%")
    assert kernel >= 0.80
