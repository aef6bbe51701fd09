import pytest
import torch

from helpers import SMALL_GATED
from trtllm_b12x.models import DEFAULT_PRESET, PRESETS, get_preset, make_moe_weights, make_routing


def test_presets_carry_real_shapes():
    s = get_preset("nemotron-3-super")
    assert (s.hidden_size, s.intermediate_size, s.num_experts, s.top_k, s.activation) == (1024, 2688, 512, 22, "relu2")
    q = get_preset("qwen3-30b-a3b")
    assert (q.hidden_size, q.intermediate_size, q.num_experts, q.top_k, q.gated) == (2048, 768, 128, 8, True)
    assert q.bytes_per_expert == pytest.approx(2.65e6, rel=0.01)
    for name in ("nemotron-3-nano", "deepseek-v3", "qwen3.5-397b"):
        assert name in PRESETS
    assert DEFAULT_PRESET in PRESETS
    with pytest.raises(ValueError, match="known presets: qwen3-30b-a3b"):
        get_preset("llama")


def test_generator_is_seeded_and_uses_modelopt_scales():
    a = make_moe_weights(SMALL_GATED, seed=7)
    b = make_moe_weights(SMALL_GATED, seed=7)
    c = make_moe_weights(SMALL_GATED, seed=8)
    assert torch.equal(a.w13, b.w13) and torch.equal(a.w2_scale.view(torch.uint8), b.w2_scale.view(torch.uint8))
    assert not torch.equal(a.w13, c.w13)
    # block scales use the e4m3 range: the largest block of each expert half sits at 448
    assert torch.equal(a.w13_scale.float().amax(dim=(1, 2)), torch.full((6,), 448.0))
    assert (a.w13_global[:, 0] != a.w13_global[:, 1]).all()  # gate and up calibrated separately
    sub = make_moe_weights(get_preset("nemotron-3-nano"), num_experts=2)
    assert sub.num_experts == 2 and sub.intermediate_size == 1856 and not sub.gated


def test_routing_uniform_and_skewed():
    ids, w = make_routing(63, 128, 8, seed=1)
    assert ids.dtype == torch.int32 and w.dtype == torch.float32 and ids.shape == (63, 8)
    assert all(len(set(r)) == 8 for r in ids.tolist())
    assert torch.allclose(w.sum(-1), torch.ones(63))
    sk, _ = make_routing(63, 128, 8, seed=1, skew=3.0)
    assert sk.unique().numel() < ids.unique().numel()
    with pytest.raises(ValueError, match="top_k=9"):
        make_routing(1, 8, 9)
