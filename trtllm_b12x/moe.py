"""Framework-neutral MoE runner: validation, expert/tensor parallel bookkeeping, dispatch.

Decode batches (fewer than ``DECODE_MAX_TOKENS`` tokens) go to a fused decode kernel when
one is registered for this GPU's tier; everything else goes to the documented fallback:
dequantize the experts the batch touches to the activation dtype and run one GEMM pair per
expert with torch (float32 accumulation of the routed sum). The fallback reads the set of
touched experts on the host, so it is not CUDA-graph capturable; TensorRT-LLM sends prefill
to its own CUTLASS path instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from .activation import Activation
from .quantization.bundle import MoEWeights
from .reference import check_routing, local_pairs

DECODE_MAX_TOKENS = 64  # decode = fewer tokens than this


class DecodeKernel(Protocol):
    """A fused decode implementation for one tier: ``run(x, ids, weights, out, workspace)``
    writes ``out``; ``workspace`` is None (the kernel's own) or a caller-owned uint8 buffer of
    at least ``workspace_bytes(m, top_k, dtype)`` bytes."""

    def __call__(self, x: torch.Tensor, ids: torch.Tensor, w: torch.Tensor, out: torch.Tensor,
                 workspace: torch.Tensor | None = None) -> None: ...

    def workspace_bytes(self, num_tokens: int, top_k: int, dtype: torch.dtype) -> int: ...


@dataclass(frozen=True)
class Parallel:
    """Where this rank sits. EP: it owns global experts ``[expert_offset, expert_offset + E)``
    of ``num_experts``; TP: it holds intermediate shard ``tp_rank`` of ``tp_size`` (its output
    is a partial sum, reduced across ranks by the caller)."""

    num_experts: int
    expert_offset: int = 0
    tp_size: int = 1
    tp_rank: int = 0


class MoERunner:
    """Runs one MoE layer's routed experts: ``runner(x, topk_ids, topk_weights, out=None)``."""

    def __init__(
        self,
        weights: MoEWeights,
        activation: Activation,
        parallel: Parallel | None = None,
        *,
        decode_kernel: Callable[["MoERunner"], DecodeKernel] | None = None,
        validate_ids: bool = True,
    ):
        parallel = parallel or Parallel(weights.num_experts)
        if activation.gated != weights.gated:
            raise ValueError(
                f"activation {activation.kind!r} does not match the weights (FC1 rows {weights.w13.shape[1]}, "
                f"intermediate {weights.intermediate_size}); SwiGLU needs [gate; up] rows, ReLU^2 a single FC1"
            )
        if not 0 <= parallel.expert_offset <= parallel.num_experts - weights.num_experts:
            raise ValueError(
                f"expert range [{parallel.expert_offset}, {parallel.expert_offset + weights.num_experts}) "
                f"is not inside the {parallel.num_experts} global experts"
            )
        if not 0 <= parallel.tp_rank < parallel.tp_size:
            raise ValueError(f"tp_rank={parallel.tp_rank} outside [0, tp_size={parallel.tp_size})")
        self.weights = weights
        self.activation = activation
        self.parallel = parallel
        self.validate_ids = validate_ids
        self.decode = decode_kernel(self) if decode_kernel is not None else None
        bound = getattr(self.decode, "tokens_bound", DECODE_MAX_TOKENS)
        if self.decode is not None and bound < DECODE_MAX_TOKENS:
            raise ValueError(f"decode kernel {type(self.decode).__name__} takes batches below {bound} tokens; the "
                             f"runner sends it every batch below {DECODE_MAX_TOKENS}")

    @classmethod
    def shard(cls, full: MoEWeights, activation: Activation, *, ep_size: int = 1, ep_rank: int = 0,
              tp_size: int = 1, tp_rank: int = 0, **kw) -> "MoERunner":
        """The runner of one (EP, TP) rank, cut from the full layer's weights."""
        for name, size in (("ep_size", ep_size), ("tp_size", tp_size)):
            if not isinstance(size, int) or size < 1:
                raise ValueError(f"{name}={size!r}: expected a positive integer (1 = no parallelism)")
        e = full.num_experts
        if e % ep_size:
            raise ValueError(f"{e} experts do not split evenly over ep_size={ep_size}")
        if not 0 <= ep_rank < ep_size:
            raise ValueError(f"ep_rank={ep_rank} outside [0, ep_size={ep_size})")
        per = e // ep_size
        local = full.experts(slice(ep_rank * per, (ep_rank + 1) * per))
        if tp_size > 1:
            local = local.tp_shard(tp_size, tp_rank)
        return cls(local, activation, Parallel(e, ep_rank * per, tp_size, tp_rank), **kw)

    # -- public --------------------------------------------------------------------------------
    def __call__(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor,
                 out: torch.Tensor | None = None, workspace: torch.Tensor | None = None) -> torch.Tensor:
        """``out`` and ``workspace`` (see :meth:`workspace_bytes`) may be caller-owned, e.g. to
        keep their addresses fixed across CUDA-graph replays; both are optional."""
        self.check(x, topk_ids, topk_weights, out)
        if out is None:
            out = torch.empty(x.shape[0], self.weights.hidden_size, dtype=x.dtype, device=x.device)
        if self.decode is not None and x.shape[0] < DECODE_MAX_TOKENS:
            self.decode(x, topk_ids, topk_weights, out, workspace)
        else:
            self.fallback(x, topk_ids, topk_weights, out)
        return out

    def workspace_bytes(self, num_tokens: int, top_k: int, dtype: torch.dtype = torch.bfloat16) -> int:
        """Bytes of scratch the decode kernel needs for a batch (0 without one)."""
        if self.decode is None or num_tokens >= DECODE_MAX_TOKENS:
            return 0
        return self.decode.workspace_bytes(num_tokens, top_k, dtype)

    def check(self, x, topk_ids, topk_weights, out=None) -> None:
        w = self.weights
        check_routing(x, topk_ids, topk_weights, w.hidden_size)
        if x.device != w.device:
            raise ValueError(f"x is on {x.device} but the weights are on {w.device}")
        if not x.is_contiguous() or not topk_ids.is_contiguous() or not topk_weights.is_contiguous():
            raise ValueError("x, topk_ids and topk_weights must be contiguous (call .contiguous())")
        if out is not None and (out.shape != (x.shape[0], w.hidden_size) or out.dtype != x.dtype
                                or out.device != x.device or not out.is_contiguous()):
            raise ValueError(
                f"out: got {tuple(out.shape)} {out.dtype} on {out.device}; expected a contiguous "
                f"[{x.shape[0]}, {w.hidden_size}] {x.dtype} tensor on {x.device}"
            )
        capturing = x.device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        if self.validate_ids and not capturing and topk_ids.numel():
            # one host read; skipped under graph capture, where foreign ids are simply not local
            lo, hi = (int(v) for v in torch.aminmax(topk_ids))
            n = self.parallel.num_experts
            if hi >= n or lo < -1:
                bad = hi if hi >= n else lo
                raise ValueError(
                    f"topk_ids: expert id {bad} is out of range; supported: 0..{n - 1} "
                    "(global ids; -1 marks an unrouted slot)"
                )

    def fallback(self, x, topk_ids, topk_weights, out) -> None:
        """Dequantize the touched local experts, then per-expert torch GEMMs (host reads: not
        graph-capturable)."""
        w = self.weights
        acc = torch.zeros(x.shape[0], w.hidden_size, dtype=torch.float32, device=x.device)
        tok, slot, experts = local_pairs(topk_ids, self.parallel.expert_offset, w.num_experts)
        order = torch.argsort(experts, stable=True)
        tok, slot, experts = tok[order], slot[order], experts[order]
        uniq, counts = torch.unique_consecutive(experts, return_counts=True)
        start = 0
        for e, n in zip(uniq.tolist(), counts.tolist()):
            t, s = tok[start : start + n], slot[start : start + n]
            start += n
            w13 = w.dequant_w13([e])[0].to(x.dtype)
            w2 = w.dequant_w2([e])[0].to(x.dtype)
            a = self.activation((x[t] @ w13.t()).float()).to(x.dtype)
            acc.index_add_(0, t, (a @ w2.t()).float() * topk_weights[t, s, None])
        out.copy_(acc)
