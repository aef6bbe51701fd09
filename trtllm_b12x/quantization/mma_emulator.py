"""A torch model of the SM120 block-scaled warp MMA, fed from per-lane registers.

``mma.sync.aligned.m16n8k64.row.col.kind::mxf4nvf4.block_scale.scale_vec::4X.f32.e2m1.e2m1.f32.ue4m3
d, a, b, c, sfa, {0, tid_a}, sfb, {0, tid_b}`` computes, with ``A`` 16 x 64 and ``B`` 64 x 8 E2M1::

    D[m, n] = C[m, n] + sum_k A[m, k] SFA[m, k / 16] B[k, n] SFB[k / 16, n]

Operand fragments, as the PTX ISA defines them (lane ``l = 4 g + t``, element ``i`` of a
32-bit register is nibble ``i``, low nibble first):

* ``A``: register ``r`` (0..3), element ``i`` (0..7) is ``A[g + 8 (r % 2), 32 (r // 2) + 8 t + i]``;
* ``B``: register ``r`` (0..1), element ``i`` is ``B[32 r + 8 t + i, g]``;
* ``SFA``: row ``m`` is read from lane ``4 (m % 8) + 2 tid_a + m // 8``, byte ``j`` = block ``j``;
* ``SFB``: column ``n`` is read from lane ``4 n + tid_b``, byte ``j`` = block ``j``;
* ``C``/``D``: register ``v`` (0..3) is ``[g + 8 (v // 2), 2 t + v % 2]``.

Everything here is exact integer arithmetic: an E2M1 value is a multiple of 1/2 and an E4M3
value a multiple of 2^-9, so each product is an integer multiple of :data:`UNIT` = 2^-20 and
a sum over any K of interest fits an int64. Runs on the CPU or on the tensors' GPU. A layout bug therefore shows as a mismatch,
never as a rounding difference.
"""

from __future__ import annotations

import torch

from .codecs import E2M1_VALUES, e4m3_decode

UNIT = 2.0**-20
_E2M1_X2 = torch.tensor([int(2 * v) for v in E2M1_VALUES], dtype=torch.int64)  # value * 2, by code


def e2m1_units(codes: torch.Tensor) -> torch.Tensor:
    """E2M1 codes (0..15) -> value * 2 as int64."""
    return _E2M1_X2.to(codes.device)[codes.long()]


def e4m3_units(scale_bytes: torch.Tensor) -> torch.Tensor:
    """UE4M3 scale bytes -> value * 512 as int64 (NaN bytes are rejected)."""
    b = scale_bytes.to(torch.uint8)
    if bool(((b & 0x7F) == 0x7F).any()):
        raise ValueError("mma emulator: a scale byte is NaN (0x7f/0xff); block scales must be finite")
    v = e4m3_decode(b.view(torch.float8_e4m3fn)).double() * 512.0
    return v.round().long()


def _nibbles(regs: torch.Tensor) -> torch.Tensor:
    """u32 registers ``[..., R]`` (int64 holding 0..2^32-1) -> codes ``[..., R, 8]``."""
    shifts = torch.arange(0, 32, 4, device=regs.device)
    return (regs.long().unsqueeze(-1) >> shifts) & 0xF


def _bytes(regs: torch.Tensor) -> torch.Tensor:
    shifts = torch.arange(0, 32, 8, device=regs.device)
    return (regs.long().unsqueeze(-1) >> shifts) & 0xFF


def _lane_grid(device):
    lane = torch.arange(32, device=device)
    return lane // 4, lane % 4


