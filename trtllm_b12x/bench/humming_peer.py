"""Bench peer: Humming (``humming-kernels``, vLLM's JIT-compiled quantized GEMM/MoE library),
W4A16 NVFP4 with BF16/FP16 activations, called as vLLM's Humming experts call it: two
``indexed`` grouped GEMMs (FC1 over the routed rows, FC2 with ``top_k = 1`` over the same
sorted rows), the activation between them and the top-k weighting and slot sum after them,
outside the GEMMs.

The layer is handed over in ModelOpt's layout (E2M1 bytes as int32 words, linear E4M3 block
scales, FP32 per-projection globals) and transformed by Humming once, at build time (a copy:
this peer holds its own weights). The shapes are zero-padded here first (N to 256, K to 128;
each FC1 half to 128, a single ReLU^2 FC1 to 256, so the activation's halves stay aligned and
FC2's K is FC1's N), so Humming pads nothing.
Its kernels JIT-compile (NVRTC or nvcc) on the first call for a token count, which the bench
makes eagerly before it captures a CUDA graph.

One difference from vLLM, in the peer's favour: vLLM sorts the routed rows into expert blocks
(``moe_align_block_size``, a CUDA kernel) on every forward; here that is done once per routing
with torch ops and kept, so a graph replay times the GEMMs, the activation and the sum only.
"""

from __future__ import annotations

import json

import torch

from ..activation import Activation
from ..quantization.bundle import MoEWeights
from ..quantization.layouts import round_up

PAD_N, PAD_K = 256, 128  # the multiples vLLM pads a Humming MoE layer's N and K to
LOCKS = 2048  # stream-K semaphores Humming's launcher takes (zeros)
INSTALL = "pip install 'trtllm-b12x[bench]'"


def unavailable(device: torch.device) -> str | None:
    """Why this peer cannot run here, or None."""
    if device.type != "cuda":
        return "no CUDA GPU here"
    if torch.cuda.get_device_capability(device)[0] != 9:
        return "this bench calls Humming's SM90 path only"
    try:
        import humming  # noqa: F401
    except ImportError:
        return f"humming-kernels is not installed ({INSTALL}; it compiles its kernels with NVRTC or nvcc)"
    return None


