"""The fused decode kernel on the GPU vs the float32 oracle, per tier.

Tests run for the tier of the GPU present (``-m sm90``: H100/H200; ``-m sm120``: RTX PRO 6000,
RTX 5090, DGX Spark); the other tier's cases are skipped.

Error bounds, NaN anywhere fails (outputs are poisoned first):

* SM90 (W4A16): the kernel computes exactly the bf16/fp16 math of the runner's torch fallback
  (exact NVFP4 weights, activations in the token dtype, FP32 accumulation, the intermediate
  rounded to the token dtype); only the summation order differs. So its error vs the oracle
  must stay within twice the fallback's (measured on the same inputs) plus 1e-3 for the order.
* SM120 (W4A4): the kernel computes the oracle's W4A4 math — the same quantization recipe,
  bit for bit — with FP32 MMA accumulation; it differs by the output rounding to bf16/fp16
  (about 2e-3) and by FC2-input requantizations that the FP32 summation order moves by one
  E2M1 step. Bound: ``W4A4_BOUND`` (conftest) — a layout or scale error is of order one.
"""

import pytest
import torch

from trtllm_b12x.activation import Activation
from trtllm_b12x.models import MoEShape, PRESETS, make_hidden_states, make_moe_weights, make_routing
from trtllm_b12x.moe import MoERunner
from trtllm_b12x.reference import moe_reference, relative_error

from conftest import W4A4_BOUND, gpu_target, requires_gpu

pytestmark = [pytest.mark.gpu, requires_gpu]

M_LIST = (1, 2, 3, 4, 7, 8, 16, 31, 32, 63)
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}
# odd shapes: I not a multiple of 64 (zero columns up to C), few experts, top-k 1, an odd chunk
# count (H = 192); Gemma-class I = 704 gives FC2 11 chunks, split unevenly over 3 warps (4, 4, 3);
# items over several ring slots (tests/kernels/test_compile.py checks these configs): H = 3584
# (FC1 parts of 4 + 3 chunks: a lone chunk in a part), H = 3904 (61 chunks: parts on an uneven
# split, the last warp's second part half missing), Mixtral-class FC2 (7 parts of 4)
ODD = {"odd-gated": MoEShape("odd-gated", 192, 80, 7, 3, "swiglu", "-"),
       "gemma-class": MoEShape("gemma-class", 2048, 704, 64, 8, "swiglu", "-"),
       "odd-gated-384": MoEShape("odd-gated-384", 384, 80, 7, 3, "swiglu", "-"),
       "odd-relu2": MoEShape("odd-relu2", 128, 48, 5, 1, "relu2", "-"),
       "parts-lone": MoEShape("parts-lone", 3584, 512, 16, 4, "swiglu", "-"),
       "parts-uneven": MoEShape("parts-uneven", 3904, 512, 16, 4, "swiglu", "-"),
       "mixtral-class": MoEShape("mixtral-class", 4096, 14336, 8, 2, "swiglu", "-")}


def _gpu_tier() -> str | None:
    t = gpu_target()
    return t.tier if t is not None else None


@pytest.fixture(params=[pytest.param(t, marks=[getattr(pytest.mark, t), pytest.mark.skipif(
    _gpu_tier() != t, reason=f"the {t} kernel needs an {t} GPU")]) for t in ("sm90", "sm120")])
def tier(request):
    return request.param


def _experts(shape: MoEShape) -> int:
    return min(shape.num_experts, 32)  # real H and I; fewer experts keep the suite fast


@pytest.fixture(scope="module")
def layers():
    cache = {}

    def get(name):
        if name not in cache:
            shape = PRESETS.get(name) or ODD[name]
            cache[name] = (shape, make_moe_weights(shape, seed=3, device="cuda", num_experts=_experts(shape)))
        return cache[name]

    return get


def _factory():
    from trtllm_b12x.kernels.decode import decode_kernel_factory

    return decode_kernel_factory


