"""Float32 oracle of the routed NVFP4 MoE: the truth every kernel is compared with.

Per token t and routed expert e (global id) with router weight w::

    x_in = x_t                                  (W4A16)
         | fake_nvfp4(x_t, fc1_input_scale[e])  (W4A4, as the SM120 kernels quantize)
    h    = W13_e @ x_in                         (each FC1 half times its own global scale)
    a    = act(h)                               (SwiGLU over [gate | up], or ReLU^2)
    a_in = a | fake_nvfp4(a, fc2_scale[e])      (W4A16 | W4A4)
    out_t += w * (W2_e @ a_in)

Expert ids outside ``[local_expert_offset, local_expert_offset + E)`` (other EP ranks) and
negative ids contribute nothing. All arithmetic is float32 on dequantized weights.
"""

from __future__ import annotations

import torch

from .activation import Activation
from .metrics import relative_error  # noqa: F401  (re-exported: the oracle's users compare with it)
from .quantization.bundle import MoEWeights, check_positive
from .quantization.nvfp4 import fake_quantize

MODES = ("w4a16", "w4a4")


def check_routing(x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor, hidden: int) -> None:
    """Shared input contract of the oracle and the runner."""
    for name, t in (("x", x), ("topk_ids", topk_ids), ("topk_weights", topk_weights)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if x.dtype not in (torch.bfloat16, torch.float16):
        raise TypeError(f"x: dtype {x.dtype} is not supported; supported: torch.bfloat16, torch.float16")
    if x.dim() != 2 or x.shape[1] != hidden:
        raise ValueError(f"x: shape {tuple(x.shape)}; expected [num_tokens, {hidden}] (hidden size of the weights)")
    if topk_ids.dtype != torch.int32:
        raise TypeError(f"topk_ids: dtype {topk_ids.dtype}; expected torch.int32 (as TensorRT-LLM routing emits)")
    if topk_weights.dtype != torch.float32:
        raise TypeError(f"topk_weights: dtype {topk_weights.dtype}; expected torch.float32")
    if topk_ids.dim() != 2 or topk_ids.shape[0] != x.shape[0] or topk_weights.shape != topk_ids.shape:
        raise ValueError(
            f"topk_ids {tuple(topk_ids.shape)} / topk_weights {tuple(topk_weights.shape)}: expected both "
            f"[num_tokens={x.shape[0]}, top_k]"
        )
    for name, t in (("topk_ids", topk_ids), ("topk_weights", topk_weights)):
        if t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; keep all inputs on one device")


def local_pairs(topk_ids: torch.Tensor, expert_offset: int, num_local: int):
    """The routed (token, slot) pairs that hit this rank's experts, and their local expert
    index: ``(tok, slot, expert)``. Foreign and negative ids are dropped."""
    local = topk_ids.long() - expert_offset
    tok, slot = ((local >= 0) & (local < num_local)).nonzero(as_tuple=True)
    return tok, slot, local[tok, slot]


def moe_reference(
    x: torch.Tensor,
    topk_ids: torch.Tensor,
    topk_weights: torch.Tensor,
    weights: MoEWeights,
    activation: Activation = Activation(),
    *,
    mode: str = "w4a16",
    local_expert_offset: int = 0,
    fc2_input_scale: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Routed MoE output ``[num_tokens, H]`` in float32.

    ``fc2_input_scale`` (W4A4 only) overrides the FC2-activation global scale; by default
    :meth:`MoEWeights.fc2_quant_global` (the calibrated scale with headroom, or 1.0).
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not supported; supported: {MODES}")
    if activation.gated != weights.gated:
        raise ValueError(
            f"activation {activation.kind!r} is {'gated' if activation.gated else 'not gated'} but the "
            f"weights' FC1 has {weights.w13.shape[1]} rows for intermediate {weights.intermediate_size}"
        )
    check_routing(x, topk_ids, topk_weights, weights.hidden_size)
    if weights.device != x.device:
        raise ValueError(f"weights are on {weights.device} but x is on {x.device}")
    num_local = weights.num_experts
    if mode == "w4a4":
        if weights.fc1_input_scale is None:
            raise ValueError("mode 'w4a4' needs the bundle's fc1_input_scale (the checkpoint's input_scale)")
        if fc2_input_scale is None:
            fc2_input_scale = weights.fc2_quant_global()
        fc2_scale = torch.as_tensor(fc2_input_scale, dtype=torch.float32, device=x.device)
        if fc2_scale.numel() not in (1, num_local):
            raise ValueError(f"fc2_input_scale: shape {tuple(fc2_scale.shape)}; expected one scalar or one per local "
                             f"expert ([{num_local}])")
        fc2_scale = fc2_scale.reshape(-1).expand(num_local)
        check_positive(fc2_scale, "fc2_input_scale")

    m = x.shape[0]
    out = torch.zeros(m, weights.hidden_size, dtype=torch.float32, device=x.device)
    tok, slot, experts = local_pairs(topk_ids, local_expert_offset, num_local)
    xf = x.float()
    for e in experts.unique().tolist():
        sel = experts == e
        t = tok[sel]
        w = topk_weights[t, slot[sel]].unsqueeze(1)
        xin = xf[t]
        if mode == "w4a4":
            xin = fake_quantize(xin, weights.fc1_input_scale[e])
        h = xin @ weights.dequant_w13([e])[0].t()
        a = activation(h)
        if mode == "w4a4":
            a = fake_quantize(a, fc2_scale[e])
        y = a @ weights.dequant_w2([e])[0].t()
        out.index_add_(0, t, w * y)
    return out

