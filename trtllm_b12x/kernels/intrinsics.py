"""Inline-PTX conversions the CuTe DSL does not expose as we need them.

``cvt.*.e4m3x2`` exists from sm_89 (both our targets); ``cvt.rn.satfinite.e2m1x2.f32``
only on the FP4 targets (sm_100a+/sm_120a+), so the SM90 kernels convert E2M1 in software.
"""

from __future__ import annotations

import cutlass.cute as cute
import torch
from cutlass import BFloat16, Float16, Float32, Uint32
from cutlass._mlir.dialects import llvm
from cutlass.cutlass_dsl import T, dsl_user_op


def _asm(ret, args, text: str, constraints: str):
    return llvm.inline_asm(
        ret, args, text, constraints, has_side_effects=False, is_align_stack=False, asm_dialect=llvm.AsmDialect.AD_ATT
    )


@dsl_user_op
def f32_to_e4m3(a: Float32, *, loc=None, ip=None) -> Uint32:
    """RNE, saturating float -> E4M3 byte (in the low 8 bits)."""
    zero = Float32(0.0).ir_value(loc=loc, ip=ip)
    # cvt packs its first source into the upper byte: put the value second (low byte).
    text = "{ .reg .b16 t; cvt.rn.satfinite.e4m3x2.f32 t, $2, $1; cvt.u32.u16 $0, t; }"
    return Uint32(_asm(T.i32(), [Float32(a).ir_value(loc=loc, ip=ip), zero], text, "=r,f,f"))


@dsl_user_op
def e4m3_to_f32(byte: Uint32, *, loc=None, ip=None) -> Float32:
    """E4M3 byte (low 8 bits) -> float, exact (through f16, which holds every E4M3 value)."""
    text = (
        "{ .reg .b16 t, lo, hi; .reg .b32 h2; cvt.u16.u32 t, $1; cvt.rn.f16x2.e4m3x2 h2, t; "
        "mov.b32 {lo, hi}, h2; cvt.f32.f16 $0, lo; }"
    )
    return Float32(_asm(T.f32(), [Uint32(byte).ir_value(loc=loc, ip=ip)], text, "=f,r"))


@cute.jit
def nvfp4_block_scale(amax: Float32, g: Float32):
    """The NVFP4 block-scale recipe of :mod:`trtllm_b12x.quantization.nvfp4`, IEEE-rounded as
    there: ``(E4M3 byte of amax / (6 g), 1 / (scale * g))``; the reciprocal is 0 for a zero
    scale (callers then write +0 codes)."""
    sbyte = f32_to_e4m3(amax / (g * Float32(6.0)))
    s = e4m3_to_f32(sbyte)
    rcp = Float32(0.0)
    if s > Float32(0.0):
        rcp = Float32(1.0) / (s * g)
    return sbyte, rcp


def abs_max(vals) -> Float32:
    """``max |v|`` over a list of floats."""
    m = cute.math.abs(vals[0])
    for v in vals[1:]:
        m = cute.arch.fmax(m, cute.math.abs(v))
    return m


def butterfly(v, masks, op):
    """Combine ``v`` across the lanes that differ in ``masks`` (``shfl.bfly``), e.g. a max or an or."""
    for m in masks:
        v = op(v, type(v)(cute.arch.shuffle_sync_bfly(v, m)))
    return v


@dsl_user_op
def f32x8_to_e2m1x8(v0, v1, v2, v3, v4, v5, v6, v7, *, loc=None, ip=None) -> Uint32:
    """Eight floats -> eight E2M1 codes in a u32, element i in nibble i (RNE, saturating).

    Hardware conversion (sm_100a+/sm_120a+): ``cvt`` puts its first source in the high
    nibble, so each pair is passed (odd, even).
    """
    vals = [Float32(v).ir_value(loc=loc, ip=ip) for v in (v0, v1, v2, v3, v4, v5, v6, v7)]
    text = (
        "{ .reg .b8 b0, b1, b2, b3; "
        "cvt.rn.satfinite.e2m1x2.f32 b0, $2, $1; cvt.rn.satfinite.e2m1x2.f32 b1, $4, $3; "
        "cvt.rn.satfinite.e2m1x2.f32 b2, $6, $5; cvt.rn.satfinite.e2m1x2.f32 b3, $8, $7; "
        "mov.b32 $0, {b0, b1, b2, b3}; }"
    )
    return Uint32(_asm(T.i32(), vals, text, "=r,f,f,f,f,f,f,f,f"))


