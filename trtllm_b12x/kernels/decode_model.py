"""Host model of the SM120 decode kernel: its dataflow, from the very tensors it consumes.

The SM120 tier cannot run where it is built; this model is how its layouts are checked. It
takes a :class:`~trtllm_b12x.kernels.moe_decode_sm120.FusedDecodeSm120` (the packed MMA-layout
weights and per-expert scalars the kernel is launched with) and follows the kernel:

1. per local expert, its pairs in routing order, up to 8 per MMA (as the kernel's passes);
2. FC1 tokens quantized with the expert's ``g1`` (the kernel's recipe: ``quantize_nvfp4``);
3. FC1 as the kernel's lanes issue it: per 16-row tile and 64-wide chunk, A registers are the
   lane's 16 code bytes, scale A the lane's word with ``thread-id-a = chunk % 2``, B and
   scale B the quantized tokens (:func:`~trtllm_b12x.quantization.mma_emulator.fragment_gemv`,
   exact integer arithmetic);
4. epilogue: ``alpha1`` per half, the activation in FP32, requantization with ``g2`` into the
   NVFP4 record;
5. FC2 the same way on the record; ``alpha2`` and the router weight; the sum over each
   token's slots in the slot-sum launch's order.

Only the MMA's FP32 accumulation order differs from the hardware (the model is exact), so
the model and the kernel agree to FP32 rounding, and the model and :mod:`trtllm_b12x.reference`
(W4A4) agree up to FP32 rounding of the FC1 sums (which can move a requantized FC2 input by
one E2M1 step). A layout error in any operand shows as an error of order one.
"""

from __future__ import annotations

import torch

from ..quantization.mma_emulator import UNIT, fragment_gemv
from ..quantization.nvfp4 import quantize_nvfp4
from .moe_decode import PAIRS_PER_PASS, SlotSum


def _gemv(codes, scales, layout, e, data, scale) -> torch.Tensor:
    """``[P, rows]`` float32 of expert ``e`` times NVFP4 rows, 8 pairs per emulated MMA."""
    cols = [fragment_gemv(codes[e].view(torch.uint8), scales[e], layout, data[i:i + PAIRS_PER_PASS],
                          scale[i:i + PAIRS_PER_PASS]) for i in range(0, data.shape[0], PAIRS_PER_PASS)]
    return (torch.cat(cols, 1).double() * UNIT).float().t()


def decode_sm120_model(fused, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
    """The SM120 decode output ``[m, H]`` in FP32 (the kernel then rounds to ``x.dtype``), on
    the device of ``x`` and of ``fused``'s tensors."""
    if fused.kernel_cls.mma != "m16n8k64":
        raise ValueError(f"decode_sm120_model: {type(fused).__name__} is not the block-scaled (SM120) tier")
    w, act, i_pad = fused.weights, fused.activation, fused.i_pad
    m, top_k = topk_ids.shape
    ids = topk_ids.reshape(-1).long() - fused.parallel.expert_offset
    rw = topk_weights.reshape(-1).float()
    part = torch.zeros(m * top_k, w.hidden_size, dtype=torch.float32, device=x.device)
    for e in sorted(set(ids[(ids >= 0) & (ids < w.num_experts)].tolist())):
        q = (ids == e).nonzero().flatten()  # routing order
        a1, a2, g1, g2 = fused.fc1_scalars[e].tolist()
        xd, xs = quantize_nvfp4(x[q // top_k].float(), g1)
        h = _gemv(*fused.fc1, fused.fc1_layout, e, xd, xs)
        if act.gated:
            h = torch.cat([h[:, :i_pad] * a1, h[:, i_pad:] * a2], 1)  # FP32 x FP32 scalar
        else:
            h = h * a1
        rd, rs = quantize_nvfp4(act(h), g2)  # the FC2 input record
        alpha2 = fused.fc2_scalars[e, 0].float()
        part[q] = _gemv(*fused.fc2, fused.fc2_layout, e, rd, rs) * alpha2 * rw[q, None]
    # as the slot-sum launch: each contiguous group of slots in slot order, then the groups in order
    per = -(-top_k // SlotSum.groups)
    out = None
    for g in range(SlotSum.groups):
        acc = torch.zeros(m, w.hidden_size, dtype=torch.float32, device=x.device)
        for k in range(g * per, min((g + 1) * per, top_k)):
            acc += part[k::top_k]
        out = acc if out is None else out + acc
    return out
