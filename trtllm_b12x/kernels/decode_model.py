"""Host model of the SM120 decode kernel: its dataflow, from the very tensors it consumes.

The SM120 tier cannot run where it is built; this model is how its layouts are checked. It
takes a :class:`~trtllm_b12x.kernels.moe_decode_sm120.FusedDecodeSm120` — the bundle's tensors
in TensorRT-LLM's CUTLASS layout, as the kernel reads them, and the per-expert scalars it is
launched with — and follows the kernel:

1. per local expert, its pairs in routing order, up to 8 per MMA (as the kernel's passes);
2. FC1 tokens quantized with the expert's ``g1`` (the kernel's recipe: ``quantize_nvfp4``);
3. FC1 as the kernel's lanes issue it: per 16-row tile and 64-wide chunk, A registers are
   four words of the stored rows, scale A the row's word at the kernel's 128x4 (or linear)
   address, B and scale B the quantized tokens
   (:func:`~trtllm_b12x.quantization.mma_emulator.stored_gemv`, exact integer arithmetic);
4. epilogue: ``alpha1`` per half (gate rows ``[I, 2I)``, up rows ``[0, I)``), the activation in
   FP32, requantization with ``g2`` into the NVFP4 record (blocks beyond I: zero);
5. FC2 the same way on the record over the stored K ``C``; ``alpha2`` and the router weight;
   the sum over each token's slots in the slot-sum launch's order.

Only the MMA's FP32 accumulation order differs from the hardware (the model is exact), so
the model and the kernel agree to FP32 rounding, and the model and :mod:`trtllm_b12x.reference`
(W4A4) agree up to FP32 rounding of the FC1 sums (which can move a requantized FC2 input by
one E2M1 step). A layout error in any operand shows as an error of order one.
"""

from __future__ import annotations

import torch

from ..quantization.fragments import CHUNK_K
from ..quantization.layouts import scale_words
from ..quantization.mma_emulator import UNIT, stored_gemv
from ..quantization.nvfp4 import quantize_nvfp4
from .moe_decode import PAIRS_PER_PASS, SlotSum


def _gemv(codes, words, data, scale) -> torch.Tensor:
    """``[P, rows]`` float32 of stored rows times NVFP4 rows, 8 pairs per emulated MMA."""
    cols = [stored_gemv(codes, words, data[i:i + PAIRS_PER_PASS], scale[i:i + PAIRS_PER_PASS])
            for i in range(0, data.shape[0], PAIRS_PER_PASS)]
    return (torch.cat(cols, 1).double() * UNIT).float().t()


def decode_sm120_model(fused, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
    """The SM120 decode output ``[m, H]`` in FP32 (the kernel then rounds to ``x.dtype``), on
    the device of ``x`` and of ``fused``'s tensors."""
    if fused.kernel_cls.mma != "m16n8k64":
        raise ValueError(f"decode_sm120_model: {type(fused).__name__} is not the block-scaled (SM120) tier")
    w, act = fused.weights, fused.activation
    inter, cols, h_size, lay = w.intermediate_size, w.fc2_cols, w.hidden_size, w.scale_layout
    m, top_k = topk_ids.shape
    ids = topk_ids.reshape(-1).long() - fused.parallel.expert_offset
    rw = topk_weights.reshape(-1).float()
    part = torch.zeros(m * top_k, h_size, dtype=torch.float32, device=x.device)
    for e in sorted(set(ids[(ids >= 0) & (ids < w.num_experts)].tolist())):
        q = (ids == e).nonzero().flatten()  # routing order
        a1, a2, g1, g2 = fused.fc1_scalars[e].tolist()
        xd, xs = quantize_nvfp4(x[q // top_k].float(), g1)
        h = _gemv(w.w13[e], scale_words(w.w13_scale[e], w.fc1_rows, h_size // CHUNK_K, lay), xd, xs)
        if act.gated:  # FP32 x FP32 scalar; [gate | up] as the activation takes them
            h = torch.cat([h[:, inter:2 * inter] * a1, h[:, :inter] * a2], 1)
        else:
            h = h[:, :inter] * a1
        rd, rs = quantize_nvfp4(act(h), g2)  # the FC2 input record (blocks beyond I: zero)
        rd = torch.nn.functional.pad(rd, (0, (cols - inter) // 2))
        rs = torch.nn.functional.pad(rs.view(torch.uint8), (0, (cols - inter) // 16))
        alpha2 = fused.fc2_scalars[e, 0].float()
        sw2 = scale_words(w.w2_scale[e], h_size, cols // CHUNK_K, lay)
        part[q] = _gemv(w.w2[e], sw2, rd, rs) * alpha2 * rw[q, None]
    # as the slot-sum launch: each contiguous group of slots in slot order, then the groups in order
    per = -(-top_k // SlotSum.groups)
    out = None
    for g in range(SlotSum.groups):
        acc = torch.zeros(m, h_size, dtype=torch.float32, device=x.device)
        for k in range(g * per, min((g + 1) * per, top_k)):
            acc += part[k::top_k]
        out = acc if out is None else out + acc
    return out