def _pad(t: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``t`` zero-padded along ``dim`` to ``size`` (through its bytes: FP8 included)."""
    if t.shape[dim] == size:
        return t.contiguous()
    shape = list(t.shape)
    shape[dim] = size
    out = torch.zeros(shape, dtype=torch.uint8, device=t.device)
    out.narrow(dim, 0, t.shape[dim]).copy_(t.view(torch.uint8))
    return out.view(t.dtype)


def modelopt_tensors(weights: MoEWeights) -> tuple[dict, dict, tuple[int, int, int]]:
    """FC1 and FC2 as ModelOpt's per-layer tensors (``weight`` uint8 ``[E, N, K/2]``,
    ``weight_scale`` e4m3 ``[E, N, K/16]`` linear, ``weight_scale_2`` FP32 ``[E, stacks]``),
    zero-padded: FC1 is ``[gate; up]`` with each half ``Ip`` rows (``pad128(I)``; ReLU^2, one
    half: ``pad256(I)``), so N is a multiple of 256; K ``H`` padded to 128; FC2
    ``[E, pad256(H), Ip/2]``. Returns ``(fc1, fc2, (Ip, Hn, Hk))``."""
    inter, hidden = weights.intermediate_size, weights.hidden_size
    halves = [weights.fc1_half(p) for p in weights.fc1_projections]  # gate first
    ip, hn, hk = round_up(inter, PAD_N // len(halves)), round_up(hidden, PAD_N), round_up(hidden, PAD_K)
    fc1 = {
        "weight": torch.cat([_pad(_pad(d, 1, ip), 2, hk // 2) for d, _ in halves], 1),
        "weight_scale": torch.cat([_pad(_pad(s, 1, ip), 2, hk // 16) for _, s in halves], 1),
        "weight_scale_2": weights.w13_global.float().contiguous(),
    }
    d2, s2 = weights.fc2()
    fc2 = {
        "weight": _pad(_pad(d2, 1, hn), 2, ip // 2),
        "weight_scale": _pad(_pad(s2, 1, hn), 2, ip // 16),
        "weight_scale_2": weights.w2_global.float().contiguous(),
    }
    return fc1, fc2, (ip, hn, hk)


def align_blocks(ids: torch.Tensor, block: int, experts: int):
    """The routed rows sorted into blocks of ``block`` rows per expert, in the format of vLLM's
    ``moe_align_block_size``: ``sorted_ids`` (row ``token * k + slot``, ``numel`` as padding,
    ``numel + experts * (block - 1)`` entries), the expert of each block, and the padded row
    count (``[1]``). Torch ops only, no host sync (CUDA-graph capturable)."""
    flat = ids.reshape(-1).long()
    n = flat.numel()
    counts = torch.zeros(experts, dtype=torch.long, device=flat.device).scatter_add_(0, flat, torch.ones_like(flat))
    padded = (counts + block - 1) // block * block
    ends = padded.cumsum(0)
    order = torch.argsort(flat, stable=True)
    sorted_experts = flat[order]
    rank = torch.arange(n, device=flat.device) - (counts.cumsum(0) - counts)[sorted_experts]
    length = n + experts * (block - 1)
    sorted_ids = torch.full((length,), n, dtype=torch.int32, device=flat.device)
    sorted_ids[(ends - padded)[sorted_experts] + rank] = order.int()
    blocks = torch.arange(-(-length // block), device=flat.device)
    expert_ids = torch.searchsorted(ends // block, blocks, right=True).clamp_(max=experts - 1).int()
    return sorted_ids, expert_ids, ends[-1:].int()


def build(weights: MoEWeights, act: Activation):
    """``fn(x, ids, w)`` of the Humming peer on ``weights`` (converted and transformed now)."""
    from humming.forward import humming_forward
    from humming.schema.base import BaseWeightSchema
    from humming.transform import prepare_and_transform_humming_tensors
    from humming.tune import get_heuristics_config

    dev, e = weights.device, weights.num_experts
    fc1, fc2, (ip, hn, hk) = modelopt_tensors(weights)
    n1 = ip * len(weights.fc1_projections)
    schema = BaseWeightSchema.from_config({"quant_method": "modelopt", "quant_algo": "nvfp4"})
    layers = {}
    for name, t, n, k, stacks in (("fc1", fc1, n1, hk, [ip] * len(weights.fc1_projections)), ("fc2", fc2, hn, ip, [hn])):
        hs, t = schema.convert_humming(t, shape_n_stacks=stacks, shape_k_stacks=[k], param_dtype=torch.bfloat16,
                                       num_experts=e, device=dev)
        layers[name] = prepare_and_transform_humming_tensors(t, shape_n=n, shape_k=k, weight_schema=hs, input_schema=None,
                                                             num_experts=e, pad_n_to_multiple=PAD_N,
                                                             pad_k_to_multiple=PAD_K, torch_dtype=torch.bfloat16,
                                                             device=dev)
    del fc1, fc2
    compute = json.dumps({"gemm_type": "indexed", "use_f16_accum": False, "use_batch_invariant": False})
    locks = torch.zeros(LOCKS, dtype=torch.int32, device=dev)
    tuned: dict[int, dict] = {}  # rows -> per GEMM (tuning JSON, block rows)
    routed: list = [None, -1, None]  # the last routing: its ids tensor (held), version, per GEMM alignment

    def gemm(name, inputs, rows, out, align, top_k):
        cfg, t = layers[name]
        tuning, _ = tuned[rows][name]
        sorted_ids, expert_ids, padded = align
        humming_forward(cfg, inputs=inputs, weight=t["weight"], weight_scale=t["weight_scale"],
                        weight_scale_2=t.get("weight_scale_2"), outputs=out, sorted_ids=sorted_ids,
                        expert_ids=expert_ids, num_tokens_padded=padded, locks=locks, top_k=top_k,
                        valid_shape_m=rows, compute_config=compute, tuning_config=tuning)

    def run(x, ids, w):
        if x.dtype != torch.bfloat16:
            raise ValueError(f"humming peer: built for bfloat16 activations, got {x.dtype}")
        m, k = ids.shape
        rows = m * k
        if rows not in tuned:
            tuned[rows] = {}
            for name in ("fc1", "fc2"):
                cfg = get_heuristics_config(layers[name][0], shape_m=rows, gemm_type="indexed")
                tuned[rows][name] = (json.dumps(cfg), cfg["block_shape"][0])
        if routed[0] is not ids or routed[1] != ids._version:
            b1, b2 = (tuned[rows][name][1] for name in ("fc1", "fc2"))
            first = align_blocks(ids, b1, e)
            routed[:] = [ids, ids._version, (first, first if b2 == b1 else align_blocks(ids, b2, e))]
        a1, a2 = routed[2]
        h = torch.empty(rows, n1, dtype=x.dtype, device=dev)
        gemm("fc1", x.contiguous(), rows, h, a1, k)
        a = act(h.float()).to(x.dtype)  # [rows, Ip]: zero beyond I (the padded halves)
        y = torch.empty(rows, hn, dtype=x.dtype, device=dev)
        gemm("fc2", a, rows, y, a2, 1)
        y = y.view(m, k, hn)[:, :, : weights.hidden_size]  # FC2's rows padded to 256
        return (y.float() * w.float().unsqueeze(-1)).sum(1).to(x.dtype)

    return run