def a_matrix(a: torch.Tensor) -> torch.Tensor:
    """A registers ``[..., 32, 4]`` -> E2M1 codes ``[..., 16, 64]``."""
    g, t = _lane_grid(a.device)
    codes = _nibbles(a)  # [..., lane, r, i]
    r = torch.arange(4, device=a.device)
    i = torch.arange(8, device=a.device)
    rows = (g[:, None, None] + 8 * (r[None, :, None] % 2)).expand(32, 4, 8)
    cols = (32 * (r[None, :, None] // 2) + 8 * t[:, None, None] + i[None, None, :]).expand(32, 4, 8)
    out = torch.zeros(*a.shape[:-2], 16, 64, dtype=torch.int64, device=a.device)
    out[..., rows, cols] = codes
    return out


def b_matrix(b: torch.Tensor) -> torch.Tensor:
    """B registers ``[..., 32, 2]`` -> E2M1 codes ``[..., 64, 8]``."""
    g, t = _lane_grid(b.device)
    codes = _nibbles(b)  # [..., lane, r, i]
    r = torch.arange(2, device=b.device)
    i = torch.arange(8, device=b.device)
    ks = (32 * r[None, :, None] + 8 * t[:, None, None] + i[None, None, :]).expand(32, 2, 8)
    ns = g[:, None, None].expand(32, 2, 8)
    out = torch.zeros(*b.shape[:-2], 64, 8, dtype=torch.int64, device=b.device)
    out[..., ks, ns] = codes
    return out


def sfa_matrix(sfa: torch.Tensor, tid_a: int) -> torch.Tensor:
    """Scale-A registers ``[..., 32]`` -> scale bytes ``[..., 16 rows, 4 blocks]``."""
    m = torch.arange(16, device=sfa.device)
    return _bytes(sfa)[..., 4 * (m % 8) + 2 * tid_a + m // 8, :]


def sfb_matrix(sfb: torch.Tensor, tid_b: int) -> torch.Tensor:
    """Scale-B registers ``[..., 32]`` -> scale bytes ``[..., 4 blocks, 8 columns]``."""
    n = torch.arange(8, device=sfb.device)
    return _bytes(sfb)[..., 4 * n + tid_b, :].transpose(-1, -2)


def mma_m16n8k64(a: torch.Tensor, b: torch.Tensor, sfa: torch.Tensor, sfb: torch.Tensor, *, tid_a: int,
                 tid_b: int) -> torch.Tensor:
    """The product of one (or a batch of) block-scaled MMAs from lane registers, as D registers
    ``[..., 32, 4]`` in units of :data:`UNIT` (int64, exact; add C yourself)."""
    if tid_a not in (0, 1) or tid_b not in (0, 1, 2, 3):
        raise ValueError(f"thread-id-a={tid_a} must be 0/1 and thread-id-b={tid_b} 0..3 (scale_vec::4X)")
    av = e2m1_units(a_matrix(a)) * e4m3_units(sfa_matrix(sfa, tid_a)).repeat_interleave(16, -1)
    bv = e2m1_units(b_matrix(b)) * e4m3_units(sfb_matrix(sfb, tid_b)).repeat_interleave(16, -2)
    # float64 is exact here (|product| < 2^43 units, 64 of them < 2^49) and has a GPU matmul
    d = torch.einsum("...mk,...kn->...mn", av.double(), bv.double()).long()
    g, t = _lane_grid(a.device)
    v = torch.arange(4, device=a.device)
    rows = g[:, None] + 8 * (v[None, :] // 2)
    cols = 2 * t[:, None] + v[None, :] % 2
    return d[..., rows, cols]


def d_matrix(d: torch.Tensor) -> torch.Tensor:
    """D registers ``[..., 32, 4]`` -> ``[..., 16, 8]``."""
    g, t = _lane_grid(d.device)
    v = torch.arange(4, device=d.device)
    out = torch.zeros(*d.shape[:-2], 16, 8, dtype=d.dtype, device=d.device)
    out[..., g[:, None] + 8 * (v[None, :] // 2), 2 * t[:, None] + v[None, :] % 2] = d
    return out


def _words(b: torch.Tensor) -> torch.Tensor:
    """uint8 ``[..., 4 n]`` -> little-endian u32 words ``[..., n]`` as int64."""
    v = b.long().view(*b.shape[:-1], -1, 4)
    return v[..., 0] | (v[..., 1] << 8) | (v[..., 2] << 16) | (v[..., 3] << 24)


def token_registers(data: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B and scale-B registers of every 64-wide chunk for up to 8 NVFP4 rows (linear layout:
    ``data [P, K/2]`` uint8, ``scale [P, K/16]`` uint8), ``[chunks, 32, 2]`` and ``[chunks, 32]``:
    lane ``4 g + t`` loads row ``g``'s code bytes ``[32 c + 4 t, +4)`` and ``[32 c + 16 + 4 t, +4)``,
    and every lane of the quad the row's 4 scale bytes of the chunk (read with ``thread-id-b = 0``)."""
    p = data.shape[0]
    if p > 8:
        raise ValueError(f"token_registers: {p} rows; one MMA takes at most 8")
    d = torch.zeros(8, data.shape[1], dtype=torch.uint8, device=data.device)
    s = torch.zeros(8, scale.shape[1], dtype=torch.uint8, device=data.device)
    d[:p], s[:p] = data.view(torch.uint8), scale.view(torch.uint8)
    g, t = _lane_grid(data.device)
    words = _words(d).view(8, -1, 8)  # [row, chunk, word]
    b = torch.stack([words[g, :, t], words[g, :, 4 + t]], -1).transpose(0, 1)  # [chunk, lane, 2]
    sfb = _words(s)[g].t()  # [chunk, lane]
    return b, sfb


def stored_gemv(codes: torch.Tensor, words: torch.Tensor, data: torch.Tensor, scale: torch.Tensor,
                *, chunk_batch: int = 8) -> torch.Tensor:
    """One expert's stored rows (``codes [R, K/2]`` uint8 row-major, ``R`` a multiple of 16;
    ``words [R, K/64]`` the rows' scale words, see :func:`~.layouts.scale_words`) times up to
    8 NVFP4 token rows, with the registers each lane of the SM120 decode kernel takes from its
    shared-memory ring — A register ``r`` is word ``t`` of half ``r // 2`` of row
    ``g + 8 (r % 2)``, scale A the word of row ``g + 8 (t % 2)`` read with ``thread-id-a = 0`` —
    as ``[R, P]`` in units of :data:`UNIT`."""
    rows, k2 = codes.shape
    chunks = 2 * k2 // 64
    if rows % 16 or 2 * k2 % 64 or tuple(words.shape) != (rows, chunks):
        raise ValueError(f"stored_gemv: codes {tuple(codes.shape)} / words {tuple(words.shape)}: rows must be a "
                         f"multiple of 16, K of 64, one scale word per (row, chunk)")
    tiles = rows // 16
    g, t = _lane_grid(codes.device)
    w = _words(codes.view(torch.uint8)).view(tiles, 16, chunks, 8).permute(1, 3, 0, 2)  # [row, word, tile, chunk]
    r = torch.arange(4, device=codes.device)
    a = w[g[:, None] + 8 * (r[None, :] % 2), 4 * (r[None, :] // 2) + t[:, None]]  # [lane, r, tile, chunk]
    a = a.permute(2, 3, 0, 1)  # [tile, chunk, lane, r]
    sw = words.view(tiles, 16, chunks)[:, g + 8 * (t % 2), :].permute(0, 2, 1)  # [tile, chunk, lane]
    b, sfb = token_registers(data, scale)
    acc = torch.zeros(tiles, 32, 4, dtype=torch.int64, device=codes.device)
    for lo in range(0, chunks, chunk_batch):
        n = min(chunk_batch, chunks - lo)
        acc += mma_m16n8k64(a[:, lo:lo + n], b[lo:lo + n].expand(tiles, n, 32, 2), sw[:, lo:lo + n],
                            sfb[lo:lo + n].expand(tiles, n, 32), tid_a=0, tid_b=0).sum(1)
    return d_matrix(acc).reshape(rows, 8)[:, : data.shape[0]]
