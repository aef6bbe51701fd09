"""Block-scale layouts and gate/up row order.

Linear layout
    ``[rows, K/16]``: scale of (row r, block c) at ``r * (K/16) + c`` (ModelOpt checkpoints).

128x4 swizzled layout (TensorRT-LLM ``block_scale_interleave``, CUTLASS/cuBLASLt "SF layout")
    Rows are padded to a multiple of 128 and scale columns to a multiple of 4, with zeros.
    With ``Kt = ceil(cols / 4)``, the scale of (row r, column c) sits at byte::

        (r // 128) * Kt * 512 + (c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + (c % 4)

    i.e. each 128x4 tile is 512 contiguous bytes, tiles run along K first, and inside a tile
    the 32 rows r, r+32, r+64, r+96 share one 16-byte line. Viewed as 32-bit words (how the
    decode kernels read it, :func:`scale_word`), one word is one row's 4 scales of a 64-wide
    chunk, in either layout. We return it as a contiguous
    ``[..., round128(rows), round4(cols)]`` tensor whose *storage* is in that order (the
    shape TensorRT-LLM gives its swizzled parameters).

Gate/up order
    TensorRT-LLM stores the fused FC1 of gated activations as ``[w3; w1]`` (up rows, then
    gate rows), and so does our bundle (:class:`~trtllm_b12x.quantization.bundle.MoEWeights`).
"""

from __future__ import annotations

import torch

SF_TILE_ROWS = 128
SF_TILE_COLS = 4


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def swizzled_shape(rows: int, cols: int) -> tuple[int, int]:
    """Padded ``(rows, cols)`` of the 128x4 swizzled layout."""
    return round_up(rows, SF_TILE_ROWS), round_up(cols, SF_TILE_COLS)


def swizzle_128x4(sf: torch.Tensor) -> torch.Tensor:
    """Linear scales ``[..., rows, cols]`` to the 128x4 swizzled layout (see module doc)."""
    if sf.dim() < 2:
        raise ValueError(f"swizzle_128x4: expected [..., rows, cols], got shape {tuple(sf.shape)}")
    *lead, rows, cols = sf.shape
    prows, pcols = swizzled_shape(rows, cols)
    raw = sf.view(torch.uint8) if sf.element_size() == 1 and sf.dtype != torch.uint8 else sf
    padded = raw.new_zeros(*lead, prows, pcols)
    padded[..., :rows, :cols] = raw
    mt, kt = prows // 128, pcols // 4
    # padded rows r = mt*128 + i1*32 + i0; columns c = kt*4 + c4
    t = padded.reshape(*lead, mt, 4, 32, kt, 4)
    n = len(lead)
    t = t.permute(*range(n), n + 0, n + 3, n + 2, n + 1, n + 4)  # (mt, kt, i0, i1, c4)
    out = t.contiguous().reshape(*lead, prows, pcols)
    return out.view(sf.dtype) if raw is not sf else out


def unswizzle_128x4(sf: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Inverse of :func:`swizzle_128x4`, cropped to ``[..., rows, cols]``."""
    *lead, prows, pcols = sf.shape
    if (prows, pcols) != swizzled_shape(rows, cols):
        raise ValueError(
            f"unswizzle_128x4: swizzled shape {(prows, pcols)} does not match rows={rows}, "
            f"cols={cols}; expected {swizzled_shape(rows, cols)} (rows padded to 128, cols to 4)"
        )
    raw = sf.view(torch.uint8) if sf.element_size() == 1 and sf.dtype != torch.uint8 else sf
    mt, kt = prows // 128, pcols // 4
    n = len(lead)
    t = raw.reshape(*lead, mt, kt, 32, 4, 4)  # (mt, kt, i0, i1, c4)
    t = t.permute(*range(n), n + 0, n + 3, n + 2, n + 1, n + 4)  # (mt, i1, i0, kt, c4)
    out = t.contiguous().reshape(*lead, prows, pcols)[..., :rows, :cols].contiguous()
    return out.view(sf.dtype) if raw is not sf else out


def scale_word(row, chunk, chunks: int, layout: str):
    """Index of the 32-bit word holding (row, 64-wide chunk)'s 4 block scales, in an expert's
    scales viewed as words (ints or kernel integers alike)."""
    if layout == "linear":
        return row * chunks + chunk
    return ((row >> 7) * chunks + chunk) * SF_TILE_ROWS + (row & 31) * 4 + ((row >> 5) & 3)


def scale_words(scales: torch.Tensor, rows: int, chunks: int, layout: str) -> torch.Tensor:
    """One expert's block scales (any shape, the stored bytes) -> ``[rows, chunks]`` int64 words."""
    b = scales.contiguous().view(torch.uint8).reshape(-1).long()
    w = b[0::4] | (b[1::4] << 8) | (b[2::4] << 16) | (b[3::4] << 24)
    r = torch.arange(rows, device=b.device)[:, None]
    c = torch.arange(chunks, device=b.device)[None, :]
    return w[scale_word(r, c, chunks, layout)]
