import pytest
import torch

from helpers import SMALL_GATED, SMALL_RELU2, small_weights
from trtllm_b12x.activation import Activation
from trtllm_b12x.models import make_hidden_states, make_routing
from trtllm_b12x.quantization import fake_quantize
from trtllm_b12x.reference import moe_reference, relative_error


def _float64_moe(x, ids, w, weights, act, offset=0, qin=None, qmid=None):
    """Independent float64 loop over (token, slot) on dequantized weights."""
    w13 = weights.dequant_w13().double()
    w2 = weights.dequant_w2().double()
    out = torch.zeros(x.shape[0], weights.hidden_size, dtype=torch.float64)
    for t in range(x.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j]) - offset
            if not 0 <= e < weights.num_experts:
                continue
            xin = x[t].double() if qin is None else qin(x[t : t + 1], e)[0].double()
            h = w13[e] @ xin
            if act.gated:
                gate, up = h.chunk(2)
                if act.limit is not None:
                    gate, up = gate.clamp(max=act.limit), up.clamp(-act.limit, act.limit)
                a = gate * torch.sigmoid(act.alpha * gate) * (up + act.beta)
            else:
                a = torch.relu(h) ** 2
            if qmid is not None:
                a = qmid(a.float().unsqueeze(0), e)[0].double()
            out[t] += float(w[t, j]) * (w2[e] @ a)
    return out


@pytest.mark.parametrize(
    "shape, act",
    [
        (SMALL_GATED, Activation("swiglu")),
        (SMALL_GATED, Activation("swiglu", alpha=1.702, beta=1.0, limit=0.7)),
        (SMALL_RELU2, Activation("relu2")),
    ],
)
@pytest.mark.parametrize("m", [1, 3, 7])
def test_w4a16_matches_float64(shape, act, m):
    weights = small_weights(shape)
    seed = int(torch.randint(0, 10**6, ()))
    x = make_hidden_states(m, shape, seed=seed)
    ids, w = make_routing(m, shape.num_experts, shape.top_k, seed=seed)
    out = moe_reference(x, ids, w, weights, act)
    ref = _float64_moe(x, ids, w, weights, act)
    assert relative_error(out, ref) < 1e-5
    assert out.abs().sum() > 0


@pytest.mark.parametrize("shape", [SMALL_GATED, SMALL_RELU2])
def test_w4a4_quantizes_fc1_and_fc2_inputs(shape):
    weights = small_weights(shape)
    act = shape.default_activation()
    x = make_hidden_states(5, shape, seed=3)
    ids, w = make_routing(5, shape.num_experts, shape.top_k, seed=4)
    out = moe_reference(x, ids, w, weights, act, mode="w4a4")
    ref = _float64_moe(
        x, ids, w, weights, act,
        qin=lambda v, e: fake_quantize(v, weights.fc1_input_scale[e]),
        qmid=lambda v, e: fake_quantize(v, weights.fc2_quant_global()[e]),
    )
    assert relative_error(out, ref) < 1e-5
    # quantizing the activations moves the result, but stays correlated with W4A16 (ReLU^2
    # squares the FC1 error and these layers are tiny, so the spread is wide; uncorrelated
    # outputs would be near sqrt(2))
    assert 1e-3 < relative_error(out, moe_reference(x, ids, w, weights, act)) < 1.0
    # explicit FC2 scale override is honoured
    out1 = moe_reference(x, ids, w, weights, act, mode="w4a4", fc2_input_scale=1.0)
    ref1 = _float64_moe(
        x, ids, w, weights, act,
        qin=lambda v, e: fake_quantize(v, weights.fc1_input_scale[e]),
        qmid=lambda v, e: fake_quantize(v, 1.0),
    )
    assert relative_error(out1, ref1) < 1e-5


def test_expert_parallel_range_skips_foreign_ids():
    weights = small_weights()
    act = SMALL_GATED.default_activation()
    x = make_hidden_states(6, SMALL_GATED, seed=1)
    ids, w = make_routing(6, 12, 2, seed=2)  # global ids over 12 experts; this rank owns 6..11
    out = moe_reference(x, ids, w, weights, act, local_expert_offset=6)
    assert relative_error(out, _float64_moe(x, ids, w, weights, act, offset=6)) < 1e-5
    mask = (ids >= 6).any(1)
    assert out[~mask].abs().sum() == 0 and out[mask].abs().sum() > 0
    ids_neg = ids.clone()
    ids_neg[:, 1] = -1  # unrouted slot
    out_neg = moe_reference(x, ids_neg, w, weights, act, local_expert_offset=6)
    assert relative_error(out_neg, _float64_moe(x, ids_neg, w, weights, act, offset=6)) < 1e-5


def test_input_errors():
    weights = small_weights()
    act = Activation()
    x = make_hidden_states(2, SMALL_GATED)
    ids, w = make_routing(2, 6, 2)
    with pytest.raises(TypeError, match="supported: torch.bfloat16, torch.float16"):
        moe_reference(x.float(), ids, w, weights, act)
    with pytest.raises(ValueError, match=r"expected \[num_tokens, 64\]"):
        moe_reference(x[:, :32], ids, w, weights, act)
    with pytest.raises(TypeError, match="torch.int32"):
        moe_reference(x, ids.long(), w, weights, act)
    with pytest.raises(TypeError, match="torch.float32"):
        moe_reference(x, ids, w.half(), weights, act)
    with pytest.raises(ValueError, match="top_k"):
        moe_reference(x, ids[:1], w[:1], weights, act)
    with pytest.raises(ValueError, match="mode 'w4a8' is not supported"):
        moe_reference(x, ids, w, weights, act, mode="w4a8")
    with pytest.raises(ValueError, match="is gated but"):
        moe_reference(x, ids, w, small_weights(SMALL_RELU2), act)
    from dataclasses import replace
    with pytest.raises(ValueError, match="needs the bundle's fc1_input_scale"):
        moe_reference(x, ids, w, replace(weights, fc1_input_scale=None), act, mode="w4a4")
    with pytest.raises(ValueError, match=r"fc2_input_scale: shape \(4,\); expected one scalar or one per local expert \(\[6\]\)"):
        moe_reference(x, ids, w, weights, act, mode="w4a4", fc2_input_scale=torch.ones(4))
    with pytest.raises(ValueError, match=r"fc2_input_scale: expert 0 is -1.0"):
        moe_reference(x, ids, w, weights, act, mode="w4a4", fc2_input_scale=-1.0)


def test_activation_validation():
    with pytest.raises(ValueError, match="supported: \\('swiglu', 'relu2'\\)"):
        Activation("gelu")
    with pytest.raises(ValueError, match="relu2 takes no"):
        Activation("relu2", alpha=2.0)
    with pytest.raises(ValueError, match="limit must be > 0"):
        Activation("swiglu", limit=0.0)
    for name in ("alpha", "beta", "limit"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(ValueError, match=rf"swiglu {name}=(nan|inf): expected a finite number"):
                Activation("swiglu", **{name: bad})


def test_relative_error_nan_is_infinite():
    ref = torch.ones(4)
    assert relative_error(torch.tensor([1.0, float("nan"), 1.0, 1.0]), ref) == float("inf")
    assert relative_error(ref * 1.01, ref) == pytest.approx(0.01)
