"""How the decode kernels' warp MMAs read TensorRT-LLM's CUTLASS NVFP4 layout in place.

The weights stay as :class:`~trtllm_b12x.quantization.bundle.MoEWeights` holds them: per
expert ``rows`` rows of E2M1 codes, row-major, two per byte (low nibble first), and E4M3
block scales (one per 16 codes) in the 128x4 layout (:mod:`.layouts`) or linear. Both tiers
load them with the same code: per 16-row tile and 64-wide K chunk, 512 code bytes (16-byte
``cp.async`` copies of half a row's chunk) and the 16 rows' scale words; they differ in which
bytes a lane takes from shared memory and what it does with them.

Scale words and tile rows
-------------------------

For one row and one 64-wide chunk the 4 block scales are one little-endian 32-bit word in
both layouts (:func:`~.layouts.scale_word`): 128x4 word ``((r // 128) Kc + c) 128 + (r % 32) 4 +
(r % 128) // 32`` with ``Kc = K / 64`` chunks per row, linear word ``r Kc + c``. The 4 words of
rows ``r, r + 32, r + 64, r + 96`` are one 16-byte unit, so a tile's MMA rows
``m = 4 a + g' + 8 rh`` are taken as 4 runs ``q = 2 a + rh`` of 4 consecutive rows a quarter
block apart (:func:`tile_column`): each run offset ``g'`` is one unit, copied whole.

Shared memory
-------------

A tile row keeps two chunks in 64 bytes: 16-byte unit ``2 (chunk % 2) + half`` at slot
:func:`ring_slot` (XOR ``(row // 2) % 4``; an odd last chunk takes the units of parity
``(row // 2) % 2``), which makes the copies (each 8 lanes 128 contiguous bytes) and both tiers'
reads below free of bank conflicts. A chunk's scale words are stored ``[rh, a, g']`` per tile
(:func:`scale_slot`): a 128x4 unit lands as 4 adjacent words, and the words of rows ``g`` and
``g + 8`` are adjacent (one 64-bit load on SM90).

``m16n8k16`` (SM90: BF16/FP16 MMA on codes dequantized in registers)
--------------------------------------------------------------------

Per pair of chunks, lane ``l = 4 g + t`` takes the 16 bytes ``[16 (t % 2), + 16)`` of chunk
``t // 2`` of rows ``g`` and ``g + 8`` (two 128-bit loads): 32 contiguous K, two scale blocks per
row, whose scales are bytes ``2 (t % 2)`` and ``2 (t % 2) + 1`` of the two rows' words (two byte
permutes); an odd last chunk is read as bytes ``[8 t, 8 t + 8)`` (16 K, one block, byte ``t``).
K is permuted identically for the weights and the tokens: MMA step ``s`` takes code word
``s // 2`` of each row and from it the nibble pairs ``(p, p + 4)`` for ``p = 2 (s % 2) + (0, 1)``
— 16 bits apart, so the word and one copy of it shifted by ``12 - CODE_SHIFT`` bits (shared by
the word's 4 pairs), masked and joined, then at most one shift, give the BF16/FP16 pair with
the magnitude in the half's exponent/mantissa bits and the sign at bit 15
(:func:`~trtllm_b12x.kernels.intrinsics.e2m1_pair_plan`; no multiply). Its token operand is the
same K: ``(x[8 (s // 2) + 2 (s % 2) + q], x[... + 4])`` for ``q = 0, 1`` of the lane's tokens,
permuted in registers once per expert entry.

``m16n8k64`` (SM120/SM121: ``mma.sync ... kind::mxf4nvf4.block_scale.scale_vec::4X``)
--------------------------------------------------------------------------------------

The block-scaled MMA takes codes as stored: A register ``r`` (0..3) of lane ``4 g + t`` is the
32-bit word ``t`` of half ``r // 2`` of row ``g + 8 (r % 2)`` (K ``32 (r // 2) + 8 t + [0, 8)``,
nothing permuted), and the scale register is the word of row ``g + 8 (t % 2)``, read with
``thread-id-a = 0`` (lanes ``t = 0, 1`` of each quad supply rows ``g``, ``g + 8``).
"""

from __future__ import annotations

from .layouts import SF_TILE_ROWS

TILE_ROWS = 16
CHUNK_K = 64
MMAS = ("m16n8k16", "m16n8k64")


def scale_slot(m):
    """Where the ring keeps the scale word of a tile's MMA row ``m = g + 8 rh``, ``g = 4 a + g'``:
    ``(rh, a, g')`` (ints or kernel integers)."""
    return m >> 3, (m >> 2) & 1, m & 3


def tile_column(blk, m, span: int, minimum=min):
    """Column (stored row) of MMA row ``m`` of the interleaved 16-row block ``blk``: the 8 blocks
    of 128-row block ``b = blk // 8`` each take 4 runs ``q = 2 a + rh`` of 4 consecutive rows,
    ``128 b + q L / 4 + 4 (blk % 8) + g'`` with ``L = min(128, span - 128 b)`` (the last block
    of ``span`` columns may be partial). In a full block the runs are 32 rows apart: one row of
    each shares a 16-byte 128x4 scale unit. ``minimum``: ``min`` for kernel integers."""
    base = (blk >> 3) * SF_TILE_ROWS
    quarter = SF_TILE_ROWS // 4 if span % SF_TILE_ROWS == 0 else minimum(SF_TILE_ROWS, span - base) >> 2
    rh, a, g4 = scale_slot(m)
    return base + quarter * (2 * a + rh) + 4 * (blk & 7) + g4


def ring_slot(row, chunk, half, lone: bool = False):
    """Which 16-byte slot of its 64-byte ring row (two chunks) half ``half`` of ``chunk`` of a
    tile row takes (ints or kernel integers): unit ``2 (chunk % 2) + half`` XOR ``(row // 2) % 4``;
    a chunk without a partner (``lone``, the last of an odd count) takes the units of parity
    ``(row // 2) % 2``. Both tiers' reads and the copies are then free of bank conflicts."""
    x = (row >> 1) & 3
    parity = x & 1 if lone else chunk & 1
    return (2 * parity + half) ^ x
