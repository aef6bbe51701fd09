"""EP / TP / EP x TP across processes (gloo on the CPU): the ranks' partial outputs, summed
with torch.distributed as TensorRT-LLM reduces them, equal the whole layer within the
fallback's bound; global expert ids, unrouted slots -1, uniform and skewed routing."""

import pytest

from trtllm_b12x.models import MoEShape
from trtllm_b12x.parallel import ParallelCase, rank_layout, spawn_cpu

GATED = MoEShape("p-gated", 128, 96, 8, 2, "swiglu", "synthetic")
RELU2 = MoEShape("p-relu2", 128, 64, 4, 3, "relu2", "synthetic")


@pytest.mark.parametrize("shape, ep, tp, skew, unrouted", [
    (GATED, 2, 1, 0.0, 0.0),
    (GATED, 1, 2, 2.0, 0.0),
    (GATED, 2, 2, 0.0, 0.25),
    (RELU2, 4, 1, 2.0, 0.25),
    (RELU2, 2, 2, 0.0, 0.0),
], ids=["ep2", "tp2-skewed", "ep2xtp2-unrouted", "ep4-relu2-skewed-unrouted", "ep2xtp2-relu2"])
def test_ranks_sum_to_the_whole_layer(shape, ep, tp, skew, unrouted):
    results = spawn_cpu(ParallelCase(shape, ep=ep, tp=tp, tokens=(1, 5, 70), skew=skew, unrouted=unrouted, seed=11))
    assert [r.m for r in results] == [1, 5, 70]  # m = 70: the fallback path, as prefill
    for r in results:
        assert r.rel_err <= r.bound, (r.m, r.rel_err)


def test_a_wrong_reduction_fails():
    """The check can fail: with one rank's part missing (EP 2 over a layer where every token is
    routed to both halves) the error is of order one."""
    import torch

    from trtllm_b12x.moe import MoERunner
    from trtllm_b12x.models import make_hidden_states, make_moe_weights, make_routing
    from trtllm_b12x.reference import moe_reference, relative_error

    full = make_moe_weights(GATED, seed=3)
    act = GATED.default_activation()
    x = make_hidden_states(4, GATED, seed=1)
    ids, w = make_routing(4, 8, 2, seed=1)
    half = MoERunner.shard(full, act, ep_size=2, ep_rank=0)(x, ids, w).float()
    assert relative_error(half, moe_reference(x, ids, w, full, act)) > 0.2
    assert torch.isfinite(half).all()


def test_rank_layout_puts_tp_ranks_together():
    assert [rank_layout(r, 2) for r in range(4)] == [(0, 0), (0, 1), (1, 0), (1, 1)]
