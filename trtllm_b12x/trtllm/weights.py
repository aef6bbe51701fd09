"""TensorRT-LLM's CUTLASS NVFP4 MoE tensors -> our :class:`MoEWeights` bundle, as views.

What ``NVFP4CutlassFusedMoEMethod`` leaves on the module after loading (E local experts,
hidden H, intermediate I per TP rank, g = 2 for SwiGLU, 1 for ReLU^2):

==================== ============================== ==========================================
tensor               shape / dtype                  content
==================== ============================== ==========================================
w3_w1_weight         [E, pad128(g*I), H/16] int64   E2M1 bytes of ``[w3; w1]`` (up rows first),
                                                    then zero rows up to a multiple of 128
w3_w1_weight_scale   [E, pad128(g*I), H/64] int32   E4M3 block scales (4 per int32), 128x4
                                                    swizzled per expert over the padded rows
w2_weight            [E, H, C/16] int64             E2M1 bytes; C = pad128(g*I)/g >= I, the
                                                    columns beyond I are zero
w2_weight_scale      [E, H, C/64] int32             E4M3, 128x4 swizzled per expert
fc31_input_scale     [] float32                     1 / max over experts of the input_scale
fc31_alpha           [E] float32                    weight_scale_2 / fc31_input_scale
fc2_input_scale      [] float32                     like fc31_input_scale, for FC2
fc2_alpha            [E] float32                    like fc31_alpha, for FC2
==================== ============================== ==========================================

That is our bundle's layout, so the bundle's four weight tensors are views of these (no
new storage, no kernel launched); only the per-expert scalars are derived: the globals
``weight_scale_2 = alpha * input_scale`` and the activation scales ``1 / fc*_input_scale``.
The W4A16 method leaves the same tensors with the block scales un-swizzled (linear layout
over the same padded shape): ``scale_layout="linear"``. w1 and w3 share one
``weight_scale_2`` per expert (TensorRT-LLM keeps the larger when a checkpoint's differ), so
both halves of our ``w13_global`` get it: decode then dequantizes exactly what CUTLASS
prefill does.
"""

from __future__ import annotations

import torch

from ..quantization.bundle import MoEWeights, nbytes
from ..quantization.nvfp4 import BLOCK


