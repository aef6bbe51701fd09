"""SM120/SM121 tier of the fused MoE decode: W4A4 on the block-scaled FP4 warp MMA.

Everything but the operands is the Hopper kernel of :mod:`.moe_decode` — the persistent
grid, expert list, pair gathering, the cp.async weight ring, K split over warps, the
reduction, the slot sum, the workspace and the launches. This variant replaces:

* the MMA: ``mma.sync.m16n8k64 kind::mxf4nvf4.block_scale.scale_vec::4X`` with UE4M3 scales,
  one per chunk and tile instead of four m16n8k16; the weight codes go in as stored (four
  32-bit words of the ring's rows) with the row's 128x4 scale word as loaded (see
  :mod:`trtllm_b12x.quantization.fragments`);
* FC1's token operand: each pair's tokens are quantized to NVFP4 in registers with the
  expert's FC1 input global ``g1`` — lane ``t`` holds 8 elements of two blocks, the other 8
  are in lane ``t ^ 1`` (one shuffle for the block amax), and lanes ``t``, ``t ^ 2`` hold the
  other two blocks (one shuffle assembles the scale word);
* FC1's output: the epilogue requantizes each 16-column block of the activated intermediate
  with the expert's FC2 input global ``g2`` from the FP32 accumulators (no BF16 rounding in
  between; the block's 16 values sit in the 8 lanes of one quad column, three shuffles) and
  writes one NVFP4 record per pair, ``[C/2 code bytes | C/16 scale bytes]`` (``C``: FC2's
  stored K; rows 16-byte aligned). The intermediate of one pair is produced by ``I/16`` CTAs
  and read whole by every FC2 CTA, so it passes through global memory (L2) — in NVFP4, 9/32
  of the BF16 bytes;
* FC2's token operand: that record, as loaded, its scales zeroed for blocks at or beyond I
  (never written: TensorRT-LLM's zero columns of W2 meet whatever the workspace holds).

Global scales: the MMA sees block-scaled codes only; ``alpha1 = w13_global * g1`` and
``alpha2 = w2_global * g2`` multiply the FP32 accumulators in the epilogues (host-folded
per expert). ``g1``/``g2`` are dequant-direction globals (ModelOpt ``input_scale``:
block scale ``= amax / (6 g)``); ``g2`` carries headroom, see
:data:`trtllm_b12x.quantization.bundle.FC2_INPUT_HEADROOM` and docs/numerics.md.
"""

from __future__ import annotations

import operator

import cutlass
import cutlass.cute as cute
import torch
from cutlass import Float32, Uint8, Uint32
from cutlass.cute.runtime import make_fake_compact_tensor

from ..quantization.fragments import ring_slot
from ..quantization.layouts import round_up, scale_word
from ..quantization.nvfp4 import record_bytes
from .intrinsics import (TOKEN_DTYPES, abs_max, butterfly, f32x2_to_e2m1x2, f32x8_to_e2m1x8, mma_m16n8k64_nvf4,
                         nvfp4_block_scale)
from .moe_decode import TILES_PER_UNIT, DecodeGemvSm90, FusedDecode


# the kernel vs its exact host model, one token: output rounding plus at most a few one-step
# requantization moves; a layout or scale error is of order one
SELF_CHECK_BOUND = 5e-2


QUAD_COLUMN = (4, 8, 16)  # lane masks joining the 8 lanes 4 g + t of one t


def record_stride(k: int) -> int:
    """Bytes per pair of the NVFP4 intermediate: its record, padded so rows stay 16-byte aligned."""
    return round_up(record_bytes(k), 16)


