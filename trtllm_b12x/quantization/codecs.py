"""Bit-level codecs of NVFP4: E2M1 values (two per byte) and E4M3 block scales.

E2M1 codes (sign bit 3, exponent bits 2..1, mantissa bit 0):

    code  0    1    2    3    4    5    6    7
    value 0.0  0.5  1.0  1.5  2.0  3.0  4.0  6.0      (codes 8..15: the same, negated)

Encoding rounds to nearest, ties to the even code, and saturates at +-6 (infinities
included); NaN has no E2M1 code and is rejected. Packing puts element 2j in the low
nibble of byte j and element 2j+1 in the high nibble (the byte layout of
``torch.float4_e2m1fn_x2`` and of the PTX ``cvt.rn.satfinite.e2m1x2.f32`` result).

E4M3 (``torch.float8_e4m3fn``) block scales are non-negative; encoding rounds to
nearest even and saturates at 448 (torch's cast does both); subnormals down to 2**-9
are kept, smaller values round to zero.
"""

from __future__ import annotations

import torch

E2M1_MAX = 6.0
E4M3_MAX = 448.0

# Value of each 4-bit code; index = code.
E2M1_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)

# Round-to-nearest-even boundaries on |v|, with whether a value equal to the boundary
# rounds up (to the even code): 0.25->0.0 0.75->1.0 1.25->1.0 1.75->2.0 2.5->2.0
# 3.5->4.0 5.0->4.0. The code magnitude is the number of boundaries passed.
E2M1_RNE_BOUNDS = ((0.25, False), (0.75, True), (1.25, False), (1.75, True), (2.5, False), (3.5, True), (5.0, False))


def _reject_nan(x: torch.Tensor, what: str) -> None:
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        idx = int(torch.isnan(x.reshape(-1)).nonzero()[0])
        raise ValueError(
            f"{what}: NaN at flat index {idx}; NVFP4 has no NaN encoding, so NaN inputs are "
            "rejected (finite values and +-inf, which saturates, are supported)"
        )


def e2m1_encode(v: torch.Tensor) -> torch.Tensor:
    """Round float values to E2M1 codes (uint8 in [0, 16), one code per element)."""
    if not v.is_floating_point():
        raise TypeError(f"e2m1_encode: expected a floating tensor, got dtype {v.dtype}")
    _reject_nan(v, "e2m1_encode")
    v = v.float()
    mag = v.abs()
    code = torch.zeros(v.shape, dtype=torch.uint8, device=v.device)
    for bound, tie_up in E2M1_RNE_BOUNDS:
        code += (mag >= bound) if tie_up else (mag > bound)
    sign = torch.signbit(v).to(torch.uint8) << 3
    return code | sign


def e2m1_decode(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes (uint8 in [0, 16)) to float32 values."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"e2m1_decode: expected uint8 codes, got {codes.dtype}")
    table = torch.tensor(E2M1_VALUES, dtype=torch.float32, device=codes.device)
    return table[(codes & 0xF).long()]


def pack_e2m1(codes: torch.Tensor) -> torch.Tensor:
    """Pack codes [..., K] (K even) into bytes [..., K/2]; low nibble = even element."""
    if codes.shape[-1] % 2:
        raise ValueError(f"pack_e2m1: last dimension {codes.shape[-1]} must be even (two codes per byte)")
    codes = codes.to(torch.uint8)
    return (codes[..., 0::2] & 0xF) | ((codes[..., 1::2] & 0xF) << 4)


def unpack_e2m1(packed: torch.Tensor) -> torch.Tensor:
    """Bytes [..., K/2] to codes [..., K]; inverse of :func:`pack_e2m1`."""
    if packed.dtype != torch.uint8:
        raise TypeError(f"unpack_e2m1: expected uint8 packed bytes, got {packed.dtype}")
    out = torch.stack((packed & 0xF, packed >> 4), dim=-1)
    return out.reshape(*packed.shape[:-1], packed.shape[-1] * 2)


def e4m3_encode(s: torch.Tensor) -> torch.Tensor:
    """Float block scales (>= 0) to ``float8_e4m3fn``: RNE, saturating at 448."""
    _reject_nan(s, "e4m3_encode")
    s = s.float()
    if bool((s < 0).any()):
        raise ValueError("e4m3_encode: block scales must be >= 0 (they come from absolute maxima)")
    # Explicit clamp: the saturation is part of the format contract, not a torch detail.
    return s.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)


def e4m3_decode(s: torch.Tensor) -> torch.Tensor:
    """``float8_e4m3fn`` (or its uint8 bit pattern) to float32."""
    if s.dtype == torch.uint8:
        s = s.view(torch.float8_e4m3fn)
    if s.dtype != torch.float8_e4m3fn:
        raise TypeError(f"e4m3_decode: expected float8_e4m3fn or uint8, got {s.dtype}")
    return s.float()