def _check(runner, shape, x, ids, w, offset=0):
    out = torch.full((x.shape[0], shape.hidden_size), float("nan"), dtype=x.dtype, device=x.device)
    runner(x, ids, w, out=out)
    if runner.decode.tier == "sm120":
        ref = moe_reference(x, ids, w, runner.weights, runner.activation, mode="w4a4", local_expert_offset=offset)
        err = relative_error(out.float(), ref)
        assert err <= W4A4_BOUND, f"rel err {err:.3g} vs the W4A4 oracle"
        return out
    ref = moe_reference(x, ids, w, runner.weights, runner.activation, local_expert_offset=offset)
    fb = torch.empty_like(out)
    runner.fallback(x, ids, w, fb)
    err, err_fb = relative_error(out.float(), ref), relative_error(fb.float(), ref)
    assert err <= 2 * err_fb + 1e-3, f"rel err {err:.3g} vs fallback {err_fb:.3g}"
    return out


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("name", [*PRESETS, *ODD])
def test_matches_oracle(tier, layers, name, dtype):
    shape, weights = layers(name)
    runner = MoERunner(weights, shape.default_activation(), decode_kernel=_factory())
    if tier == "sm120" and shape.hidden_size % 128:
        assert runner.decode is None  # not this tier's shape: the runner's fallback serves it
        return
    assert runner.decode is not None and runner.decode.tier == tier
    for m in M_LIST:
        for skew in (0.0, 2.0):
            x = make_hidden_states(m, shape, seed=m, dtype=DTYPES[dtype], device="cuda")
            ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=m, skew=skew, device="cuda")
            _check(runner, shape, x, ids, w)


def test_swiglu_alpha_beta_limit(tier, layers):
    shape, weights = layers("qwen3-30b-a3b")
    act = Activation("swiglu", alpha=1.702, beta=1.0, limit=0.5)
    runner = MoERunner(weights, act, decode_kernel=_factory())
    assert runner.decode is not None and runner.decode.tier == tier  # the kernel, not the fallback, is checked
    assert runner.decode.configs("bfloat16", shape.top_k)[0].limit == 0.5  # ... with these constants compiled in
    for m in (1, 5, 63):
        x = make_hidden_states(m, shape, seed=m, device="cuda")
        ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=m, device="cuda")
        _check(runner, shape, x, ids, w)


@pytest.mark.parametrize("name", ["qwen3-30b-a3b", "nemotron-3-super"])
def test_expert_and_tensor_parallel(tier, layers, name):
    """Every (EP, TP) rank matches the oracle of its shard; the ranks sum to the full layer."""
    shape, weights = layers(name)
    act = shape.default_activation()
    m = 13
    x = make_hidden_states(m, shape, seed=1, device="cuda")
    ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=1, device="cuda")
    total = torch.zeros(m, shape.hidden_size, dtype=torch.float32, device="cuda")
    for ep_rank in range(2):
        for tp_rank in range(2):
            r = MoERunner.shard(weights, act, ep_size=2, ep_rank=ep_rank, tp_size=2, tp_rank=tp_rank,
                                decode_kernel=_factory())
            total += _check(r, shape, x, ids, w, offset=r.parallel.expert_offset).float()
    full = moe_reference(x, ids, w, weights, act, mode="w4a16" if tier == "sm90" else "w4a4")
    assert relative_error(total, full) < 2e-2
    # a rank none of whose experts is routed to writes zeros
    r = MoERunner.shard(weights, act, ep_size=2, ep_rank=1, decode_kernel=_factory())
    ids = ids % (weights.num_experts // 2)  # every id on rank 0 (duplicates per token are fine)
    out = torch.full((m, shape.hidden_size), float("nan"), dtype=x.dtype, device="cuda")
    r(x, ids, w, out=out)
    assert torch.equal(out, torch.zeros_like(out))


def test_graph_replay_with_changing_routing(tier, layers):
    shape, weights = layers("qwen3-30b-a3b")
    runner = MoERunner(weights, shape.default_activation(), decode_kernel=_factory())
    m = 7
    x = make_hidden_states(m, shape, seed=0, device="cuda")
    ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=0, device="cuda")
    out = torch.empty(m, shape.hidden_size, dtype=x.dtype, device="cuda")
    ws = torch.zeros(runner.workspace_bytes(m, shape.top_k, x.dtype), dtype=torch.uint8, device="cuda")
    runner(x, ids, w, out=out, workspace=ws)  # compile + warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        runner(x, ids, w, out=out, workspace=ws)
    eager = torch.empty_like(out)
    for i in range(100):
        skew = 0.0 if i % 2 else 3.0
        x.copy_(make_hidden_states(m, shape, seed=100 + i, device="cuda"))
        new_ids, new_w = make_routing(m, weights.num_experts, shape.top_k, seed=100 + i, skew=skew, device="cuda")
        ids.copy_(new_ids)
        w.copy_(new_w)
        out.fill_(float("nan"))
        graph.replay()
        runner(x, ids, w, out=eager, workspace=ws)
        assert torch.equal(out, eager), f"replay {i} differs from eager"


