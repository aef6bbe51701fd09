import pytest
import torch

from trtllm_b12x.quantization import quantize_weight
from trtllm_b12x.quantization.codecs import unpack_e2m1
from trtllm_b12x.quantization.codecs import e2m1_decode
from trtllm_b12x.quantization.fragments import (M16N8K16_MAG_BIT, M16N8K16_SIGN_BIT, FragmentLayout, pack_fragments,
                                                round_up, unpack_fragments, word_bits)


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
    words = codes[0].view(torch.int32).view(lay.tiles, lay.chunks, 32, 4).to(torch.int64)  # rt c lane s
    sf = scales[0].view(lay.tiles, lay.chunks // 2, 32, 2, 2)  # rt cg lane ci rh
    for rt in range(2):
        for c in range(2):
            for lane in (0, 5, 31):
                g, t = divmod(lane, 4)
                for s in range(4):
                    for r in range(4):
                        for j in range(2):
                            rh, h = r % 2, r // 2
                            w = int(words[rt, c, lane, s])
                            mag = (w >> (M16N8K16_MAG_BIT[r] + 16 * j)) & 7
                            code = mag | ((w >> (M16N8K16_SIGN_BIT[r] + 16 * j)) & 1) << 3
                            row, kk = 16 * rt + 8 * rh + g, 64 * c + 16 * t + 4 * s + 2 * h + j
                            assert code == full[row, kk]
                for rh in range(2):
                    block = (64 * c + 16 * t) // 16
                    assert sf[rt, c // 2, lane, c % 2, rh] == scale[0].view(torch.uint8)[16 * rt + 8 * rh + g, block]


@pytest.mark.parametrize("dtype, mag_low, bias", [(torch.bfloat16, 6, 2.0**-126), (torch.float16, 9, 2.0**-14)])
def test_word_bits_give_half_pairs(dtype, mag_low, bias):
    """Every 8-code word: each A register is its elements' magnitudes shifted to the half's low
    exponent / top mantissa bits and signs to bit 15 — the E2M1 value times ``bias``, exactly."""
    g = torch.Generator().manual_seed(3)
    nibbles = torch.randint(0, 16, (4096, 8), generator=g, dtype=torch.int64)
    nibbles[:16] = torch.arange(16)[:, None]  # every code in every position
    nibble_words = _i32((nibbles << (4 * torch.arange(8))).sum(-1))
    stored = word_bits(nibble_words)
    assert torch.equal(word_bits(stored, inverse=True), nibble_words)
    w = stored.to(torch.int64) & 0xFFFFFFFF
    mask = (7 << mag_low) | (7 << (mag_low + 16))

    def shifted(x, d):
        return (x << d) & 0xFFFFFFFF if d >= 0 else x >> -d

    for r in range(4):
        bits = (shifted(w, mag_low - M16N8K16_MAG_BIT[r]) & mask) | (shifted(w, 15 - M16N8K16_SIGN_BIT[r]) & 0x80008000)
        for j in range(2):
            half = (bits >> (16 * j)) & 0xFFFF
            if dtype == torch.float16:
                got = (half - 2**16 * (half >= 2**15)).to(torch.int16).view(torch.float16).float()
            else:
                got = _i32(half << 16).view(torch.float32)
            want = e2m1_decode(nibbles[:, r + 4 * j].to(torch.uint8)) * bias
            assert torch.equal(got, want), (r, j)


def _i32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in [0, 2^32) -> the int32 with the same bits."""
    return (x - 2**32 * (x >= 2**31)).to(torch.int32)


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
