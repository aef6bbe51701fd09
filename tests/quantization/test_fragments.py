import pytest
import torch

from trtllm_b12x.quantization import quantize_weight
from trtllm_b12x.quantization.codecs import unpack_e2m1
from trtllm_b12x.quantization.fragments import FragmentLayout, pack_fragments, round_up, unpack_fragments


def _weights(e, r, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = quantize_weight(torch.randn(e, r, k, generator=g), per=0)
    return q.data, q.scale


@pytest.mark.parametrize("r,k,group", [(16, 64, 1), (48, 256, 4), (40, 192, 1), (96, 1024, 8), (32, 128, 2)])
def test_round_trip(r, k, group):
    data, scale = _weights(3, r, k)
    lay = FragmentLayout(round_up(r, 16), round_up(k, 64), group)
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
