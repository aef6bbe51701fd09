import pytest
import torch
from dataclasses import replace

from helpers import SMALL_GATED, SMALL_RELU2, small_weights
from trtllm_b12x.quantization import MoEWeights, dequantize_nvfp4, quantize_weight


def _modelopt_expert(gen, n, k, *, input_scale):
    q = quantize_weight(torch.randn(n, k, generator=gen).to(torch.bfloat16))
    d = {"weight": q.data, "weight_scale": q.scale, "weight_scale_2": q.global_scale.reshape(())}
    if input_scale is not None:
        d["input_scale"] = torch.tensor(input_scale)
    return d, q


def test_from_modelopt_gated_keeps_each_half_exact(gen):
    h, inter, experts = 64, 32, []
    ref = []
    for e in range(3):
        w1, q1 = _modelopt_expert(gen, inter, h, input_scale=0.01 + e)
        w3, q3 = _modelopt_expert(gen, inter, h, input_scale=0.02 + e)
        w2, q2 = _modelopt_expert(gen, h, inter, input_scale=0.5)
        experts.append({"w1": w1, "w3": w3, "w2": w2})
        ref.append((q1, q3, q2))
    b = MoEWeights.from_modelopt(experts)
    assert b.gated and (b.num_experts, b.hidden_size, b.intermediate_size) == (3, h, inter)
    assert b.bytes_per_expert == 3 * h * inter * 0.5625
    w13 = b.dequant_w13()
    for e, (q1, q3, q2) in enumerate(ref):
        assert torch.equal(w13[e, :inter], q1.dequantize())  # gate first
        assert torch.equal(w13[e, inter:], q3.dequantize())
        assert torch.equal(b.dequant_w2()[e], q2.dequantize())
    # w1/w3 share one input: the larger input scale
    assert b.fc1_input_scale.tolist() == pytest.approx([0.02, 1.02, 2.02])
    assert b.fc2_input_scale.tolist() == pytest.approx([0.5] * 3)


def test_from_modelopt_relu2_and_missing_pieces(gen):
    w1, _ = _modelopt_expert(gen, 32, 64, input_scale=None)
    w2, _ = _modelopt_expert(gen, 64, 32, input_scale=None)
    b = MoEWeights.from_modelopt([{"w1": w1, "w2": w2}])
    assert not b.gated and b.fc1_input_scale is None and b.w13_global.shape == (1, 1)
    with pytest.raises(ValueError, match="expert 1 has projections"):
        MoEWeights.from_modelopt([{"w1": w1, "w2": w2}, {"w1": w1}])
    with pytest.raises(ValueError, match=r"expert 0 w1.weight: dtype torch.float32, shape \(32, 32\); expected a 2-D torch.uint8"):
        MoEWeights.from_modelopt([{"w1": {**w1, "weight": w1["weight"].float()}, "w2": w2}])
    with pytest.raises(ValueError, match="no experts"):
        MoEWeights.from_modelopt([])


def test_validation_names_field_and_expectation():
    b = small_weights()
    with pytest.raises(ValueError, match=r"MoEWeights.w2_global: got shape \(5,\)"):
        replace(b, w2_global=b.w2_global[:5])
    with pytest.raises(ValueError, match=r"w13_scale.*float8_e4m3fn"):
        replace(b, w13_scale=b.w13_scale.view(torch.uint8))
    with pytest.raises(ValueError, match=r"w13 has 50 rows .* N1 = pad128\(2\*I\) = 256 rows and C = N1/2 = 128"):
        replace(b, w13=b.w13[:, :50], w13_scale=b.w13_scale[:, :50])
    with pytest.raises(ValueError, match=r"w13 has 256 rows and w2 96 columns"):
        replace(b, w2=b.w2[:, :, :48])
    with pytest.raises(ValueError, match="3-D tensor"):
        replace(b, w2=b.w2[0])
    with pytest.raises(ValueError, match=r"scale_layout='tiled'; supported"):
        replace(b, scale_layout="tiled")