def test_deterministic_and_caller_workspace(tier, layers):
    shape, weights = layers("nemotron-3-super")
    runner = MoERunner(weights, shape.default_activation(), decode_kernel=_factory())
    m = 31
    x = make_hidden_states(m, shape, seed=5, device="cuda")
    ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=5, skew=1.0, device="cuda")
    a = runner(x, ids, w)
    ws = torch.zeros(runner.workspace_bytes(m, shape.top_k, x.dtype), dtype=torch.uint8, device="cuda")
    b = runner(x, ids, w, workspace=ws)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="workspace: expected a uint8 tensor of at least"):
        runner(x, ids, w, workspace=ws[:-1])


@pytest.mark.sm120
@pytest.mark.skipif(_gpu_tier() != "sm120", reason="the SM120 kernel needs an SM120/SM121 GPU")
@pytest.mark.parametrize("name", ["qwen3-30b-a3b", "nemotron-3-super"])
def test_sm120_matches_its_host_model(layers, name):
    """The kernel against the exact host model of its own dataflow (same tensors, same order
    of pairs and slots): only FP32 accumulation differs."""
    from trtllm_b12x.kernels.decode_model import decode_sm120_model

    shape, weights = layers(name)
    runner = MoERunner(weights, shape.default_activation(), decode_kernel=_factory())
    for m in (1, 8, 63):
        x = make_hidden_states(m, shape, seed=m, device="cuda")
        ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=m, skew=1.0, device="cuda")
        out = torch.full((m, shape.hidden_size), float("nan"), dtype=x.dtype, device="cuda")
        runner(x, ids, w, out=out)
        assert relative_error(out.float(), decode_sm120_model(runner.decode, x, ids, w)) <= W4A4_BOUND


def test_compiled_and_captured_decode_equals_eager(tier, layers):
    """The decode as a custom op: traced by torch.compile(fullgraph=True) as one node, the
    compiled call captured in a CUDA graph, every replay (new routing each) equal to eager."""
    from trtllm_b12x import ops

    shape, weights = layers("qwen3-30b-a3b")
    runner = MoERunner(weights, shape.default_activation(), decode_kernel=_factory())
    assert runner.decode is not None and runner.decode.tier == tier
    ops.register(runner)
    m = 7
    x = make_hidden_states(m, shape, seed=0, device="cuda")
    ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=0, device="cuda")
    out = torch.empty(m, shape.hidden_size, dtype=x.dtype, device="cuda")

    def layer(x, ids, w, out):
        return ops.moe_decode(x, ids, w, out, runner)

    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    compiled(x, ids, w, out)  # trace, compile and warm up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        compiled(x, ids, w, out)
    eager = torch.empty_like(out)
    for i in range(20):
        x.copy_(make_hidden_states(m, shape, seed=200 + i, device="cuda"))
        new_ids, new_w = make_routing(m, weights.num_experts, shape.top_k, seed=200 + i, skew=2.0 * (i % 2),
                                      device="cuda")
        ids.copy_(new_ids)
        w.copy_(new_w)
        out.fill_(float("nan"))
        graph.replay()
        runner(x, ids, w, out=eager)
        assert torch.equal(out, eager), f"replay {i} differs from eager"
