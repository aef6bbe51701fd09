import pytest
import torch

from trtllm_b12x.quantization import (
    E2M1_VALUES,
    e2m1_decode,
    e2m1_encode,
    e4m3_decode,
    e4m3_encode,
    pack_e2m1,
    unpack_e2m1,
)


def test_all_16_codes_decode_and_reencode():
    codes = torch.arange(16, dtype=torch.uint8)
    vals = e2m1_decode(codes)
    assert vals.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
    assert list(E2M1_VALUES) == vals.tolist()
    # every code round-trips (including -0.0 -> code 8)
    assert e2m1_encode(vals).tolist() == codes.tolist()


@pytest.mark.parametrize(
    "v, want",
    [
        (0.25, 0.0), (0.2500001, 0.5), (0.7499, 0.5), (0.75, 1.0), (1.25, 1.0), (1.2501, 1.5),
        (1.75, 2.0), (2.5, 2.0), (2.5001, 3.0), (3.5, 4.0), (5.0, 4.0), (5.0001, 6.0),
        (6.0, 6.0), (7.0, 6.0), (1e30, 6.0), (float("inf"), 6.0), (-0.75, -1.0), (-float("inf"), -6.0),
        (1e-30, 0.0),
    ],
)
def test_e2m1_round_to_nearest_even_and_saturation(v, want):
    got = e2m1_decode(e2m1_encode(torch.tensor([v]))).item()
    assert got == want


def test_e2m1_matches_nearest_value_off_ties(gen):
    v = (torch.rand(10000, generator=gen) - 0.5) * 16
    table = torch.tensor(E2M1_VALUES[:8])
    nearest = table[(v.abs().clamp(max=6).unsqueeze(1) - table).abs().argmin(1)] * v.sign()
    assert torch.equal(e2m1_decode(e2m1_encode(v)), nearest)


def test_e2m1_rejects_nan():
    with pytest.raises(ValueError, match="NaN at flat index 1"):
        e2m1_encode(torch.tensor([1.0, float("nan")]))
    with pytest.raises(TypeError, match="floating"):
        e2m1_encode(torch.tensor([1, 2]))


def test_pack_low_nibble_is_even_element():
    codes = torch.tensor([[1, 2, 15, 0]], dtype=torch.uint8)
    packed = pack_e2m1(codes)
    assert packed.tolist() == [[0x21, 0x0F]]
    assert torch.equal(unpack_e2m1(packed), codes)
    with pytest.raises(ValueError, match="must be even"):
        pack_e2m1(torch.zeros(3, dtype=torch.uint8))


def test_pack_agrees_with_torch_float4_e2m1fn_x2():
    if not hasattr(torch, "float4_e2m1fn_x2"):
        pytest.skip("torch has no float4_e2m1fn_x2")
    vals = torch.tensor([0.5, -3.0, 6.0, 1.5])
    packed = pack_e2m1(e2m1_encode(vals))
    try:
        ref = vals.reshape(1, 4).to(torch.float4_e2m1fn_x2)
    except (RuntimeError, TypeError, NotImplementedError) as e:
        pytest.skip(f"this torch cannot convert to float4_e2m1fn_x2: {e}")
    assert torch.equal(packed, ref.view(torch.uint8).reshape(-1))


def test_e4m3_edges():
    s = torch.tensor([0.0, 448.0, 500.0, 1e9, float("inf"), 2.0**-9, 2.0**-10, 1.5 * 2.0**-9, 2.0**-6])
    got = e4m3_decode(e4m3_encode(s)).tolist()
    # saturation at 448, smallest subnormal 2^-9 kept, half of it ties to 0, 1.5*2^-9 ties to 2^-8
    assert got == [0.0, 448.0, 448.0, 448.0, 448.0, 2.0**-9, 0.0, 2.0**-8, 2.0**-6]
    assert e4m3_decode(e4m3_encode(s).view(torch.uint8)).tolist() == got


def test_e4m3_rejects_nan_and_negative():
    with pytest.raises(ValueError, match="NaN"):
        e4m3_encode(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match=">= 0"):
        e4m3_encode(torch.tensor([-1.0]))
    with pytest.raises(TypeError, match="float8_e4m3fn or uint8"):
        e4m3_decode(torch.zeros(2))
