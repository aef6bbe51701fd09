"""The decode kernels' weight layouts: NVFP4 codes and scales in warp-MMA fragment order.

Both tiers keep the same containers — per 16-row tile and 64-wide K chunk, 16 code bytes per
lane (one 16-byte load), and per ``G`` chunks ``2 G`` scale bytes per lane — and differ only
in which element a byte holds: the operand order of their MMA (``FragmentLayout.mma``).

``m16n8k16`` (SM90, BF16/FP16 MMA on codes dequantized in registers)
--------------------------------------------------------------------

The decode kernel multiplies weights (MMA operand A, 16 rows per tile) with tokens (operand
B) using ``mma.sync.m16n8k16``. Inside each 64-wide K chunk the reduction index is permuted
identically for A and B (a dot product does not care about order), so that lane
``l = 4*g + t`` of a warp owns rows ``g`` and ``g + 8`` and the 16 contiguous K positions
``[16 t, 16 t + 16)`` of the chunk — exactly one 16-element scale block per row:

* step ``s`` (0..3) of the chunk uses K positions ``16 t + 4 s + {0..3}``; MMA k slots
  ``2t, 2t+1`` take the first two, ``2t+8, 2t+9`` the last two;
* the lane's 16 code bytes are 4 words, word ``s`` for step ``s``; its element ``(r, j)``
  is A register ``r = rh + 2 h`` (0..3), half ``j``: row ``g + 8 rh``, K position
  ``16 t + 4 s + 2 h + j``. The word does not hold nibbles: element ``(r, j)`` keeps its
  3 magnitude bits at ``MAG_BIT[r] + 16 j`` and its sign at ``SIGN_BIT[r] + 16 j``
  (:data:`M16N8K16_MAG_BIT`, :data:`M16N8K16_SIGN_BIT`), so that the four BF16 pairs come out
  of a word with 5 shifts and 6 masks (FP16: 8 masks) instead of 7 and 8 — see
  :func:`word_bits`;
* the lane's token operand is simply the 32 contiguous bytes ``x[16 t : 16 t + 16]`` of
  the chunk.

Codes: ``[E, R/16, K/64, 32 lanes, 4 words]``. Scales: ``[E, R/16, K/64/G, 32 lanes, G, 2]``
(``G`` chunks per lane load, rows ``g`` then ``g + 8``).

``m16n8k64`` (SM120/SM121, ``mma.sync ... kind::mxf4nvf4.block_scale.scale_vec::4X``) — the MMA layout
-------------------------------------------------------------------------------------------------------

The block-scaled MMA takes the codes as they are and the E4M3 scales as a second operand, so
nothing is permuted along K: MMA k ``i`` of chunk ``c`` is ``K = 64 c + i`` and its scale block
``i // 16`` is the weight's own block ``4 c + i // 16``. The PTX operand order (A: 16 x 64,
lane ``l = 4 g + t``; scale A: ``scale_vec::4X``, one 32-bit word of 4 UE4M3 per row):

* code word ``r`` (0..3) of the lane, nibble ``n`` (0..7, low nibble first) is row
  ``16 rt + g + 8 (r % 2)``, ``K = 64 c + 32 (r // 2) + 8 t + n``;
* scale row ``m`` of a tile is read from lane ``4 (m % 8) + 2 tid + m // 8``, where ``tid``
  (0/1) is the instruction's ``thread-id-a`` selector; its 4 bytes are the row's 4 blocks of
  the chunk. Lanes of the other ``tid`` are idle, so two chunks share the 32 lanes: chunk
  ``c`` is read with ``tid = c % 2``.

Scales: ``[E, R/16, K/64/G, 32 lanes, G/2, 4]`` with ``G`` even — lane ``l``, byte ``4 p + b``
of its ``2 G``-byte group ``cg`` is the scale of row ``16 rt + l // 4 + 8 (l % 2)``, block
``4 c + b`` with chunk ``c = G cg + 2 p + (l % 4) // 2``. So K is a multiple of 128.

Rows are padded to a multiple of 16 and K to a multiple of 64 (128 for ``m16n8k64``) with
zero codes and zero scales: they contribute exactly 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .codecs import pack_e2m1, unpack_e2m1
from .layouts import swizzle_128x4, unswizzle_128x4

TILE_ROWS = 16
CHUNK_K = 64
LANES = 32
MMAS = ("m16n8k16", "m16n8k64")
K_ALIGN = {"m16n8k16": 64, "m16n8k64": 128}  # the scale word of m16n8k64 spans two chunks


@dataclass(frozen=True)
class FragmentLayout:
    rows: int  # padded rows (multiple of 16)
    k: int  # padded reduction length (multiple of K_ALIGN[mma])
    group: int = 1  # chunks per scale load
    mma: str = "m16n8k16"

    def __post_init__(self):
        if self.mma not in MMAS:
            raise ValueError(f"FragmentLayout: mma={self.mma!r} is not supported; supported: {MMAS}")
        ka = K_ALIGN[self.mma]
        if self.rows % TILE_ROWS or self.k % ka or self.rows <= 0 or self.k <= 0:
            raise ValueError(f"FragmentLayout: rows={self.rows} must be a multiple of 16, k={self.k} of {ka} "
                             f"({self.mma})")
        groups = (1, 2, 4, 8) if self.mma == "m16n8k16" else (2, 4, 8)
        if self.group not in groups or self.chunks % self.group:
            raise ValueError(f"FragmentLayout: group={self.group} must be one of {groups} ({self.mma}) and "
                             f"divide {self.chunks} chunks")

    @property
    def tiles(self) -> int:
        return self.rows // TILE_ROWS

    @property
    def chunks(self) -> int:
        return self.k // CHUNK_K

    @property
    def code_bytes(self) -> int:  # per expert
        return self.rows * self.k // 2

    @property
    def scale_bytes(self) -> int:  # per expert
        return self.rows * self.k // 16


# m16n8k16 code words: where element (register r, half j) keeps its E2M1 magnitude (3 bits,
# from MAG_BIT[r] + 16 j) and sign (SIGN_BIT[r] + 16 j). A half-precision pair wants the
# magnitude at bits 6..8 (BF16) or 9..11 (FP16) and the sign at 15: for BF16 register 0 is
# one mask, register 1 one shift and one mask, registers 2 and 3 two shifts and two masks
# each. Found by exhaustive search over all placements (none gives every register one shift).
M16N8K16_MAG_BIT = (6, 3, 0, 9)
M16N8K16_SIGN_BIT = (15, 12, 13, 14)


def word_bits(nibble_words: torch.Tensor, *, inverse: bool = False) -> torch.Tensor:
    """int32 words of 8 nibbles (nibble ``r + 4 j`` = element ``(r, j)``) -> the m16n8k16
    word bit order (or back, ``inverse``)."""
    w = nibble_words.to(torch.int64) & 0xFFFFFFFF
    out = torch.zeros_like(w)
    for r in range(4):
        for j in range(2):
            nib, mag, sign = 4 * (r + 4 * j), M16N8K16_MAG_BIT[r] + 16 * j, M16N8K16_SIGN_BIT[r] + 16 * j
            if inverse:
                out |= ((w >> mag) & 7) << nib | ((w >> sign) & 1) << (nib + 3)
            else:
                out |= ((w >> nib) & 7) << mag | ((w >> (nib + 3)) & 1) << sign
    return torch.where(out >= 2**31, out - 2**32, out).to(torch.int32)


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def _pad(t: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, cols - t.shape[-1], 0, rows - t.shape[-2]))


def pack_fragments(data: torch.Tensor, scale: torch.Tensor, layout: FragmentLayout) -> tuple[torch.Tensor, torch.Tensor]:
    """``data [E, R, K/2]`` uint8 + ``scale [E, R, K/16]`` e4m3 -> (codes, scales), uint8
    ``[E, code_bytes]`` and ``[E, scale_bytes]`` in the fragment layout."""
    e, r, k2 = data.shape
    lay = layout
    if r > lay.rows or 2 * k2 > lay.k or scale.shape != (e, r, k2 * 2 // 16):
        raise ValueError(f"pack_fragments: data {tuple(data.shape)} / scale {tuple(scale.shape)} do not fit {lay}")
    codes = _pad(unpack_e2m1(data), lay.rows, lay.k)  # [E, R, K] one code per element
    u = codes.view(e, lay.tiles, *_CODE_SPLIT[lay.mma](lay.chunks)).permute(*_CODE_PERM[lay.mma])
    packed = pack_e2m1(u.reshape(e, -1)).contiguous()
    if lay.mma == "m16n8k16":
        packed = word_bits(packed.view(torch.int32)).view(torch.uint8)
    return packed, pack_scales(scale, lay)


def unpack_fragments(codes: torch.Tensor, scales: torch.Tensor, layout: FragmentLayout, rows: int, k: int):
    """Inverse of :func:`pack_fragments` (padding dropped): ``(data, scale)`` as e4m3."""
    lay = layout
    e = codes.shape[0]
    split = _CODE_SPLIT[lay.mma](lay.chunks)
    perm = _CODE_PERM[lay.mma]
    if lay.mma == "m16n8k16":
        codes = word_bits(codes.contiguous().view(torch.int32), inverse=True).view(torch.uint8)
    u = unpack_e2m1(codes).view(e, lay.tiles, *(split[p - 2] for p in perm[2:]))
    u = u.permute(0, 1, *(perm.index(i) for i in range(2, len(perm)))).reshape(e, lay.rows, lay.k)
    data = pack_e2m1(u[:, :rows, :k].contiguous())
    return data, unpack_scales(scales, lay, rows, k)


def pack_scales(scale: torch.Tensor, layout: FragmentLayout) -> torch.Tensor:
    """Linear block scales ``[E, R, K/16]`` -> ``[E, scale_bytes]`` uint8 in the fragment layout."""
    lay = layout
    e = scale.shape[0]
    sf = _pad(scale.view(torch.uint8), lay.rows, lay.k // 16)
    v = sf.view(e, lay.tiles, *_SCALE_SPLIT[lay.mma](lay.chunks, lay.group)).permute(*_SCALE_PERM[lay.mma])
    return v.reshape(e, -1).contiguous()


def unpack_scales(scales: torch.Tensor, layout: FragmentLayout, rows: int, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_scales`: linear ``[E, rows, k/16]`` float8_e4m3fn (padding dropped)."""
    lay = layout
    e = scales.shape[0]
    split = _SCALE_SPLIT[lay.mma](lay.chunks, lay.group)
    perm = _SCALE_PERM[lay.mma]
    v = scales.view(e, lay.tiles, *(split[p - 2] for p in perm[2:]))
    v = v.permute(0, 1, *(perm.index(i) for i in range(2, len(perm)))).reshape(e, lay.rows, lay.k // 16)
    return v[:, :rows, : k // 16].contiguous().view(torch.float8_e4m3fn)


def mma_scales_from_swizzled(sf: torch.Tensor, layout: FragmentLayout, rows: int, k: int) -> torch.Tensor:
    """128x4-swizzled scales (TensorRT-LLM / CUTLASS) of a ``rows x k`` matrix -> fragment layout."""
    return pack_scales(unswizzle_128x4(sf, rows, k // 16), layout)


def swizzled_from_mma_scales(scales: torch.Tensor, layout: FragmentLayout, rows: int, k: int) -> torch.Tensor:
    """Inverse of :func:`mma_scales_from_swizzled`."""
    return swizzle_128x4(unpack_scales(scales, layout, rows, k))


# Split of one tile's [16 rows, K] (codes) / [16 rows, K/16] (scales) into named axes, and the
# permutation that orders them as stored; axis indices count from the expert axis (0) and the
# tile axis (1). m16n8k16: row = 8 rh + g, k = 64 c + 16 t + 4 s + 2 h + j, nibble rh + 2h + 4j.
# m16n8k64: row = 8 rh + g, k = 64 c + 32 r2 + 8 t + n, register rh + 2 r2.
_CODE_SPLIT = {
    "m16n8k16": lambda chunks: (2, 8, chunks, 4, 4, 2, 2),  # rh g c t s h j
    "m16n8k64": lambda chunks: (2, 8, chunks, 2, 4, 8),  # rh g c r2 t n
}
_CODE_PERM = {
    "m16n8k16": (0, 1, 4, 3, 5, 6, 8, 7, 2),  # e rt c g t s j h rh
    "m16n8k64": (0, 1, 4, 3, 6, 5, 2, 7),  # e rt c g t r2 rh n
}
# scales: m16n8k16 block = 4 c + t, c = G cg + ci; m16n8k64 block = 4 c + b, c = G cg + 2 p + tid
_SCALE_SPLIT = {
    "m16n8k16": lambda chunks, grp: (2, 8, chunks // grp, grp, 4),  # rh g cg ci t
    "m16n8k64": lambda chunks, grp: (2, 8, chunks // grp, grp // 2, 2, 4),  # rh g cg p tid b
}
_SCALE_PERM = {
    "m16n8k16": (0, 1, 4, 3, 6, 5, 2),  # e rt cg g t ci rh
    "m16n8k64": (0, 1, 4, 3, 6, 2, 5, 7),  # e rt cg g tid rh p b
}