def _bytes(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise ValueError(f"{name}: dtype {t.dtype}; expected packed E2M1 as int64 (TensorRT-LLM) or uint8")
    return t.detach().view(torch.uint8)


def _scales(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dtype not in (torch.int32, torch.uint8, torch.float8_e4m3fn):
        raise ValueError(f"{name}: dtype {t.dtype}; expected E4M3 block scales as int32 (TensorRT-LLM), "
                         "uint8 or float8_e4m3fn")
    return t.detach().view(torch.float8_e4m3fn)


def _global(alpha: torch.Tensor, input_scale: torch.Tensor, name: str) -> torch.Tensor:
    g = (alpha.detach().float() * input_scale.detach().float()).contiguous()
    if not bool(torch.isfinite(g).all()) or bool((g <= 0).any()):
        raise ValueError(f"{name}: weight_scale_2 = alpha * input_scale must be finite and > 0, "
                         f"got {g.flatten()[:4].tolist()}")
    return g


def bundle_from_cutlass_tensors(
    w3_w1_weight: torch.Tensor,
    w3_w1_weight_scale: torch.Tensor,
    w2_weight: torch.Tensor,
    w2_weight_scale: torch.Tensor,
    fc31_alpha: torch.Tensor,
    fc2_alpha: torch.Tensor,
    fc31_input_scale: torch.Tensor,
    fc2_input_scale: torch.Tensor,
    *,
    intermediate_size: int,
    gated: bool,
    scales_swizzled: bool = True,
) -> MoEWeights:
    """Our bundle from one layer's CUTLASS NVFP4 tensors (see the module doc): views of the
    four weight tensors, and per-expert globals recovered as ``alpha * input_scale``.
    ``intermediate_size`` is per TP rank."""
    inter, halves = intermediate_size, 2 if gated else 1
    w13 = _bytes(w3_w1_weight, "w3_w1_weight")
    w13_sf = _scales(w3_w1_weight_scale, "w3_w1_weight_scale")
    w2 = _bytes(w2_weight, "w2_weight")
    w2_sf = _scales(w2_weight_scale, "w2_weight_scale")
    e, rows, h2 = w13.shape
    hidden = h2 * 2
    expect = {
        "w2_weight": (tuple(w2.shape[:2]), (e, hidden)),
        "fc31_alpha": (tuple(fc31_alpha.shape), (e,)),
        "fc2_alpha": (tuple(fc2_alpha.shape), (e,)),
    }
    for name, (got, want) in expect.items():
        if got != want:
            raise ValueError(f"{name}: shape {got}; expected {want} to match w3_w1_weight {tuple(w3_w1_weight.shape)} "
                             f"(E={e}, H={hidden})")
    if rows < halves * inter or w2.shape[2] * 2 < inter:
        raise ValueError(
            f"intermediate_size={inter} does not fit the stored tensors: FC1 has {rows} rows (needs >= "
            f"{halves * inter} for {'SwiGLU' if gated else 'ReLU^2'}), FC2 {w2.shape[2] * 2} columns (needs >= {inter})"
        )
    for name, t in (("fc31_input_scale", fc31_input_scale), ("fc2_input_scale", fc2_input_scale)):
        if t.numel() != 1:
            raise ValueError(f"{name}: shape {tuple(t.shape)}; expected one scalar per layer")
    ws2_fc1 = _global(fc31_alpha, fc31_input_scale.reshape(()), "FC1")
    return MoEWeights(
        w13=w13, w13_scale=w13_sf, w13_global=ws2_fc1[:, None].expand(e, halves).contiguous(),
        w2=w2, w2_scale=w2_sf, w2_global=_global(fc2_alpha, fc2_input_scale.reshape(()), "FC2"),
        intermediate=inter,
        fc1_input_scale=(1.0 / fc31_input_scale.detach().float().reshape(())).expand(e).contiguous(),
        fc2_input_scale=(1.0 / fc2_input_scale.detach().float().reshape(())).expand(e).contiguous(),
        scale_layout="swizzled" if scales_swizzled else "linear",
    )


WEIGHT_TENSORS = ("w3_w1_weight", "w3_w1_weight_scale", "w2_weight", "w2_weight_scale")
SCALAR_TENSORS = ("fc31_alpha", "fc2_alpha", "fc31_input_scale", "fc2_input_scale")


def bundle_from_module(module, *, scales_swizzled: bool, tensors: dict | None = None) -> MoEWeights:
    """The bundle of a loaded CUTLASS MoE module (its per-rank shard): views of its tensors,
    or of ``tensors`` (the same names) where the module's own are about to be repacked."""
    t = {n: (tensors or {}).get(n, getattr(module, n, None)) for n in WEIGHT_TENSORS + SCALAR_TENSORS}
    return bundle_from_cutlass_tensors(
        t["w3_w1_weight"], t["w3_w1_weight_scale"], t["w2_weight"], t["w2_weight_scale"],
        t["fc31_alpha"], t["fc2_alpha"], t["fc31_input_scale"], t["fc2_input_scale"],
        intermediate_size=module.intermediate_size_per_partition,
        gated=getattr(module, "intermediate_size_expand_ratio", 2) == 2,
        scales_swizzled=scales_swizzled,
    )


def own_bytes(w: MoEWeights, *owners: torch.Tensor) -> int:
    """Bytes of the bundle's tensors whose storage is none of ``owners``' (the module's
    tensors): what the bundle adds to the layer."""
    shared = {t.untyped_storage().data_ptr() for t in owners}
    return nbytes(*(t for t in w.tensors().values() if t.untyped_storage().data_ptr() not in shared))
