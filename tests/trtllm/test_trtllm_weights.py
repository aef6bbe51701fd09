"""CUTLASS tensors -> bundle, against the independent test-side model of TensorRT-LLM's layout."""

import pytest
import torch

import cutlass_layout as cl
from trtllm_b12x.models import MoEShape, make_hidden_states, make_moe_weights, make_routing
from trtllm_b12x.quantization import swizzle_128x4
from trtllm_b12x.reference import moe_reference
from trtllm_b12x.trtllm import bundle_from_cutlass_tensors

GATED = MoEShape("w-gated", 128, 96, 4, 2, "swiglu", "synthetic")  # 2I = 192 rows pad to 256
RELU2 = MoEShape("w-relu2", 256, 64, 3, 2, "relu2", "synthetic")  # FC2 columns pad 64 -> 128


def _bytes(t):
    return t.view(torch.uint8)


def _tensors(w, *, swizzled=True, tp=(1, 0), experts=None):
    ck = cl.checkpoint_from_bundle(w)
    return cl.cutlass_tensors(ck, num_experts=w.num_experts, experts=experts or range(w.num_experts),
                              hidden=w.hidden_size, intermediate=w.intermediate_size, gated=w.gated,
                              tp_size=tp[0], tp_rank=tp[1], swizzled=swizzled)


def test_the_two_swizzle_implementations_agree(gen):
    sf = torch.randint(0, 256, (256, 12), generator=gen, dtype=torch.uint8)
    assert torch.equal(cl.swizzle(sf), swizzle_128x4(sf))
    assert torch.equal(cl.unswizzle(cl.swizzle(sf)), sf)


@pytest.mark.parametrize("shape", [GATED, RELU2], ids=["swiglu", "relu2"])
@pytest.mark.parametrize("swizzled", [True, False], ids=["nvfp4", "w4a16-linear"])
@pytest.mark.parametrize("tp", [(1, 0), (2, 1)], ids=["tp1", "tp2-rank1"])
def test_bundle_equals_the_cutlass_tensors_math(shape, swizzled, tp):
    w = make_moe_weights(shape, seed=7)
    if w.gated:
        w.w13_global[:, 1] = w.w13_global[:, 0]  # one weight_scale_2 per expert, as TensorRT-LLM keeps
    t = _tensors(w, swizzled=swizzled, tp=tp)
    i_pp = shape.intermediate_size // tp[0]
    got = bundle_from_cutlass_tensors(**t, intermediate_size=i_pp, gated=w.gated, scales_swizzled=swizzled)
    want = w.tp_shard(*tp) if tp[0] > 1 else w

    # the bundle is the module's tensors, byte for byte: views, no storage of its own
    for name, src in (("w13", "w3_w1_weight"), ("w13_scale", "w3_w1_weight_scale"), ("w2", "w2_weight"),
                      ("w2_scale", "w2_weight_scale")):
        assert getattr(got, name).data_ptr() == t[src].data_ptr(), name
        assert getattr(got, name).untyped_storage().data_ptr() == t[src].untyped_storage().data_ptr(), name
    assert got.scale_layout == ("swizzled" if swizzled else "linear")
    # its logical view is the checkpoint's tensors bit for bit: gate and up halves, FC2, linear scales
    for proj in got.fc1_projections:
        for a, b in zip(got.fc1_half(proj), want.fc1_half(proj)):
            assert torch.equal(_bytes(a), _bytes(b)), proj
    for a, b in zip(got.fc2(), want.fc2()):
        assert torch.equal(_bytes(a), _bytes(b))
    if swizzled:  # the same layout as the standalone bundle: one code path
        for name in ("w13", "w13_scale", "w2", "w2_scale"):
            assert torch.equal(_bytes(getattr(got, name)), _bytes(getattr(want, name))), name
    # global scales: alpha * input_scale recovers weight_scale_2 up to float32 rounding
    torch.testing.assert_close(got.w13_global, want.w13_global, rtol=2e-7, atol=0)
    torch.testing.assert_close(got.w2_global, want.w2_global, rtol=2e-7, atol=0)

    # dequantized weights equal what the CUTLASS tensors stand for, exactly
    w13, w2 = cl.dequant_cutlass(t, intermediate=i_pp, gated=w.gated, swizzled=swizzled)
    assert torch.equal(got.dequant_w13(), w13)
    assert torch.equal(got.dequant_w2(), w2)

    # and the oracle on the bundle equals the routed MoE over the CUTLASS-dequantized weights
    x = make_hidden_states(5, shape, seed=1)
    ids, rw = make_routing(5, shape.num_experts, shape.top_k, seed=2)
    ref = cl.moe_math(x, ids, rw, w13, w2, expert_offset=0, gated=w.gated)
    torch.testing.assert_close(moe_reference(x, ids, rw, got, shape.default_activation()), ref, rtol=1e-5, atol=1e-5)


