"""The decode call as a PyTorch custom op, so ``torch.compile`` traces it as one node.

``torch.ops.trtllm_b12x.moe_decode(x, topk_ids, topk_weights, out, runner)`` writes the layer
output into ``out`` (its only mutation; it returns nothing) with the runner registered under the
integer handle ``runner``: the fused decode kernel on its GPU, the runner's torch fallback
elsewhere (the CPU implementation). The fake (meta) implementation does nothing, which is what
the op does to shapes: Dynamo and AOTAutograd see a node that mutates ``out`` and graph capture
sees no Python of ours inside the compiled region.

The op is registered on first use (:func:`register`), not at import; runners are held weakly.
"""

from __future__ import annotations

import functools
import itertools
import weakref

import torch

_RUNNERS: "weakref.WeakValueDictionary[int, object]" = weakref.WeakValueDictionary()
_NEXT = itertools.count(1)


@functools.lru_cache(maxsize=1)
def _define() -> object:
    @torch.library.custom_op("trtllm_b12x::moe_decode", mutates_args=("out",))
    def moe_decode_op(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, out: torch.Tensor,
                      runner: int) -> None:
        target = _RUNNERS.get(runner)
        if target is None:
            raise RuntimeError(f"trtllm_b12x::moe_decode: no runner is registered under handle {runner} "
                               "(register it with trtllm_b12x.ops.register before tracing)")
        target(x, topk_ids, topk_weights, out=out)

    @moe_decode_op.register_fake
    def _(x, topk_ids, topk_weights, out, runner) -> None:
        return None

    return moe_decode_op


def register(runner) -> int:
    """The runner's op handle (assigned once, kept on the runner as ``op_handle``); registers
    the op itself on first use. Call it before ``torch.compile`` traces the model."""
    _define()
    handle = getattr(runner, "op_handle", None)
    if handle is None or _RUNNERS.get(handle) is not runner:
        handle = next(_NEXT)
        _RUNNERS[handle] = runner
        runner.op_handle = handle
    return handle


def moe_decode(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, out: torch.Tensor,
               runner) -> torch.Tensor:
    """``runner(x, topk_ids, topk_weights, out=out)`` through the custom op; returns ``out``.
    The runner must be registered (:func:`register`) before a traced call."""
    handle = runner.op_handle if getattr(runner, "op_handle", None) is not None else register(runner)
    torch.ops.trtllm_b12x.moe_decode(x, topk_ids, topk_weights, out, handle)
    return out
