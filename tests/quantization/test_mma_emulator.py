"""The block-scaled MMA emulator against a second, independent statement of the fragments.

Registers are packed here from CuTe's thread-value layouts of the SM120 atom (``(T32, V) ->
(M, K)`` index algebra: A ``((4,8),(8,2,2)) : ((128,1),(16,8,512))``, B ``((4,8),(8,2)) :
((64,1),(8,256))``, SFA ``((2,2,8),64) : ((8,0,1),16)``, SFB ``((4,8),64) : ((0,1),8)``), while
the emulator follows the PTX ISA's fragment tables; both must agree on random operands.
"""

import pytest
import torch

from trtllm_b12x.quantization.codecs import E2M1_VALUES
from trtllm_b12x.quantization.mma_emulator import UNIT, d_matrix, mma_m16n8k64


def _tv(coord_strides, lane, value_shape, value_strides):
    """Offset of (lane, value) under a CuTe layout with thread mode ((4, 8) or (2, 2, 8))."""
    shape, strides = coord_strides
    off, rest = 0, lane
    for s, d in zip(shape, strides):
        off += (rest % s) * d
        rest //= s
    vals = []
    for v in range(torch.tensor(value_shape).prod().item()):
        o, rest = 0, v
        for s, d in zip(value_shape, value_strides):
            o += (rest % s) * d
            rest //= s
        vals.append(off + o)
    return vals


def _pack_registers(a, b, sfa, sfb, tid_a, tid_b):
    """Matrices -> lane registers, by the TV layouts (offsets are column-major (M,K) / (N,K))."""
    ra = torch.zeros(32, 4, dtype=torch.int64)
    rb = torch.zeros(32, 2, dtype=torch.int64)
    rsa = torch.zeros(32, dtype=torch.int64)
    rsb = torch.zeros(32, dtype=torch.int64)
    for lane in range(32):
        for v, off in enumerate(_tv(((4, 8), (128, 1)), lane, (8, 2, 2), (16, 8, 512))):
            ra[lane, v // 8] |= int(a[off % 16, off // 16]) << (4 * (v % 8))
        for v, off in enumerate(_tv(((4, 8), (64, 1)), lane, (8, 2), (8, 256))):
            rb[lane, v // 8] |= int(b[off // 8, off % 8]) << (4 * (v % 8))
    for lane in range(32):
        # SFA: the thread mode (2, 2, 8) : (8, 0, 1) -> row; the 0-stride bit is thread-id-a
        if (lane // 2) % 2 == tid_a:
            row = 8 * (lane % 2) + lane // 4
            rsa[lane] = sum(int(sfa[row, j]) << (8 * j) for j in range(4))
        if lane % 4 == tid_b:
            rsb[lane] = sum(int(sfb[j, lane // 4]) << (8 * j) for j in range(4))
    return ra, rb, rsa, rsb


def _value(codes):
    return torch.tensor(E2M1_VALUES, dtype=torch.float64)[codes]


def _e4m3(bytes_):
    return bytes_.to(torch.uint8).view(torch.float8_e4m3fn).double()


@pytest.mark.parametrize("tid_a, tid_b", [(0, 0), (1, 2), (0, 3), (1, 1)])
def test_emulator_matches_the_tv_layouts(tid_a, tid_b):
    g = torch.Generator().manual_seed(tid_a * 4 + tid_b)
    a = torch.randint(0, 16, (16, 64), generator=g)
    b = torch.randint(0, 16, (64, 8), generator=g)
    sfa = torch.randint(0, 0x7F, (16, 4), generator=g)  # finite UE4M3 (0x7f is NaN)
    sfb = torch.randint(0, 0x7F, (4, 8), generator=g)
    regs = _pack_registers(a, b, sfa, sfb, tid_a, tid_b)
    d = d_matrix(mma_m16n8k64(*regs, tid_a=tid_a, tid_b=tid_b)).double() * UNIT
    av = _value(a) * _e4m3(sfa).repeat_interleave(16, 1)
    bv = _value(b) * _e4m3(sfb).repeat_interleave(16, 0)
    assert torch.equal(d, av @ bv)  # exact: float64 holds these sums
    # the selector matters: the other lanes' words are zero here
    other = mma_m16n8k64(*regs, tid_a=1 - tid_a, tid_b=tid_b)
    assert not torch.equal(other, mma_m16n8k64(*regs, tid_a=tid_a, tid_b=tid_b))


def test_emulator_rejects_nan_scales_and_bad_selectors():
    z = torch.zeros(32, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match="NaN"):
        mma_m16n8k64(z, z[:, :2], torch.full((32,), 0x7F), torch.zeros(32, dtype=torch.int64), tid_a=0, tid_b=0)
    with pytest.raises(ValueError, match="thread-id-a=2 must be 0/1"):
        mma_m16n8k64(z, z[:, :2], z[:, 0], z[:, 0], tid_a=2, tid_b=0)