@pytest.mark.parametrize("shape", [SMALL_GATED, SMALL_RELU2])
def test_tp_shard_concatenates_back(shape):
    b = small_weights(shape)
    shards = [b.tp_shard(2, r) for r in range(2)]
    inter = b.intermediate_size
    for s in shards:
        assert s.intermediate_size == inter // 2 and s.gated == b.gated
    full13, full2 = b.dequant_w13(), b.dequant_w2()
    halves = 2 if b.gated else 1
    for h in range(halves):
        got = torch.cat([s.dequant_w13()[:, h * inter // 2 : (h + 1) * inter // 2] for s in shards], dim=1)
        assert torch.equal(got, full13[:, h * inter : (h + 1) * inter])
    assert torch.equal(torch.cat([s.dequant_w2() for s in shards], dim=2), full2)
    with pytest.raises(ValueError, match="not divisible by tp_size"):
        b.tp_shard(inter // 8, 0)
    with pytest.raises(ValueError, match="outside"):
        b.tp_shard(2, 2)


def test_experts_subset_and_to():
    b = small_weights()
    sub = b.experts(slice(2, 4))
    assert sub.num_experts == 2 and torch.equal(sub.dequant_w2(), b.dequant_w2()[2:4])
    assert torch.equal(sub.fc1_input_scale, b.fc1_input_scale[2:4])
    assert b.to("cpu").device.type == "cpu"
    idx = torch.tensor([4, 0])
    assert torch.equal(b.dequant_w13(idx), b.dequant_w13()[idx])
    # per-half globals are applied
    e = 1
    gate = dequantize_nvfp4(*b.fc1_half("w1", [e]), b.w13_global[[e], 0])[0]
    assert torch.equal(b.dequant_w13()[e, : b.intermediate_size], gate)
    assert b.experts(slice(1, 3)).w13.data_ptr() == b.w13[1].data_ptr()  # a slice is a view





@pytest.mark.parametrize("gated", [True, False])
def test_the_layout_is_tensorrt_llms(gen, gated):
    """Rows ``[w3; w1]`` padded with zeros to a multiple of 128, FC2 columns padded to ``C``,
    block scales 128x4-swizzled over the padded shape (the byte-offset formula, written here
    independently of the layout module)."""
    h, inter = 64, 48
    fc1 = {"w1": _modelopt_expert(gen, inter, h, input_scale=None), "w3": _modelopt_expert(gen, inter, h, input_scale=None)}
    w2, q2 = _modelopt_expert(gen, h, inter, input_scale=None)
    ex = {p: d for p, (d, _) in fc1.items() if gated or p == "w1"} | {"w2": w2}
    b = MoEWeights.from_modelopt([ex])
    g = 2 if gated else 1
    n1 = -(-g * inter // 128) * 128
    assert b.w13.shape == (1, n1, h // 2) and b.w2.shape == (1, h, n1 // g // 2)
    stored = [fc1["w3"][1], fc1["w1"][1]] if gated else [fc1["w1"][1]]  # up rows first
    for i, q in enumerate(stored):
        assert torch.equal(b.w13[0, i * inter : (i + 1) * inter], q.data)
    assert not b.w13[0, g * inter :].any() and not b.w2[0, :, inter // 2 :].any()
    assert torch.equal(b.w2[0, :, : inter // 2], q2.data)

    def offset(r, c, cols):  # 128x4 tiles of 512 bytes, K-tiles first; rows r, r+32, r+64, r+96 share 16 bytes
        return (r // 128) * (cols // 4) * 512 + (c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + c % 4

    flat = b.w13_scale[0].view(torch.uint8).reshape(-1)
    cols = b.w13_scale.shape[2]
    for i, q in enumerate(stored):
        sf = q.scale.view(torch.uint8)
        for r in (0, 5, inter - 1):
            for c in range(h // 16):
                assert flat[offset(i * inter + r, c, cols)] == sf[r, c]
    pad_rows = [offset(r, c, cols) for r in range(g * inter, n1) for c in range(cols)]
    assert not flat[pad_rows].any()


def test_swapped_halves_or_a_shifted_row_change_the_layer(gen):
    """What a reader of the layout gets wrong shows: swapping ``[w3; w1]`` or starting the gate
    half one row off gives other weights than the checkpoint's."""
    b = small_weights(SMALL_GATED)
    inter = b.intermediate_size
    ref = b.dequant_w13()
    swapped = torch.cat([b.w13[:, inter : 2 * inter], b.w13[:, :inter], b.w13[:, 2 * inter :]], dim=1)
    assert not torch.equal(replace(b, w13=swapped).dequant_w13(), ref)
    shifted = torch.roll(b.w13, 1, dims=1)
    assert not torch.equal(replace(b, w13=shifted).dequant_w13(), ref)
    linear = replace(b, w13_scale=b.linear_scales("w13_scale"), w2_scale=b.linear_scales("w2_scale"),
                     scale_layout="linear")
    assert torch.equal(linear.dequant_w13(), ref) and torch.equal(linear.dequant_w2(), b.dequant_w2())
    assert not torch.equal(replace(linear, scale_layout="swizzled").dequant_w13(), ref)
