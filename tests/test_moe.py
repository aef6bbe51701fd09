import pytest
import torch

from helpers import SMALL_GATED, SMALL_RELU2, small_weights
from trtllm_b12x.activation import Activation
from trtllm_b12x.models import make_hidden_states, make_routing
from trtllm_b12x.moe import DECODE_MAX_TOKENS, MoERunner, Parallel
from trtllm_b12x.reference import moe_reference, relative_error

# bf16 GEMMs over exactly dequantized weights vs the float32 oracle
FALLBACK_TOL = 2e-2


@pytest.mark.parametrize("shape", [SMALL_GATED, SMALL_RELU2])
@pytest.mark.parametrize("m", [1, 5, 70])
def test_fallback_matches_oracle(shape, m):
    weights = small_weights(shape)
    act = shape.default_activation()
    x = make_hidden_states(m, shape, seed=m)
    ids, w = make_routing(m, shape.num_experts, shape.top_k, seed=m)
    out = torch.full((m, shape.hidden_size), float("nan"), dtype=x.dtype)  # poisoned
    got = MoERunner(weights, act)(x, ids, w, out=out)
    assert got is out
    ref = moe_reference(x, ids, w, weights, act)
    assert relative_error(out.float(), ref) < FALLBACK_TOL


def test_expert_and_tensor_parallel_ranks_sum_to_the_full_layer():
    full = small_weights(SMALL_GATED)
    act = Activation()
    x = make_hidden_states(9, SMALL_GATED, seed=1)
    ids, w = make_routing(9, 6, 2, seed=2)
    ref = moe_reference(x, ids, w, full, act)
    for ep, tp in ((2, 1), (3, 1), (1, 2), (2, 2)):
        total = torch.zeros_like(ref)
        for er in range(ep):
            for tr in range(tp):
                r = MoERunner.shard(full, act, ep_size=ep, ep_rank=er, tp_size=tp, tp_rank=tr)
                assert r.parallel.expert_offset == er * (6 // ep)
                total += r(x, ids, w).float()
        assert relative_error(total, ref) < FALLBACK_TOL, (ep, tp)


def test_unrouted_slots_are_skipped():
    weights = small_weights(SMALL_GATED)
    act = Activation()
    x = make_hidden_states(4, SMALL_GATED, seed=3)
    ids, w = make_routing(4, 6, 2, seed=4)
    ids[:, 1] = -1
    out = MoERunner(weights, act)(x, ids, w)
    assert relative_error(out.float(), moe_reference(x, ids, w, weights, act)) < FALLBACK_TOL


def test_decode_threshold_routes_to_the_decode_kernel():
    """A stand-in kernel that writes a marker: below the threshold the caller gets exactly the
    kernel's output, at the threshold the fallback's (close to the oracle, not the marker)."""
    weights = small_weights(SMALL_GATED)
    act = Activation()
    seen = []
    marker = 7.0

    def marking_kernel(runner):
        def run(x, ids, w, out, workspace=None):
            seen.append(x.shape[0])
            out.fill_(marker)
        return run

    r = MoERunner(weights, act, decode_kernel=marking_kernel)
    for m in (1, DECODE_MAX_TOKENS - 1):
        x = make_hidden_states(m, SMALL_GATED, seed=m)
        ids, w = make_routing(m, 6, 2, seed=m)
        assert bool((r(x, ids, w) == marker).all())
    x = make_hidden_states(DECODE_MAX_TOKENS, SMALL_GATED, seed=3)
    ids, w = make_routing(DECODE_MAX_TOKENS, 6, 2, seed=3)
    out = r(x, ids, w)
    assert relative_error(out.float(), moe_reference(x, ids, w, weights, act)) < FALLBACK_TOL
    assert seen == [1, DECODE_MAX_TOKENS - 1]  # 64 tokens is prefill: the fallback ran


def test_errors_name_the_value_and_the_rule():
    weights = small_weights(SMALL_GATED)
    r = MoERunner(weights, Activation(), Parallel(num_experts=12, expert_offset=6))
    x = make_hidden_states(3, SMALL_GATED)
    ids, w = make_routing(3, 12, 2)
    ids[1, 0] = 12
    with pytest.raises(ValueError, match="expert id 12 is out of range; supported: 0..11"):
        r(x, ids, w)
    ids[1, 0] = -2
    with pytest.raises(ValueError, match="expert id -2"):
        r(x, ids, w)
    ids[1, 0] = 0
    with pytest.raises(ValueError, match=r"out: got \(3, 32\)"):
        r(x, ids, w, out=torch.empty(3, 32, dtype=x.dtype))
    with pytest.raises(ValueError, match="contiguous"):
        r(torch.cat([x, x], 1)[:, ::2], ids, w)
    with pytest.raises(ValueError, match="does not match the weights"):
        MoERunner(weights, Activation("relu2"))
    with pytest.raises(ValueError, match="not inside the 8 global experts"):
        MoERunner(weights, Activation(), Parallel(num_experts=8, expert_offset=4))
    with pytest.raises(ValueError, match="do not split evenly"):
        MoERunner.shard(weights, Activation(), ep_size=4)
    for bad in (0, -1):
        with pytest.raises(ValueError, match=rf"ep_size={bad}: expected a positive integer"):
            MoERunner.shard(weights, Activation(), ep_size=bad)
        with pytest.raises(ValueError, match=rf"tp_size={bad}: expected a positive integer"):
            MoERunner.shard(weights, Activation(), tp_size=bad)
    for name, args in (("x", (None, ids, w)), ("topk_ids", (x, None, w)), ("topk_weights", (x, ids, [0.5]))):
        with pytest.raises(TypeError, match=rf"{name}: expected a torch.Tensor, got"):
            r(*args)
