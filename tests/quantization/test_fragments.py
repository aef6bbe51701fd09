"""The decode's row interleave and shared-memory slots: the properties the kernels rely on."""

import pytest

from trtllm_b12x.quantization.fragments import TILE_ROWS, ring_slot, scale_slot, tile_column
from trtllm_b12x.quantization.layouts import scale_word


@pytest.mark.parametrize("span", [128, 256, 2048, 704, 96, 16, 1856, 7168 + 32])
def test_tile_column_is_a_permutation_within_each_block(span):
    """Every column of ``span`` is taken exactly once, by a block of its own 128-row block."""
    cols = [tile_column(blk, m, span) for blk in range(span // TILE_ROWS) for m in range(TILE_ROWS)]
    assert sorted(cols) == list(range(span))
    for blk in range(span // TILE_ROWS):
        assert {tile_column(blk, m, span) // 128 for m in range(TILE_ROWS)} == {blk // 8}


@pytest.mark.parametrize("span, chunks", [(2048, 12), (768, 32), (256, 3)])
def test_full_block_runs_share_one_128x4_unit(span, chunks):
    """In a full block the 4 runs' rows of one offset g' are one aligned 16-byte scale unit in
    ``[rh, a]`` order — what the kernel's 16-byte scale copy and its ring slots assume."""
    for blk in range(span // TILE_ROWS):
        for g4 in range(4):
            for c in range(chunks):
                words = []
                for q in range(4):
                    rh, a = q % 2, q // 2
                    m = 4 * a + g4 + 8 * rh
                    assert scale_slot(m) == (rh, a, g4)
                    words.append(scale_word(tile_column(blk, m, span), c, chunks, "swizzled"))
                assert words[0] % 4 == 0 and words == list(range(words[0], words[0] + 4))


def _banks(addrs, width):
    """The 4-byte banks an access of ``width`` bytes per lane touches, per lane."""
    return [{(a // 4 + i) % 32 for i in range(width // 4)} for a in addrs]


def _conflict_free(addrs, width):
    seen = set()
    for b in _banks(addrs, width):
        if seen & b:
            return False
        seen |= b
    return True


def _addr(row, slot, word=0):
    return row * 64 + slot * 16 + 4 * word


def test_ring_slot_permutes_a_rows_units():
    for row in range(TILE_ROWS):
        assert sorted(ring_slot(row, c, h) for c in (0, 1) for h in (0, 1)) == [0, 1, 2, 3]
        assert sorted(ring_slot(row, 0, h, True) for h in (0, 1)) in ([0, 1], [2, 3])


def test_ring_reads_and_copies_are_conflict_free():
    # SM90: 128-bit loads, 8 lanes a phase: lanes 4g + t, rows g (and g + 8), slot of (t // 2, t % 2)
    for rh in (0, 1):
        for phase in range(4):
            lanes = range(8 * phase, 8 * phase + 8)
            rows = [l // 4 + 8 * rh for l in lanes]
            assert _conflict_free([_addr(r, ring_slot(r, (l % 4) >> 1, l % 2)) for r, l in zip(rows, lanes)], 16)
    # SM90 odd last chunk: 64-bit loads, 16 lanes a phase, bytes [8t, 8t + 8)
    for phase in range(2):
        lanes = range(16 * phase, 16 * phase + 16)
        assert _conflict_free([_addr(l // 4, ring_slot(l // 4, 0, (l % 4) >> 1, True), 2 * (l % 2)) for l in lanes], 8)
    # SM120: 32-bit loads, all 32 lanes: word t of one half of rows g (+ 8), either chunk, and a lone chunk
    for chunk, lone in ((0, False), (1, False), (0, True)):
        for half in (0, 1):
            for rh in (0, 1):
                addrs = [_addr(l // 4 + 8 * rh, ring_slot(l // 4 + 8 * rh, chunk, half, lone), l % 4) for l in range(32)]
                assert _conflict_free(addrs, 4)
    # the copies' 8-lane phases: two rows x 4 units, or (lone chunk) 4 rows x 2 halves
    for r in range(0, TILE_ROWS, 2):
        assert _conflict_free([_addr(r + k // 4, ring_slot(r + k // 4, (k >> 1) & 1, k & 1)) for k in range(8)], 16)
    for r in range(0, TILE_ROWS, 4):
        assert _conflict_free([_addr(r + k // 2, ring_slot(r + k // 2, 0, k & 1, True)) for k in range(8)], 16)
