import pytest
import torch

from trtllm_b12x.quantization import quantize_weight
from trtllm_b12x.quantization.codecs import unpack_e2m1
from trtllm_b12x.quantization.fragments import FragmentLayout, pack_fragments, round_up, unpack_fragments


def _weights(e, r, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = quantize_weight(torch.randn(e, r, k, generator=g), per=0)
    return q.data, q.scale


@pytest.mark.parametrize("r,k,group,mma", [
    (16, 64, 1, "m16n8k16"), (48, 256, 4, "m16n8k16"), (40, 192, 1, "m16n8k16"), (96, 1024, 8, "m16n8k16"),
    (32, 128, 2, "m16n8k16"), (16, 128, 2, "m16n8k64"), (48, 512, 4, "m16n8k64"), (40, 384, 2, "m16n8k64"),
    (96, 1024, 8, "m16n8k64"), (32, 256, 4, "m16n8k64"),
])
def test_round_trip(r, k, group, mma):
    data, scale = _weights(3, r, k)
    lay = FragmentLayout(round_up(r, 16), k, group, mma)
    codes, scales = pack_fragments(data, scale, lay)
    assert codes.shape == (3, lay.code_bytes) and scales.shape == (3, lay.scale_bytes)
    d2, s2 = unpack_fragments(codes, scales, lay, r, k)
    assert torch.equal(d2, data) and torch.equal(s2.view(torch.uint8), scale.view(torch.uint8))


def test_lane_owns_its_fragment():
    """Spot-check the documented index formula on one element per (lane, step, register)."""
    data, scale = _weights(1, 32, 128)
    lay = FragmentLayout(32, 128, 2)
    codes, scales = pack_fragments(data, scale, lay)
    full = unpack_e2m1(data)[0]
    nib = unpack_e2m1(codes)[0].view(lay.tiles, lay.chunks, 32, 4, 8)  # rt c lane s nibble
    sf = scales[0].view(lay.tiles, lay.chunks // 2, 32, 2, 2)  # rt cg lane ci rh
    for rt in range(2):
        for c in range(2):
            for lane in (0, 5, 31):
                g, t = divmod(lane, 4)
                for s in range(4):
                    for n in range(8):
                        rh, h, j = n % 2, (n // 2) % 2, n // 4
                        row, kk = 16 * rt + 8 * rh + g, 64 * c + 16 * t + 4 * s + 2 * h + j
                        assert nib[rt, c, lane, s, n] == full[row, kk]
                for rh in range(2):
                    block = (64 * c + 16 * t) // 16
                    assert sf[rt, c // 2, lane, c % 2, rh] == scale[0].view(torch.uint8)[16 * rt + 8 * rh + g, block]


def test_bad_layout():
    with pytest.raises(ValueError, match="multiple of 16"):
        FragmentLayout(24, 64)
    with pytest.raises(ValueError, match="group"):
        FragmentLayout(16, 192, 2)


# -- m16n8k64: the SM120 block-scaled MMA layout ---------------------------------------------
def test_mma_layout_index_formula():
    """Every element against the documented formula (module docstring of fragments)."""
    data, scale = _weights(1, 32, 512)
    lay = FragmentLayout(32, 512, 4, "m16n8k64")
    codes, scales = pack_fragments(data, scale, lay)
    full = unpack_e2m1(data)[0]
    sfull = scale[0].view(torch.uint8)
    nib = unpack_e2m1(codes)[0].view(lay.tiles, lay.chunks, 32, 4, 8)  # rt c lane r n
    sf = scales[0].view(lay.tiles, lay.chunks // 4, 32, 2, 4)  # rt cg lane p b
    for rt in range(lay.tiles):
        for lane in range(32):
            g, t = divmod(lane, 4)
            for c in range(lay.chunks):
                for r in range(4):
                    for n in range(8):
                        assert nib[rt, c, lane, r, n] == full[16 * rt + g + 8 * (r % 2), 64 * c + 32 * (r // 2) + 8 * t + n]
            for cg in range(lay.chunks // 4):
                for p in range(2):
                    for b in range(4):
                        c = 4 * cg + 2 * p + (lane % 4) // 2
                        row = 16 * rt + lane // 4 + 8 * (lane % 2)
                        assert sf[rt, cg, lane, p, b] == sfull[row, 4 * c + b]


@pytest.mark.parametrize("r,k", [(48, 512), (200, 384)])
def test_mma_scales_round_trip_through_128x4(r, k):
    from trtllm_b12x.quantization.fragments import mma_scales_from_swizzled, pack_scales, swizzled_from_mma_scales
    from trtllm_b12x.quantization.layouts import swizzle_128x4

    _, scale = _weights(2, r, k)
    lay = FragmentLayout(round_up(r, 16), k, 2, "m16n8k64")
    sw = swizzle_128x4(scale)
    mma = mma_scales_from_swizzled(sw, lay, r, k)
    assert torch.equal(mma, pack_scales(scale, lay))
    assert torch.equal(swizzled_from_mma_scales(mma, lay, r, k).view(torch.uint8), sw.view(torch.uint8))


def test_bad_mma_layout():
    with pytest.raises(ValueError, match="k=192 of 128 \\(m16n8k64\\)"):
        FragmentLayout(16, 192, 1, "m16n8k64")
    with pytest.raises(ValueError, match="group=1 must be one of \\(2, 4, 8\\)"):
        FragmentLayout(16, 128, 1, "m16n8k64")
    with pytest.raises(ValueError, match="supported: \\('m16n8k16', 'm16n8k64'\\)"):
        FragmentLayout(16, 128, 2, "m16n8k32")
