"""NVFP4 activation quantization: bf16/fp16 ``x [m, H]`` -> packed E2M1 + E4M3 block scales.

Bit-exact with :func:`trtllm_b12x.quantization.quantize_nvfp4` (the recipe is written
there). One thread owns one 16-element block: two 16-byte loads, one 8-byte store of
codes, one scale byte; a warp covers 512 contiguous elements of a row, so every access
is coalesced. The scale is written in the linear ``[m, H/16]`` layout or the 128x4
swizzled one; the swizzled grid also covers the padding (rows to 128, scale columns to
4) and writes zeros there, so the output never depends on what the buffer held.

The SM90 kernel converts to E2M1 in software (Hopper has no FP4 conversion); the SM120
variant overrides only that step with ``cvt.rn.satfinite.e2m1x2.f32``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
import torch
from cutlass import Float32, Int32, Uint8, Uint32
from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

from ..arch import Target, current_target
from .cache import CompileKey, KernelCache, compile_options, default_cache, have_tvm_ffi, launch
from ..quantization.codecs import E2M1_RNE_BOUNDS
from .intrinsics import TOKEN_DTYPES, abs_max, f32_bits, f32x8_to_e2m1x8, nvfp4_block_scale

SF_LAYOUTS = ("linear", "swizzled")



@dataclass(frozen=True)
class QuantizeConfig:
    hidden: int
    dtype: str = "bfloat16"
    sf_layout: str = "linear"
    threads: int = 256

    def __post_init__(self):
        if self.hidden % 16 or self.hidden <= 0:
            raise ValueError(f"hidden={self.hidden}: must be a positive multiple of 16 (one E4M3 scale per 16)")
        if self.dtype not in TOKEN_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not supported; supported: {tuple(TOKEN_DTYPES)}")
        if self.sf_layout not in SF_LAYOUTS:
            raise ValueError(f"sf_layout {self.sf_layout!r} is not supported; supported: {SF_LAYOUTS}")

    @property
    def blocks_per_row(self) -> int:
        return self.hidden // 16

    @property
    def grid_blocks_per_row(self) -> int:
        """Scale columns the grid covers: padded to 4 for the swizzled layout."""
        nb = self.blocks_per_row
        return -(-nb // 4) * 4 if self.sf_layout == "swizzled" else nb


class QuantizeSm90:
    """The kernel; SM-specific conversion in :meth:`e2m1x8`."""

    family = "nvfp4_quantize"
    tier = "sm90"

    def __init__(self, config: QuantizeConfig):
        self.cfg = config

    # -- compile (tensor-free) ----------------------------------------------------------------
    def fake_arguments(self) -> tuple:
        cfg = self.cfg
        m = cute.sym_int32()
        x = make_fake_compact_tensor(TOKEN_DTYPES[cfg.dtype][0], (m, cfg.hidden), stride_order=(1, 0), assumed_align=16)
        q = make_fake_compact_tensor(Uint8, (m, cfg.hidden // 2), stride_order=(1, 0), assumed_align=16)
        if cfg.sf_layout == "linear":
            s = make_fake_compact_tensor(Uint8, (m, cfg.blocks_per_row), stride_order=(1, 0), assumed_align=4)
        else:
            s = make_fake_compact_tensor(Uint8, (cute.sym_int32(divisibility=512),), assumed_align=16)
        g = make_fake_compact_tensor(Float32, (1,), assumed_align=4)
        return x, q, s, g, make_fake_stream()

    def compile(self, target: Target, *, tvm_ffi: bool):
        return cute.compile(self, *self.fake_arguments(), options=compile_options(target, tvm_ffi))

    # -- host launch ---------------------------------------------------------------------------
    @cute.jit
    def __call__(self, mX: cute.Tensor, mQ: cute.Tensor, mS: cute.Tensor, mG: cute.Tensor, stream):
        rows = mX.shape[0]
        if cutlass.const_expr(self.cfg.sf_layout == "swizzled"):
            rows = (rows + 127) // 128 * 128
        n = rows * self.cfg.grid_blocks_per_row
        threads = self.cfg.threads
        self.kernel(mX, mQ, mS, mG).launch(grid=[(n + threads - 1) // threads, 1, 1], block=[threads, 1, 1], stream=stream)

    # -- device --------------------------------------------------------------------------------
    @cute.kernel
    def kernel(self, mX: cute.Tensor, mQ: cute.Tensor, mS: cute.Tensor, mG: cute.Tensor):
        cfg = self.cfg
        nb, nbp = cfg.blocks_per_row, cfg.grid_blocks_per_row
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        blk = bidx * cfg.threads + tidx
        row = blk // nbp
        cb = blk - row * nbp
        m = mX.shape[0]
        rows = m
        if cutlass.const_expr(cfg.sf_layout == "swizzled"):
            rows = (m + 127) // 128 * 128
        if row < rows:
            sbyte = Uint32(0)
            if row < m and cb < nb:
                g = mG[0]
                gX = cute.zipped_divide(mX, (1, 16))[(None, (row, cb))]
                tXrX = cute.make_rmem_tensor_like(gX)
                cute.autovec_copy(gX, tXrX)
                v = tXrX.load().to(Float32)
                sbyte, r = nvfp4_block_scale(abs_max([v[i] for i in range(16)]), g)
                gQ = cute.recast_tensor(cute.zipped_divide(mQ, (1, 8))[(None, (row, cb))], Uint32)
                tQrQ = cute.make_rmem_tensor_like(gQ)
                for w in cutlass.range_constexpr(2):
                    tQrQ[w] = Uint32(0)  # a zero-scale block is all +0 codes (no -0 from x * 0)
                if r > Float32(0.0):
                    for w in cutlass.range_constexpr(2):
                        tQrQ[w] = self.e2m1x8([v[8 * w + i] * r for i in range(8)])
                cute.autovec_copy(tQrQ, gQ)
            self.store_scale(mS, row, cb, sbyte)

    @cute.jit
    def store_scale(self, mS: cute.Tensor, row: Int32, cb: Int32, sbyte: Uint32):
        if cutlass.const_expr(self.cfg.sf_layout == "linear"):
            mS[row, cb] = Uint8(sbyte)
        else:
            kt = self.cfg.grid_blocks_per_row // 4
            off = (row // 128) * (kt * 512) + (cb // 4) * 512 + (row % 32) * 16 + ((row % 128) // 32) * 4 + cb % 4
            mS[off] = Uint8(sbyte)

    @cute.jit
    def e2m1x8(self, vals: list) -> Uint32:
        """Software E2M1: count the RNE boundaries each magnitude passes; sign from the bits."""
        word = Uint32(0)
        for i in cutlass.range_constexpr(8):
            mag = cute.math.abs(vals[i])
            code = Uint32(0)
            for bound, tie_up in E2M1_RNE_BOUNDS:
                passed = (mag >= Float32(bound)) if tie_up else (mag > Float32(bound))
                code = code + Uint32(passed)
            code = code | ((f32_bits(vals[i]) >> 31) << 3)
            word = word | (code << (4 * i))
        return word


class QuantizeSm120(QuantizeSm90):
    """SM120/SM121: the hardware ``cvt.rn.satfinite.e2m1x2.f32`` conversion."""

    tier = "sm120"

    @cute.jit
    def e2m1x8(self, vals: list) -> Uint32:
        return f32x8_to_e2m1x8(*vals)


KERNELS = {"sm90": QuantizeSm90, "sm120": QuantizeSm120}


def get_kernel(config: QuantizeConfig, target: Target, *, cache: KernelCache | None = None,
               tvm_ffi: bool | None = None):
    """Compiled quantize kernel for ``target`` (compiles or loads once per key)."""
    tvm_ffi = have_tvm_ffi() if tvm_ffi is None else tvm_ffi
    kernel = KERNELS[target.tier](config)
    key = CompileKey(kernel.family, target.name, config, tvm_ffi)
    return (cache or default_cache()).get(key, lambda: kernel.compile(target, tvm_ffi=tvm_ffi))


def _check(x: torch.Tensor, global_scale: torch.Tensor) -> None:
    if x.device.type != "cuda":
        raise ValueError(f"x is on {x.device}; the quantize kernel needs a CUDA tensor (use quantization.quantize_nvfp4 on CPU)")
    if x.dtype not in (torch.bfloat16, torch.float16):
        raise TypeError(f"x: dtype {x.dtype} is not supported; supported: torch.bfloat16, torch.float16")
    if x.dim() != 2 or x.shape[1] % 16:
        raise ValueError(f"x: shape {tuple(x.shape)}; expected [m, H] with H a multiple of 16")
    if not x.is_contiguous():
        raise ValueError(f"x: strides {x.stride()} are not contiguous; pass x.contiguous()")
    if x.data_ptr() % 16:
        raise ValueError("x: data pointer is not 16-byte aligned; the kernel uses 16-byte loads")
    if global_scale.dtype != torch.float32 or global_scale.numel() != 1 or global_scale.device != x.device:
        raise ValueError(
            f"global_scale: expected a 1-element float32 tensor on {x.device} (dequant direction, e.g. the "
            f"checkpoint's input_scale), got {global_scale.dtype} with {global_scale.numel()} elements on {global_scale.device}"
        )


def quantize_activations(
    x: torch.Tensor,
    global_scale: torch.Tensor,
    *,
    sf_layout: str = "linear",
    out: tuple[torch.Tensor, torch.Tensor] | None = None,
    cache: KernelCache | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x [m, H]`` on the GPU: ``(data uint8 [m, H/2], scale float8_e4m3fn)``.

    ``scale`` is ``[m, H/16]`` (linear) or ``[round128(m), round4(H/16)]`` with 128x4-swizzled
    storage. ``global_scale`` stays on the device (no host read: CUDA-graph safe). ``out``
    takes caller-owned buffers of those shapes.
    """
    _check(x, global_scale)
    m, h = x.shape
    cfg = QuantizeConfig(h, "bfloat16" if x.dtype == torch.bfloat16 else "float16", sf_layout)
    sshape = (m, h // 16) if sf_layout == "linear" else (-(-m // 128) * 128, cfg.grid_blocks_per_row)
    if out is None:
        q = torch.empty(m, h // 2, dtype=torch.uint8, device=x.device)
        s = torch.empty(sshape, dtype=torch.float8_e4m3fn, device=x.device)
    else:
        q, s = out
        if q.shape != (m, h // 2) or q.dtype != torch.uint8 or s.shape != sshape or s.dtype != torch.float8_e4m3fn:
            raise ValueError(
                f"out: got data {tuple(q.shape)} {q.dtype}, scale {tuple(s.shape)} {s.dtype}; expected data "
                f"({m}, {h // 2}) torch.uint8 and scale {sshape} torch.float8_e4m3fn"
            )
    ck = get_kernel(cfg, current_target(x.device), cache=cache)
    s_arg = s.view(torch.uint8)
    if sf_layout == "swizzled":
        s_arg = s_arg.reshape(-1)
    launch(ck, x, q, s_arg, global_scale.reshape(1))
    return q, s