def test_per_half_global_scales_follow_tensorrt_llm(gen):
    """w1 and w3 calibrated apart: TensorRT-LLM keeps the larger weight_scale_2 for both
    halves, so decode must dequantize with it too (not with the checkpoint's own)."""
    w = make_moe_weights(GATED, seed=3)
    assert bool((w.w13_global[:, 0] != w.w13_global[:, 1]).all())
    t = _tensors(w)
    got = bundle_from_cutlass_tensors(**t, intermediate_size=GATED.intermediate_size, gated=True)
    torch.testing.assert_close(got.w13_global, w.w13_global.amax(1, keepdim=True).expand(-1, 2), rtol=2e-7, atol=0)
    w13, _ = cl.dequant_cutlass(t, intermediate=GATED.intermediate_size, gated=True)
    assert torch.equal(got.dequant_w13(), w13)
    smaller = w.w13_global.argmin(1)
    rows = torch.arange(GATED.intermediate_size)
    assert not torch.equal(got.dequant_w13()[0, smaller[0] * 96 + rows], w.dequant_w13()[0, smaller[0] * 96 + rows])


def test_activation_scales_are_the_layer_maximum():
    w = make_moe_weights(GATED, seed=4)
    got = bundle_from_cutlass_tensors(**_tensors(w), intermediate_size=GATED.intermediate_size, gated=True)
    torch.testing.assert_close(got.fc1_input_scale, w.fc1_input_scale.amax().expand(4), rtol=2e-7, atol=0)
    torch.testing.assert_close(got.fc2_input_scale, w.fc2_input_scale.amax().expand(4), rtol=2e-7, atol=0)


def test_expert_parallel_slice_keeps_its_experts():
    w = make_moe_weights(GATED, seed=5)
    t = _tensors(w, experts=range(2, 4))
    got = bundle_from_cutlass_tensors(**t, intermediate_size=GATED.intermediate_size, gated=True)
    assert torch.equal(got.w13, w.w13[2:4]) and torch.equal(got.w2, w.w2[2:4])


def test_building_the_bundle_allocates_nothing_weight_sized_and_is_fast():
    """Views only: the bundle adds its per-expert scalars, nothing that grows with the weights;
    building it is host bookkeeping (well under a millisecond per layer)."""
    import time

    from trtllm_b12x.trtllm.weights import own_bytes

    w = make_moe_weights(GATED, seed=8)
    t = _tensors(w)
    got = bundle_from_cutlass_tensors(**t, intermediate_size=GATED.intermediate_size, gated=True)
    owners = [t[k] for k in ("w3_w1_weight", "w3_w1_weight_scale", "w2_weight", "w2_weight_scale")]
    extra = own_bytes(got, *owners)
    assert extra == 4 * w.num_experts * (2 + 1 + 1 + 1)  # w13_global [E, 2], w2_global, two input scales
    runs = []
    for _ in range(20):
        t0 = time.perf_counter()
        bundle_from_cutlass_tensors(**t, intermediate_size=GATED.intermediate_size, gated=True)
        runs.append(time.perf_counter() - t0)
    assert sorted(runs)[len(runs) // 2] < 1e-3, runs


def test_errors_name_the_value_and_the_rule():
    w = make_moe_weights(GATED, seed=6)
    t = _tensors(w)
    with pytest.raises(ValueError, match=r"MoEWeights.w2_scale: got shape \(4, 128, 6\) .* expected shape \(4, 128, 8\)"):
        bad = dict(t, w2_weight_scale=t["w2_weight_scale"].view(torch.uint8)[:, :, :6].contiguous())
        bundle_from_cutlass_tensors(**bad, intermediate_size=96, gated=True)
    with pytest.raises(ValueError, match=r"intermediate_size=200 does not fit .* FC1 has 256 rows \(needs >= 400"):
        bundle_from_cutlass_tensors(**t, intermediate_size=200, gated=True)
    with pytest.raises(ValueError, match=r"w3_w1_weight: dtype torch.float32; expected packed E2M1"):
        bundle_from_cutlass_tensors(**dict(t, w3_w1_weight=t["w3_w1_weight"].float()), intermediate_size=96, gated=True)
    with pytest.raises(ValueError, match=r"fc31_alpha: shape \(3,\); expected \(4,\)"):
        bundle_from_cutlass_tensors(**dict(t, fc31_alpha=t["fc31_alpha"][:3]), intermediate_size=96, gated=True)
    with pytest.raises(ValueError, match=r"FC2: weight_scale_2 = alpha \* input_scale must be finite and > 0"):
        bundle_from_cutlass_tensors(**dict(t, fc2_alpha=torch.zeros(4)), intermediate_size=96, gated=True)
