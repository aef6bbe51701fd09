"""The SM90 decode kernel's weight layout: NVFP4 codes and scales in warp-MMA fragment order.

The decode kernel multiplies weights (MMA operand A, 16 rows per tile) with tokens (operand
B) using ``mma.sync.m16n8k16``. Inside each 64-wide K chunk the reduction index is permuted
identically for A and B (a dot product does not care about order), so that lane
``l = 4*g + t`` of a warp owns rows ``g`` and ``g + 8`` and the 16 contiguous K positions
``[16 t, 16 t + 16)`` of the chunk — exactly one 16-element scale block per row:

* step ``s`` (0..3) of the chunk uses K positions ``16 t + 4 s + {0..3}``; MMA k slots
  ``2t, 2t+1`` take the first two, ``2t+8, 2t+9`` the last two;
* the lane's 16 code bytes are 4 words, word ``s`` for step ``s``; in it nibble
  ``n = rh + 2 h + 4 j`` is row ``g + 8 rh``, K position ``16 t + 4 s + 2 h + j`` — so A
  register ``r = rh + 2h`` is the nibble pair ``(r, r + 4)``, one shift-and-mask away from
  a BF16/FP16 pair;
* the lane's token operand is simply the 32 contiguous bytes ``x[16 t : 16 t + 16]`` of
  the chunk.

Codes: ``[E, R/16, K/64, 32 lanes, 16 B]``. Scales: ``[E, R/16, K/64/G, 32 lanes, G, 2]``
(``G`` chunks per lane load, rows ``g`` then ``g + 8``). Rows are padded to a multiple of 16
and K to a multiple of 64 with zero codes and zero scales (they contribute exactly 0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .codecs import pack_e2m1, unpack_e2m1

TILE_ROWS = 16
CHUNK_K = 64
LANES = 32


@dataclass(frozen=True)
class FragmentLayout:
    rows: int  # padded rows (multiple of 16)
    k: int  # padded reduction length (multiple of 64)
    group: int = 1  # chunks per scale load

    def __post_init__(self):
        if self.rows % TILE_ROWS or self.k % CHUNK_K or self.rows <= 0 or self.k <= 0:
            raise ValueError(f"FragmentLayout: rows={self.rows} must be a multiple of 16, k={self.k} of 64")
        if self.group not in (1, 2, 4, 8) or self.chunks % self.group:
            raise ValueError(f"FragmentLayout: group={self.group} must be 1/2/4/8 and divide {self.chunks} chunks")

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
    # row = 16 rt + 8 rh + g ; k = 64 c + 16 t + 4 s + 2 h + j
    u = codes.view(e, lay.tiles, 2, 8, lay.chunks, 4, 4, 2, 2)  # e rt rh g c t s h j
    u = u.permute(0, 1, 4, 3, 5, 6, 8, 7, 2)  # e rt c g t s j h rh: nibble rh + 2h + 4j
    packed = pack_e2m1(u.reshape(e, -1))
    sf = _pad(scale.view(torch.uint8), lay.rows, lay.k // 16)
    v = sf.view(e, lay.tiles, 2, 8, lay.chunks // lay.group, lay.group, 4)  # e rt rh g cg ci t
    v = v.permute(0, 1, 4, 3, 6, 5, 2)  # e rt cg g t ci rh
    return packed.contiguous(), v.reshape(e, -1).contiguous()


def unpack_fragments(codes: torch.Tensor, scales: torch.Tensor, layout: FragmentLayout, rows: int, k: int):
    """Inverse of :func:`pack_fragments` (padding dropped): ``(data, scale)`` as e4m3."""
    lay = layout
    e = codes.shape[0]
    u = unpack_e2m1(codes).view(e, lay.tiles, lay.chunks, 8, 4, 4, 2, 2, 2)  # e rt c g t s j h rh
    u = u.permute(0, 1, 8, 3, 2, 4, 5, 7, 6).reshape(e, lay.rows, lay.k)
    v = scales.view(e, lay.tiles, lay.chunks // lay.group, 8, 4, lay.group, 2)  # e rt cg g t ci rh
    v = v.permute(0, 1, 6, 3, 2, 5, 4).reshape(e, lay.rows, lay.k // 16)
    data = pack_e2m1(u[:, :rows, :k].contiguous())
    return data, v[:, :rows, : k // 16].contiguous().view(torch.float8_e4m3fn)
