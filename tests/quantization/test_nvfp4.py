import numpy as np
import pytest
import torch

from trtllm_b12x.quantization import (
    NVFP4Tensor,
    dequantize_nvfp4,
    e2m1_decode,
    e4m3_decode,
    fake_quantize,
    global_scale_from_amax,
    quantize_activation,
    quantize_nvfp4,
    quantize_weight,
    unpack_e2m1,
)

E2M1_POS = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=np.float32)


def _recipe_numpy(x: np.ndarray, g: np.float32):
    """The documented recipe, element by element, in numpy float32 (independent of torch)."""
    blocks = x.astype(np.float32).reshape(-1, 16)
    codes, scales = [], []
    for b in blocks:
        amax = np.float32(np.abs(b).max())
        s = torch.tensor(float(amax / np.float32(g * np.float32(6.0))), dtype=torch.float32)
        s = float(s.clamp(max=448).to(torch.float8_e4m3fn).float())
        scales.append(s)
        r = np.float32(0.0) if s == 0 else np.float32(np.float32(1.0) / np.float32(np.float32(s) * g))
        for v in b:
            y = np.float32(v * r)
            mag = min(abs(float(y)), 6.0)
            d = np.abs(E2M1_POS - mag)
            cands = np.flatnonzero(d == d.min())
            code = cands[0] if len(cands) == 1 else [c for c in cands if c % 2 == 0][0]  # ties to even
            codes.append(code | (8 if np.signbit(y) else 0))
    return np.array(codes, dtype=np.uint8), np.array(scales, dtype=np.float32)


@pytest.mark.parametrize("k", [16, 48, 112])
def test_quantize_matches_documented_recipe(gen, k):
    x = torch.randn(3, k, generator=gen) * 3
    g = torch.tensor(0.0023)
    data, scale = quantize_nvfp4(x, g)
    codes, scales = _recipe_numpy(x.numpy(), np.float32(g.item()))
    assert np.array_equal(unpack_e2m1(data).reshape(-1).numpy(), codes)
    assert np.array_equal(e4m3_decode(scale).reshape(-1).numpy(), scales)


def test_roundtrip_error_is_fp4_sized(gen):
    x = torch.randn(64, 256, generator=gen)
    q = quantize_weight(x)
    err = (q.dequantize() - x).norm() / x.norm()
    assert 0.02 < err < 0.15  # E2M1 RMS error is ~10% of block range, never zero on random data


def test_representable_values_roundtrip_exactly():
    # values already on the grid of one block with scale 1 and global 1
    codes = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15], dtype=torch.uint8)
    x = e2m1_decode(codes).reshape(1, 16)
    data, scale = quantize_nvfp4(x, 1.0 / 6.0)  # amax 6 -> scale e4m3(6/(6/6)) = 6
    assert e4m3_decode(scale).item() == 6.0
    assert torch.equal(dequantize_nvfp4(data, scale, 1.0 / 6.0), x)


def test_zero_block_and_amax_at_448x6():
    x = torch.zeros(2, 32)
    x[1, 16] = 448 * 6
    x[1, 17] = -448 * 6
    data, scale = quantize_nvfp4(x, 1.0)
    assert e4m3_decode(scale).tolist() == [[0.0, 0.0], [0.0, 448.0]]
    out = dequantize_nvfp4(data, scale, 1.0)
    assert out[0].abs().sum() == 0 and out[1, :16].abs().sum() == 0
    assert out[1, 16].item() == 2688.0 and out[1, 17].item() == -2688.0


def test_subnormal_block_scales():
    # block amax 6*2^-9 with global 1 -> scale is the smallest e4m3 subnormal
    x = torch.zeros(1, 16)
    x[0, 0] = 6 * 2.0**-9
    _, scale = quantize_nvfp4(x, 1.0)
    assert e4m3_decode(scale).item() == 2.0**-9
    x[0, 0] = 2 * 2.0**-10  # amax/6 below half the smallest subnormal: scale 0, block zeroed
    data, scale = quantize_nvfp4(x, 1.0)
    assert e4m3_decode(scale).item() == 0.0 and int(data.sum()) == 0


def test_nan_rejected_inf_saturates():
    x = torch.ones(1, 16)
    x[0, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN at flat index 3"):
        quantize_nvfp4(x, 1.0)
    x[0, 3] = float("inf")
    data, scale = quantize_nvfp4(x, 1.0)
    assert e4m3_decode(scale).item() == 448.0
    assert dequantize_nvfp4(data, scale, 1.0)[0, 3].item() == 6 * 448.0


def test_per_expert_global_scale_broadcast(gen):
    w = torch.randn(3, 32, 64, generator=gen) * torch.tensor([1.0, 10.0, 0.01]).view(3, 1, 1)
    q = quantize_weight(w, per=1)
    assert q.global_scale.shape == (3,)
    assert torch.allclose(q.global_scale, w.abs().amax(dim=(1, 2)) / 2688)
    for e in range(3):
        ref = dequantize_nvfp4(q.data[e], q.scale[e], q.global_scale[e])
        assert torch.equal(q.dequantize()[e], ref)
        assert (ref - w[e]).norm() / w[e].norm() < 0.15


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="multiple of 16.*pad K to 32"):
        quantize_nvfp4(torch.ones(2, 20), 1.0)
    with pytest.raises(ValueError, match="does not match the leading"):
        quantize_nvfp4(torch.ones(2, 16), torch.ones(3))
    with pytest.raises(ValueError, match="finite and > 0"):
        quantize_nvfp4(torch.ones(2, 16), 0.0)
    with pytest.raises(TypeError, match="floating"):
        quantize_nvfp4(torch.ones(2, 16, dtype=torch.int32), 1.0)
    with pytest.raises(ValueError, match="linear layout"):
        dequantize_nvfp4(torch.zeros(2, 8, dtype=torch.uint8), torch.zeros(2, 2, dtype=torch.float8_e4m3fn))
    with pytest.raises(ValueError, match="must be finite"):
        quantize_weight(torch.full((2, 16), float("inf")))


def test_global_scale_from_amax():
    assert global_scale_from_amax(2688.0).item() == 1.0
    assert global_scale_from_amax(torch.tensor([0.0, 26.88])).tolist() == pytest.approx([1.0, 0.01])


def test_activation_quantization_uses_given_scale(gen):
    x = torch.randn(5, 64, generator=gen).to(torch.bfloat16)
    q = quantize_activation(x, 0.002)
    assert isinstance(q, NVFP4Tensor) and q.k == 64
    assert torch.equal(q.dequantize(), fake_quantize(x, 0.002))
    # a wrong (too small) calibrated scale saturates block scales at 448: large error, not NaN
    bad = fake_quantize(x * 1000, 1e-6)
    assert torch.isfinite(bad).all() and (bad - x.float() * 1000).norm() / (x.float() * 1000).norm() > 0.5
