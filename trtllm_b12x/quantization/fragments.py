"""How the decode kernels' warp MMAs read TensorRT-LLM's CUTLASS NVFP4 layout in place.

The weights stay as :class:`~trtllm_b12x.quantization.bundle.MoEWeights` holds them: per
expert ``rows`` rows of E2M1 codes, row-major, two per byte (low nibble first), and E4M3
block scales (one per 16 codes) in the 128x4 layout (:mod:`.layouts`) or linear. Both tiers
load them with the same code: per 16-row tile and 64-wide K chunk, 512 code bytes (one 16-byte
``cp.async`` per lane: row ``l // 2``, half ``l % 2``) and the 16 rows' scale words; they
differ in which bytes a lane takes from shared memory and what it does with them.

Scale words
-----------

For one row and one 64-wide chunk the 4 block scales are one little-endian 32-bit word in
both layouts (:func:`~.layouts.scale_word`): 128x4 word ``((r // 128) Kc + c) 128 + (r % 32) 4 +
(r % 128) // 32`` with ``Kc = K / 64`` chunks per row, linear word ``r Kc + c``.

Shared memory
-------------

A tile's chunk is 16 rows of 32 bytes; row ``r`` keeps its two 16-byte halves swapped when
``(r // 4) % 2`` is odd (:func:`ring_half`), which makes both tiers' reads below free of bank
conflicts. The
chunk's scale words are stored ``[tile, g, rh]`` (row ``8 rh + g``), so rows ``g`` and ``g + 8``
are adjacent.

``m16n8k16`` (SM90: BF16/FP16 MMA on codes dequantized in registers)
--------------------------------------------------------------------

Lane ``l = 4 g + t`` takes the 8 bytes ``[8 t, 8 t + 8)`` of rows ``g`` and ``g + 8`` (two
64-bit loads): K ``[16 t, 16 t + 16)`` of the chunk, exactly one scale block per row, whose
scales are byte ``t`` of the two rows' words (one byte permute). K is permuted identically for
the weights and the tokens: MMA step ``s`` (0..3) takes code word ``s // 2`` of each row
(shifted right by 8 bits for odd ``s``) and from it the nibble pairs ``(p, p + 4)`` for
``p = 0, 1`` — 16 bits apart, so one mask, one multiply by ``2^a + 2^b`` (two copies: the
magnitude to the half's exponent/mantissa bits, the sign to bit 15) and one mask give the
BF16 pair (FP16: two masks, a shift and a multiply-add). Its token operand is the same K:
``(x[8 (s // 2) + 2 (s % 2) + q], x[... + 4])`` for ``q = 0, 1``, permuted in registers once
per expert entry.

``m16n8k64`` (SM120/SM121: ``mma.sync ... kind::mxf4nvf4.block_scale.scale_vec::4X``)
--------------------------------------------------------------------------------------

The block-scaled MMA takes codes as stored: A register ``r`` (0..3) of lane ``4 g + t`` is the
32-bit word ``t`` of half ``r // 2`` of row ``g + 8 (r % 2)`` (K ``32 (r // 2) + 8 t + [0, 8)``,
nothing permuted), and the scale register is the word of row ``g + 8 (t % 2)``, read with
``thread-id-a = 0`` (lanes ``t = 0, 1`` of each quad supply rows ``g``, ``g + 8``).
"""

from __future__ import annotations

TILE_ROWS = 16
CHUNK_K = 64
MMAS = ("m16n8k16", "m16n8k64")


def round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def ring_half(row, half):
    """Where the ring keeps 16-byte half ``half`` of a tile row (ints or kernel integers)."""
    return half ^ ((row >> 2) & 1)
