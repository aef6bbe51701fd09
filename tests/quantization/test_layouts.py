import pytest
import torch

from trtllm_b12x.quantization import swizzle_128x4, swizzled_shape, unswizzle_128x4


def _offset(r, c, kt):
    return (r // 128) * kt * 512 + (c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + (c % 4)


def test_hand_computed_positions():
    rows, cols = 130, 6  # pads to 256 x 8: two row tiles, Kt = 2
    sf = torch.zeros(rows, cols, dtype=torch.uint8)
    marks = {(0, 0): 1, (33, 1): 2, (127, 3): 3, (5, 6 - 1): 4, (128, 0): 5, (129, 4): 6}
    for (r, c), v in marks.items():
        sf[r, c] = v
    flat = swizzle_128x4(sf).reshape(-1)
    assert flat.numel() == 256 * 8
    # by hand: (33,1) -> 1*16 + 1*4 + 1 = 21; (127,3) -> 31*16 + 3*4 + 3 = 511;
    # (5,5) -> 512 + 5*16 + 0 + 1 = 593; (128,0) -> 2*512 = 1024; (129,4) -> 1024 + 512 + 16 = 1552
    assert {i: int(flat[i]) for i in (0, 21, 511, 593, 1024, 1552)} == {0: 1, 21: 2, 511: 3, 593: 4, 1024: 5, 1552: 6}
    assert int((flat != 0).sum()) == len(marks)


@pytest.mark.parametrize("rows, cols", [(1, 1), (128, 4), (130, 5), (300, 117), (2 * 1856, 128)])
def test_roundtrip_and_formula(gen, rows, cols):
    sf = torch.randint(1, 255, (2, rows, cols), generator=gen, dtype=torch.uint8)
    sw = swizzle_128x4(sf.view(torch.float8_e4m3fn))
    assert sw.dtype == torch.float8_e4m3fn and sw.shape == (2, *swizzled_shape(rows, cols))
    assert torch.equal(unswizzle_128x4(sw, rows, cols).view(torch.uint8), sf)
    kt = swizzled_shape(rows, cols)[1] // 4
    flat = sw.view(torch.uint8)[1].reshape(-1)
    r = torch.randint(0, rows, (50,), generator=gen)
    c = torch.randint(0, cols, (50,), generator=gen)
    for ri, ci in zip(r.tolist(), c.tolist()):
        assert flat[_offset(ri, ci, kt)] == sf[1, ri, ci]
    # padding is zero
    assert int((flat != 0).sum()) == rows * cols


def test_unswizzle_rejects_wrong_shape():
    with pytest.raises(ValueError, match="rows padded to 128"):
        unswizzle_128x4(torch.zeros(128, 4, dtype=torch.uint8), 130, 4)
    with pytest.raises(ValueError, match=r"\[..., rows, cols\]"):
        swizzle_128x4(torch.zeros(4, dtype=torch.uint8))