@dsl_user_op
def f32_bits(a: Float32, *, loc=None, ip=None) -> Uint32:
    """The IEEE bit pattern of a float (sign of -0.0 included)."""
    return Uint32(_asm(T.i32(), [Float32(a).ir_value(loc=loc, ip=ip)], "mov.b32 $0, $1;", "=r,f"))


@dsl_user_op
def block_any(flag: Uint32, *, loc=None, ip=None) -> Uint32:
    """1 in every thread of the CTA if any thread's ``flag`` is non-zero (``bar.red.or``);
    a CTA-wide barrier: every thread must reach it."""
    text = "{ .reg .pred p, q; setp.ne.u32 p, $1, 0; bar.red.or.pred q, 0, p; selp.u32 $0, 1, 0, q; }"
    return Uint32(
        llvm.inline_asm(T.i32(), [Uint32(flag).ir_value(loc=loc, ip=ip)], text, "=r,r",
                        has_side_effects=True, is_align_stack=False, asm_dialect=llvm.AsmDialect.AD_ATT)
    )


# -- warp MMA operands from NVFP4 (decode kernels) --------------------------------------------
# E2M1 magnitude bits land in the low exponent / top mantissa bits of a 16-bit float, which
# makes every code (subnormal 0.5 included) exact but scaled by 2^-126 (BF16) or 2^-14 (FP16).
# The E4M3 block scale is pre-multiplied by 2^64 (BF16; keeps products normal) or 1 (FP16),
# so A = code * scale * 2^-62 (BF16) or 2^-14 (FP16), exact; the epilogue multiplies back.
# token dtypes of the kernels: name -> (CuTe type, torch dtype)
TOKEN_DTYPES = {"bfloat16": (BFloat16, torch.bfloat16), "float16": (Float16, torch.float16)}
CODE_SHIFT = {"bfloat16": 6, "float16": 9}
EPILOGUE_SCALE = {"bfloat16": 2.0**62, "float16": 2.0**14}
HALF_SIGNS = 0x80008000


def e2m1_pair_plan(dtype: str) -> tuple[int, list[tuple[int, int, int, int]]]:
    """How a code word (8 E2M1, nibble ``n`` at bits ``4 n``) becomes 4 half2 words, pair ``p``
    = nibbles ``(p, p + 4)``: ``(d, [(w_mask, side, v_mask, shift)] * 4)`` meaning
    ``half2_p = ((w & w_mask) | (v & v_mask)) << shift`` with ``v = w << d`` (``side`` +1) or
    ``w >> d`` (-1). A nibble's sign must move ``d = 12 - CODE_SHIFT`` bits further left than
    its magnitude; one pre-shifted copy of the word serves all pairs, so a pair costs one
    masked join (two LOP3 in SASS: one immediate each) and at most one shift."""
    sh = CODE_SHIFT[dtype]
    d, mags = 12 - sh, (0x7 << sh) * 0x10001
    plan = []
    for p in range(4):
        sign, mag = 12 - 4 * p, sh - 4 * p  # left shifts taking the nibbles' sign / magnitude into place
        if mag >= 0:  # shift by the magnitude's amount; the sign comes from w << d
            plan.append((mags >> mag, 1, HALF_SIGNS >> mag, mag))
        else:  # shift by the sign's amount; the magnitude comes from w >> d
            plan.append((HALF_SIGNS >> sign, -1, mags >> sign, sign))
    return d, plan


def _struct(*types):
    return llvm.StructType.get_literal(list(types))


@dsl_user_op
def scale_pair(sf2: Uint32, dtype: str, *, loc=None, ip=None):
    """Two E4M3 block scales (rows g: low byte, g+8: next byte) -> two broadcast half2 words
    ``(s_g, s_g)`` and ``(s_g8, s_g8)`` in the MMA dtype, carrying the operand pre-scale."""
    if dtype == "bfloat16":
        text = (
            "{ .reg .b16 t, lo, hi; .reg .b32 h2; .reg .f32 f0, f1; cvt.u16.u32 t, $2; "
            "cvt.rn.f16x2.e4m3x2 h2, t; mov.b32 {lo, hi}, h2; cvt.f32.f16 f0, lo; cvt.f32.f16 f1, hi; "
            "mul.f32 f0, f0, 0f5F800000; mul.f32 f1, f1, 0f5F800000; "
            "cvt.rn.bf16x2.f32 $0, f0, f0; cvt.rn.bf16x2.f32 $1, f1, f1; }"
        )
    else:
        text = (
            "{ .reg .b16 t, lo, hi; .reg .b32 h2; cvt.u16.u32 t, $2; cvt.rn.f16x2.e4m3x2 h2, t; "
            "mov.b32 {lo, hi}, h2; mov.b32 $0, {lo, lo}; mov.b32 $1, {hi, hi}; }"
        )
    res = _asm(_struct(T.i32(), T.i32()), [Uint32(sf2).ir_value(loc=loc, ip=ip)], text, "=r,=r,r")
    return tuple(Uint32(llvm.extractvalue(T.i32(), res, [i], loc=loc, ip=ip)) for i in range(2))