class DecodeGemvSm120(DecodeGemvSm90):
    """The decode phases with NVFP4 operands on both sides (sm_120a / sm_121a)."""

    tier = "sm120"
    mma = "m16n8k64"

    # -- tier: operands and MMA ----------------------------------------------------------------
    def token_tensor(self, rows):
        cfg = self.cfg
        if cfg.phase == "fc1":
            return make_fake_compact_tensor(TOKEN_DTYPES[cfg.dtype][0], (rows, cfg.k), stride_order=(1, 0),
                                            assumed_align=16)
        return make_fake_compact_tensor(Uint8, (rows, record_stride(cfg.k)), stride_order=(1, 0), assumed_align=16)

    def intermediate_tensor(self, pairs):
        return make_fake_compact_tensor(Uint8, (pairs, record_stride(self.cfg.out_cols)), stride_order=(1, 0),
                                        assumed_align=16)

    @property
    def interleaved(self) -> bool:
        return self.cfg.phase == "fc2"  # FC1's requantized blocks are 16 consecutive columns

    @staticmethod
    def operand_scale(dtype: str) -> float:
        return 1.0  # block-scaled operands carry their true scale

    step_chunks = 1  # one block-scaled MMA per chunk

    @property
    def token_words(self) -> int:
        return 3  # two code words and the chunk's scale word

    @cute.jit
    def token_operand(self, mX, xg, row, c, n, lane):
        """``[b0, b1, scale word]``: K ``[8 t, 8 t + 8)`` and ``[32 + 8 t, 32 + 8 t + 8)`` of chunk ``c``."""
        if cutlass.const_expr(self.cfg.phase == "fc1"):
            return self.quantize_tokens(mX, xg, row, c, lane)
        t = lane % 4
        gX = cute.zipped_divide(mX, (1, 4))
        words = []
        for idx in (8 * c + t, 8 * c + 4 + t, self.cfg.k // 8 + c):  # code words, then the chunk's 4 scales
            src = cute.recast_tensor(gX[(None, (row, idx))], Uint32)
            r = cute.make_rmem_tensor_like(src)
            cute.autovec_copy(src, r)
            words.append(Uint32(r[0]))
        if cutlass.const_expr(self.cfg.k_valid < self.cfg.k):  # blocks 4 c + b at or beyond I: scale 0
            live = cutlass.max(cutlass.min(self.cfg.k_valid // 16 - 4 * c, 4), 0)
            keep = Uint32(0xFFFFFFFF)
            if live < 4:
                keep = (Uint32(1) << Uint32(8 * live)) - Uint32(1)
            words[2] = words[2] & keep
        return words

    @cute.jit
    def quantize_tokens(self, mX, xg, row, c, lane):
        """The recipe of :mod:`trtllm_b12x.quantization.nvfp4`, bit for bit, on the lane's 16 tokens."""
        t = lane % 4
        gX = cute.zipped_divide(mX, (1, 8))
        regs = []
        sf = Uint32(0)
        for h in cutlass.range_constexpr(2):
            src = gX[(None, (row, 8 * c + 4 * h + t))]
            r = cute.make_rmem_tensor_like(src)
            cute.autovec_copy(src, r)
            v = r.load().to(Float32)
            amax = butterfly(abs_max([v[i] for i in range(8)]), (1,), cute.arch.fmax)  # other half: lane t ^ 1
            sbyte, rcp = nvfp4_block_scale(amax, xg)
            word = Uint32(0)  # a zero-scale block is all +0 codes
            if rcp > Float32(0.0):
                word = f32x8_to_e2m1x8(*[v[i] * rcp for i in range(8)])
            regs.append(word)
            sf = sf | (sbyte << Uint32(16 * h + 8 * (t // 2)))  # block 2h + t//2 of the chunk
        return [regs[0], regs[1], butterfly(sf, (2,), operator.or_)]  # lanes t, t ^ 2 hold the other two blocks

    @cute.jit
    def fragment_global(self, mCodes, mScales, local, unit, c, n, lane):
        cfg = self.cfg
        g, t = lane // 4, lane % 4
        codes, scales = [], []
        for j in cutlass.range_constexpr(TILES_PER_UNIT):
            rows = [self.weight_row(unit, j, g + 8 * rh) for rh in range(2)]
            codes.append([Uint32(mCodes[local, rows[r % 2] * (cfg.k // 8) + 8 * c + 4 * (r // 2) + t])
                          for r in range(4)])
            scales.append(Uint32(mScales[local, scale_word(self.weight_row(unit, j, g + 8 * (t % 2)), c, cfg.chunks, cfg.scale_layout)]))
        return codes, scales

    @cute.jit
    def fragment(self, sA, sA4, sS, st, i, n, lone, warp, lane):
        """Per tile, A registers: word ``t`` of half ``r // 2`` of row ``g + 8 (r % 2)``; the scale
        word of row ``g + 8 (t % 2)`` (the lanes ``thread-id-a = 0`` reads)."""
        g, t = lane // 4, lane % 4
        codes = [[Uint32(sA4[t, ring_slot(g, i, r // 2, lone), g + 8 * (r % 2), j, i >> 1, warp, st])
                  for r in range(4)] for j in range(TILES_PER_UNIT)]
        return codes, [Uint32(sS[t % 2, g >> 2, g & 3, j, i, warp, st]) for j in range(TILES_PER_UNIT)]

    @cute.jit
    def tile_mma(self, acc, j, rA, rS, tok, n, lane):
        """Tile ``j`` x one K chunk: one block-scaled MMA."""
        c4 = mma_m16n8k64_nvf4(rA, [tok[0], tok[1]], [acc[4 * j + v] for v in range(4)], rS, tok[2], 0, 0)
        for v in cutlass.range_constexpr(4):
            acc[4 * j + v] = c4[v]

    @cute.jit
    def store_intermediate(self, mOut, rScal, blk, vals, pair, valid, lane):
        """Requantize the block of ``pair`` (16 values in the 8 lanes ``4 g + t``) into its record."""
        g = lane // 4
        lo, hi = vals  # rows g and g + 8
        sbyte, rcp = nvfp4_block_scale(butterfly(abs_max([lo, hi]), QUAD_COLUMN, cute.arch.fmax), rScal[3])
        b = Uint32(0)
        if rcp > Float32(0.0):
            b = f32x2_to_e2m1x2(lo * rcp, hi * rcp)
        # nibble g of code word 0 is K 16 blk + g, of word 1 K 16 blk + 8 + g
        w0 = butterfly((b & Uint32(0xF)) << Uint32(4 * g), QUAD_COLUMN, operator.or_)
        w1 = butterfly(((b >> Uint32(4)) & Uint32(0xF)) << Uint32(4 * g), QUAD_COLUMN, operator.or_)
        if g == 0 and valid:
            dst = cute.recast_tensor(cute.zipped_divide(mOut, (1, 8))[(None, (pair, blk))], Uint32)
            rC = cute.make_rmem_tensor_like(dst)
            rC[0] = w0
            rC[1] = w1
            cute.autovec_copy(rC, dst)
            mOut[pair, self.cfg.out_cols // 2 + blk] = Uint8(sbyte)


class FusedDecodeSm120(FusedDecode):
    """Host side of the SM120 tier: MMA-layout weights, per-expert alphas, NVFP4 intermediate."""

    tier = "sm120"
    kernel_cls = DecodeGemvSm120

    @classmethod
    def shape_reason(cls, w) -> str | None:
        if w.fc1_input_scale is None:
            return "W4A4 decode needs the FC1 input scale (the checkpoint's input_scale); the bundle has none"
        return super().shape_reason(w)

    @staticmethod
    def expert_scalars(w) -> tuple[torch.Tensor, torch.Tensor]:
        """FC1: ``w13_global * g1`` per half, ``g1``, ``g2``; FC2: ``w2_global * g2``, with
        ``g2 = w.fc2_quant_global()`` (as the oracle)."""
        one = torch.ones_like(w.w2_global)
        g1 = w.fc1_input_scale.float()
        g2 = w.fc2_quant_global().float()
        fc1 = w.w13_global if w.gated else w.w13_global.expand(-1, 2)
        return (torch.stack([fc1[:, 0] * g1, fc1[:, 1] * g1, g1, g2], 1).contiguous(),
                torch.stack([w.w2_global * g2, w.w2_global * g2, one, one], 1).contiguous())

    def compile_all(self, dtype: str, top_k: int) -> list:
        first = (dtype, top_k) not in self._bound
        kernels = super().compile_all(dtype, top_k)
        if first:
            try:
                self.self_check(dtype, top_k)
            except Exception:
                del self._bound[(dtype, top_k)]  # never launched after a failed check
                raise
        return kernels

    def self_check(self, dtype: str, top_k: int) -> None:
        """Run the kernels once on this layer's weights (one token routed to ``top_k`` local
        experts) and compare them with the exact host model of their dataflow
        (:mod:`.decode_model`). The SM120 tier is verified by compilation and emulation, not
        yet by a run in this project's CI, so it proves itself on the GPU it is about to
        serve on; a mismatch raises and callers keep their fallback (TensorRT-LLM: CUTLASS)."""
        from ..metrics import relative_error
        from .decode_model import decode_sm120_model

        w, dev = self.weights, self.weights.device
        tdt = TOKEN_DTYPES[dtype][1]
        gen = torch.Generator(device=dev).manual_seed(0)
        x = torch.randn(1, w.hidden_size, generator=gen, device=dev).to(tdt)
        ids = (self.parallel.expert_offset + torch.arange(top_k, device=dev) % w.num_experts).int().view(1, top_k)
        rw = torch.rand(1, top_k, generator=gen, device=dev)
        out = torch.full((1, w.hidden_size), float("nan"), dtype=tdt, device=dev)
        self(x, ids, rw, out)
        err = relative_error(out.float(), decode_sm120_model(self, x, ids, rw))
        if not err <= SELF_CHECK_BOUND:
            raise RuntimeError(f"SM120 decode self-check failed on this GPU ({dtype}, top_k={top_k}): relative error "
                               f"{err:.3g} against the host model of the kernel (bound {SELF_CHECK_BOUND}); not used")

    def intermediate_bytes(self, pairs: int, dtype: torch.dtype) -> int:
        return pairs * record_stride(self.cols)

    def intermediate_view(self, buf: torch.Tensor, pairs: int, dtype: torch.dtype) -> torch.Tensor:
        rb = record_stride(self.cols)
        return buf[: pairs * rb].view(pairs, rb)

    def kernel_tokens(self, x: torch.Tensor, inter: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, inter