@dsl_user_op
def prmt(a: Uint32, b: Uint32, sel: Uint32, *, loc=None, ip=None) -> Uint32:
    """Byte permute: byte ``i`` of the result is byte ``(sel >> 4 i) & 7`` of ``b:a``."""
    args = [Uint32(v).ir_value(loc=loc, ip=ip) for v in (a, b, sel)]
    return Uint32(_asm(T.i32(), args, "prmt.b32 $0, $1, $2, $3;", "=r,r,r,r"))


@dsl_user_op
def mul_half2(a: Uint32, b: Uint32, dtype: str, *, loc=None, ip=None) -> Uint32:
    """Packed BF16/FP16 multiply (round to nearest; subnormal inputs kept)."""
    op = "mul.rn.bf16x2" if dtype == "bfloat16" else "mul.rn.f16x2"
    args = [Uint32(a).ir_value(loc=loc, ip=ip), Uint32(b).ir_value(loc=loc, ip=ip)]
    return Uint32(_asm(T.i32(), args, f"{op} $0, $1, $2;", "=r,r,r"))


@dsl_user_op
def mma_m16n8k16(a: list, b: list, c: list, dtype: str, *, loc=None, ip=None) -> list:
    """``mma.sync.m16n8k16`` row.col, FP32 accumulate: 4 A words, 2 B words, 4 accumulators."""
    ty = "bf16" if dtype == "bfloat16" else "f16"
    text = (
        f"mma.sync.aligned.m16n8k16.row.col.f32.{ty}.{ty}.f32 "
        "{$0,$1,$2,$3}, {$4,$5,$6,$7}, {$8,$9}, {$10,$11,$12,$13};"
    )
    args = [Uint32(v).ir_value(loc=loc, ip=ip) for v in (*a, *b)] + [Float32(v).ir_value(loc=loc, ip=ip) for v in c]
    res = _asm(_struct(*([T.f32()] * 4)), args, text, "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3")
    return [Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(4)]


# -- SM120/SM121 block-scaled FP4 MMA (sm_120a/sm_121a only) ----------------------------------
@dsl_user_op
def f32x2_to_e2m1x2(lo: Float32, hi: Float32, *, loc=None, ip=None) -> Uint32:
    """Two floats -> two E2M1 codes in the low byte: ``lo`` in the low nibble (RNE, saturating)."""
    args = [Float32(v).ir_value(loc=loc, ip=ip) for v in (hi, lo)]
    text = "{ .reg .b8 b; cvt.rn.satfinite.e2m1x2.f32 b, $1, $2; cvt.u32.u8 $0, b; }"
    return Uint32(_asm(T.i32(), args, text, "=r,f,f"))


@dsl_user_op
def mma_m16n8k64_nvf4(a: list, b: list, c: list, sfa: Uint32, sfb: Uint32, tid_a: int, tid_b: int, *, loc=None,
                      ip=None) -> list:
    """``mma.sync.m16n8k64 kind::mxf4nvf4.block_scale.scale_vec::4X`` with UE4M3 scales:
    4 A words, 2 B words (8 E2M1 each), 4 FP32 accumulators, one scale word per operand whose
    4 bytes are the 4 blocks of the row (A) or column (B); ``tid_a``/``tid_b`` select which
    lanes of each quad supply them (:mod:`trtllm_b12x.quantization.mma_emulator`)."""
    text = (
        "mma.sync.aligned.kind::mxf4nvf4.block_scale.scale_vec::4X.m16n8k64.row.col.f32.e2m1.e2m1.f32.ue4m3 "
        f"{{$0,$1,$2,$3}}, {{$4,$5,$6,$7}}, {{$8,$9}}, {{$10,$11,$12,$13}}, $14, {{0, {tid_a}}}, $15, {{0, {tid_b}}};"
    )
    args = ([Uint32(v).ir_value(loc=loc, ip=ip) for v in (*a, *b)]
            + [Float32(v).ir_value(loc=loc, ip=ip) for v in c]
            + [Uint32(v).ir_value(loc=loc, ip=ip) for v in (sfa, sfb)])
    res = _asm(_struct(*([T.f32()] * 4)), args, text, "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3,r,r")
    return [Float32(llvm.extractvalue(T.f32(), res, [i], loc=loc, ip=ip)) for i in range(4)]
