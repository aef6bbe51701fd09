"""Decode/prefill routing of the promoted backend, end to end through the double's factory."""

import pytest
import torch

import trtllm_layers as tl
from trtllm_b12x.moe import DECODE_MAX_TOKENS
from trtllm_b12x.reference import moe_reference, relative_error
from trtllm_b12x.trtllm import backend, enable

# bf16 output of the float32 oracle / of the test-side CUTLASS math
TOL = 1e-2


@pytest.fixture
def promoted(trtllm):
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    tl.StandInDecode.instances.clear()
    assert enable().state == "active"
    return trtllm


def _ref(x, ids, w, weights, shape, offset=0):
    return moe_reference(x, ids, w, weights, shape.default_activation(), local_expert_offset=offset)


@pytest.mark.parametrize("shape", [tl.GATED, tl.RELU2], ids=["swiglu", "relu2"])
def test_threshold_63_decodes_with_b12x_64_runs_cutlass(promoted, generation, shape):
    weights = tl.weights_for(shape)
    be, layer = tl.loaded_layer(generation, shape, weights)
    assert type(be).__name__ == "B12xCutlassFusedMoE" and be.b12x_reason is None
    kernel = tl.StandInDecode.instances[-1]

    out, x, ids, w = tl.run(layer, shape, DECODE_MAX_TOKENS - 1)
    # [1]: the load-time launch check; then the batch: no CUTLASS quantize, no CUTLASS GEMM
    assert kernel.calls == [1, DECODE_MAX_TOKENS - 1] and be.calls == []
    assert relative_error(out.float(), _ref(x, ids, w, weights, shape)) < TOL

    out, x, ids, w = tl.run(layer, shape, DECODE_MAX_TOKENS, seed=1)
    assert kernel.calls == [1, DECODE_MAX_TOKENS - 1]
    assert be.calls == ["cutlass.quantize_input", "cutlass.run_moe"]  # the inherited path, unchanged
    assert relative_error(out.float(), _ref(x, ids, w, weights, shape)) < TOL


def test_w4a16_on_sm90(promoted, generation):
    import importlib

    importlib.import_module("tensorrt_llm._utils").SM = 90
    weights = tl.weights_for(tl.GATED)
    be, layer = tl.loaded_layer(generation, tl.GATED, weights, quant="W4A16_NVFP4")
    assert be.b12x_reason is None and type(be.quant_method).__name__ == "B12xW4A16NVFP4CutlassFusedMoEMethod"
    out, x, ids, w = tl.run(layer, tl.GATED, 8)
    assert tl.StandInDecode.instances[-1].calls == [1, 8] and be.calls == []
    assert relative_error(out.float(), _ref(x, ids, w, weights, tl.GATED)) < TOL
    out, x, ids, w = tl.run(layer, tl.GATED, 80)
    assert be.calls == ["cutlass.quantize_input", "cutlass.run_moe"]
    assert relative_error(out.float(), _ref(x, ids, w, weights, tl.GATED)) < TOL


@pytest.mark.parametrize("ep, tp", [(2, 1), (1, 2), (2, 2)])
def test_ranks_sum_to_the_full_layer(promoted, generation, ep, tp):
    """EP ranks see global expert ids (offset by their slot_start), TP ranks a shard of I;
    their decode outputs add up to the layer, as TensorRT-LLM's reduction expects."""
    shape = tl.MoEShape("t-par", 128, 128, 4, 2, "swiglu", "synthetic")
    weights = tl.weights_for(shape, seed=2)
    total = None
    for er in range(ep):
        for tr in range(tp):
            be, layer = tl.loaded_layer(generation, shape, weights, ep=(ep, er), tp=(tp, tr))
            assert be.b12x_reason is None and be._b12x_runner.parallel.expert_offset == er * (4 // ep)
            out, x, ids, w = tl.run(layer, shape, 5, seed=3)
            assert be.calls == []
            total = out.float() if total is None else total + out.float()
    assert relative_error(total, _ref(x, ids, w, weights, shape)) < TOL


def _refusal(generation, be, caplog):
    """Why b12x does not decode this layer. G1 selection cannot see the activation, so the
    promoted class is built and refuses per layer; G2 resolution sees it and picks stock CUTLASS."""
    if generation == "G1":
        assert type(be).__name__ == "B12xCutlassFusedMoE"
        return be.b12x_reason
    assert type(be).__name__ == "CutlassFusedMoE"
    (msg,) = [r.getMessage() for r in caplog.records if "runs CutlassFusedMoE" in r.getMessage()]
    return msg.split("B12xCutlassFusedMoE: ", 1)[1]


def test_unsupported_activation_keeps_the_layer_on_cutlass(promoted, generation, caplog):
    be, _ = tl.make_layer(generation, tl.GATED, activation="Geglu")
    assert _refusal(generation, be, caplog).startswith("ACTIVATION_UNSUPPORTED: activation Geglu is not supported"
                                                       if generation == "G1" else "activation Geglu is not supported")


def test_a_per_layer_swiglu_limit_is_decoded_with_it(promoted, generation):
    """One SwiGLU limit for every expert (G1: ``swiglu_limit``, G2c: ``act_clamp`` from the
    activation carrier): b12x decodes with that constant."""
    from trtllm_b12x.activation import Activation

    weights = tl.weights_for(tl.GATED)
    be, layer = tl.loaded_layer(generation, tl.GATED, weights, layer_kw={"swiglu_limit": torch.full((6,), 0.25)})
    assert be.b12x_reason is None and be._b12x_runner.activation == Activation("swiglu", limit=0.25)
    out, x, ids, w = tl.run(layer, tl.GATED, 5)
    ref = moe_reference(x, ids, w, weights, Activation("swiglu", limit=0.25))
    assert be.calls == [] and relative_error(out.float(), ref) < TOL
    assert relative_error(out.float(), _ref(x, ids, w, weights, tl.GATED)) > 10 * TOL  # the limit mattered


def test_per_expert_swiglu_constants_keep_the_layer_on_cutlass(promoted, generation, caplog):
    be, _ = tl.make_layer(generation, tl.GATED, layer_kw={"swiglu_limit": torch.arange(1.0, 7.0)})
    assert type(be).__name__ == "B12xCutlassFusedMoE"  # selection sees names, not values: the layer decides
    assert "SwiGLU alpha/beta/limit that differ across experts" in be.b12x_reason


def test_no_kernel_for_this_tier_keeps_cutlass_with_the_reason(trtllm, generation):
    backend.set_decode_kernel_factory(lambda runner: None)
    enable()
    weights = tl.weights_for(tl.GATED)
    be, layer = tl.loaded_layer(generation, tl.GATED, weights)
    assert be.b12x_reason == "the decode kernel factory has no kernel for this layer here"
    tl.run(layer, tl.GATED, 3)
    assert be.calls == ["cutlass.quantize_input", "cutlass.run_moe"]


def test_failing_kernel_setup_keeps_cutlass_with_the_reason(trtllm, generation):
    def broken(runner):
        raise RuntimeError("ptxas: sm_120a not supported")

    backend.set_decode_kernel_factory(broken)
    enable()
    be, layer = tl.loaded_layer(generation, tl.GATED, tl.weights_for(tl.GATED))
    assert be.b12x_reason == "decode kernel setup failed (RuntimeError: ptxas: sm_120a not supported)"
    tl.run(layer, tl.GATED, 2)
    assert be.calls[-1] == "cutlass.run_moe"


def test_compile_probe_runs_once_after_loading(trtllm, generation):
    seen = []

    class Compiling(tl.StandInDecode):
        def compile_all(self, dtype, top_k):
            seen.append((dtype, top_k))
            if dtype == "float16":
                raise RuntimeError("no fp16 variant")

    backend.set_decode_kernel_factory(Compiling)
    enable()
    be, _ = tl.loaded_layer(generation, tl.GATED, tl.weights_for(tl.GATED))
    assert seen == [("bfloat16", 2)] and be.b12x_reason is None
    be, _ = tl.loaded_layer(generation, tl.GATED, tl.weights_for(tl.GATED), dtype=torch.float16)
    assert be.b12x_reason == "decode kernels failed to compile or check (float16, top_k=2): no fp16 variant"


def test_awq_pre_quant_scale_keeps_cutlass(promoted, generation):
    """G1 selection sees NVFP4_AWQ; G2 canonicalizes it to NVFP4, so the layer refuses once
    the pre-quant scale is loaded."""
    be, _ = tl.loaded_layer(generation, tl.GATED, tl.weights_for(tl.GATED), quant="NVFP4_AWQ")
    if generation == "G1":
        assert type(be).__name__ == "CutlassFusedMoE"
    else:
        assert be.b12x_reason == "NVFP4_AWQ pre-quant activation scales are not supported by the decode kernel"


def test_reload_rebuilds_the_bundle(promoted, generation):
    w0, w1 = tl.weights_for(tl.GATED, seed=0), tl.weights_for(tl.GATED, seed=1)
    be, layer = tl.loaded_layer(generation, tl.GATED, w0)
    first = be._b12x_runner
    layer.load_weights([tl.checkpoint_from_bundle(w1)])
    layer.post_load_weights()
    assert be._b12x_runner is not first and torch.equal(be._b12x_runner.weights.w13, w1.w13)
    out, x, ids, w = tl.run(layer, tl.GATED, 4)
    assert relative_error(out.float(), _ref(x, ids, w, w1, tl.GATED)) < TOL


def test_caller_output_buffer_is_written_in_place(g2):
    """G2's comm plan may hand ``run_moe`` an output buffer."""
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    enable()
    weights = tl.weights_for(tl.GATED)
    be, layer = tl.loaded_layer("G2", tl.GATED, weights)
    buf = torch.full((3, 128), float("nan"), dtype=torch.bfloat16)
    logits = torch.randn(3, 6)
    x = torch.randn(3, 128).to(torch.bfloat16)
    out = layer(x, logits, moe_output=buf)
    assert out is buf and bool(torch.isfinite(buf).all())


def test_stock_path_is_untouched_when_not_promoted(trtllm, generation):
    """Without enable(): the double's own CutlassFusedMoE runs everything."""
    weights = tl.weights_for(tl.GATED)
    be, layer = tl.loaded_layer(generation, tl.GATED, weights)
    assert type(be).__name__ == "CutlassFusedMoE"
    out, x, ids, w = tl.run(layer, tl.GATED, 3)
    assert be.calls == ["cutlass.quantize_input", "cutlass.run_moe"]
    assert relative_error(out.float(), _ref(x, ids, w, weights, tl.GATED)) < TOL


def test_alltoall_on_the_decode_path_is_an_error_not_a_wrong_answer(g1):
    """Promotion excludes attention DP, so alltoall never reaches decode; if it ever does,
    the ids are local and the answer would be wrong: raise instead."""
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    enable()
    be, layer = tl.loaded_layer("G1", tl.GATED, tl.weights_for(tl.GATED))
    be.enable_alltoall = True
    with pytest.raises(RuntimeError, match=r"enable_alltoall=True.*supported: no alltoall"):
        tl.run(layer, tl.GATED, 3)


def _stock_with_one_line(generation, be, layer, caplog, reason_start):
    assert be.b12x_reason.startswith(reason_start), be.b12x_reason
    lines = [r.getMessage() for r in caplog.records if "decode stays on CUTLASS" in r.getMessage()]
    assert len(lines) == 1 and reason_start in lines[0]
    tl.run(layer, tl.GATED, 3)
    assert be.calls == ["cutlass.quantize_input", "cutlass.run_moe"]


class _LaunchFails(tl.StandInDecode):
    def __call__(self, x, ids, w, out, workspace=None):
        super().__call__(x, ids, w, out)
        raise RuntimeError("CUDA error: too many resources requested for launch")


class _ReturnsNan(tl.StandInDecode):
    def __call__(self, x, ids, w, out, workspace=None):
        super().__call__(x, ids, w, out)
        out.fill_(float("nan"))


class _CompileFails(tl.StandInDecode):
    def compile_all(self, dtype, top_k):
        raise RuntimeError("ptxas fatal: Unresolved extern function")


@pytest.mark.parametrize("kernel, reason, launched", [
    (_LaunchFails, "first decode launch failed (RuntimeError: CUDA error", [1]),
    (_ReturnsNan, "first decode launch returned non-finite values", [1]),
    (_CompileFails, "decode kernels failed to compile or check (bfloat16, top_k=2): ptxas fatal", []),
], ids=["launch-raises", "launch-nan", "compile-raises"])
def test_a_failing_kernel_leaves_the_layer_stock_with_one_line(trtllm, generation, caplog, kernel, reason, launched):
    backend.set_decode_kernel_factory(kernel)
    enable()
    with caplog.at_level("WARNING"):
        be, layer = tl.loaded_layer(generation, tl.GATED, tl.weights_for(tl.GATED))
    _stock_with_one_line(generation, be, layer, caplog, reason)
    assert tl.StandInDecode.instances[-1].calls == launched


@pytest.mark.compile
def test_a_failing_sm120_self_check_leaves_the_layer_stock(trtllm, generation, caplog, monkeypatch, tmp_path):
    """The real SM120 host class, compiled for sm_120a; its launch is replaced (no SM120 GPU
    here) by one that is 10 % off, so the first-use self-check must refuse it."""
    pytest.importorskip("cutlass")
    from trtllm_b12x.arch import get_target
    from trtllm_b12x.kernels.cache import KernelCache
    from trtllm_b12x.kernels.decode_model import decode_sm120_model
    from trtllm_b12x.kernels.moe_decode_sm120 import FusedDecodeSm120

    launches = []

    def off_by_ten_percent(self, x, ids, rw, out, workspace=None):
        launches.append(x.shape[0])
        out.copy_(1.1 * decode_sm120_model(self, x, ids, rw))

    monkeypatch.setattr(FusedDecodeSm120, "__call__", off_by_ten_percent)
    cache = KernelCache(root=tmp_path, use_disk=False)
    backend.set_decode_kernel_factory(lambda r: FusedDecodeSm120(r, target=get_target("sm_120a"), cache=cache))
    enable()
    with caplog.at_level("WARNING"):
        be, layer = tl.loaded_layer(generation, tl.GATED, tl.weights_for(tl.GATED))
    _stock_with_one_line(generation, be, layer, caplog, "decode kernels failed to compile or check (bfloat16, top_k=2): "
                                                        "SM120 decode self-check failed")
    assert launches == [1]  # the self-check ran the (replaced) kernel once


def _reachable_tensors(obj, depth=5, seen=None):
    """Every tensor reachable from ``obj`` through attributes, dataclass fields and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth < 0:
        return []
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type) and type(obj).__module__.startswith(("trtllm_b12x", "trtllm_layers", "test_")):
        items = list(vars(obj).values())
    else:
        return []
    return [t for it in items for t in _reachable_tensors(it, depth - 1, seen)]


@pytest.mark.parametrize("quant", ["NVFP4", "W4A16_NVFP4"])
def test_the_promoted_layer_holds_one_copy_of_its_weights(promoted, generation, caplog, quant):
    """The runner's bundle is views of the module's CUTLASS tensors; nothing reachable from the
    runner holds weight-sized storage of its own, and the layer reports what it does add."""
    import importlib

    if quant == "W4A16_NVFP4":
        importlib.import_module("tensorrt_llm._utils").SM = 90
    weights = tl.weights_for(tl.GATED)
    with caplog.at_level("INFO"):
        be, layer = tl.loaded_layer(generation, tl.GATED, weights, quant=quant)
    assert be.b12x_reason is None
    owners = {getattr(be, n).untyped_storage().data_ptr()
              for n in ("w3_w1_weight", "w3_w1_weight_scale", "w2_weight", "w2_weight_scale")}
    one_expert = weights.stored_bytes_per_expert
    held = _reachable_tensors(be._b12x_runner)
    assert len(held) >= 4
    own = [t for t in held if t.untyped_storage().data_ptr() not in owners]
    assert all(t.numel() * t.element_size() < one_expert for t in own), [tuple(t.shape) for t in own]
    assert be.b12x_extra_bytes == sum(t.numel() * t.element_size() for t in be._b12x_runner.weights.tensors().values()
                                      if t.untyped_storage().data_ptr() not in owners)
    assert be.b12x_extra_bytes < one_expert
    assert any("beyond its TensorRT-LLM tensors" in r.getMessage() and "views" in r.getMessage() for r in caplog.records)
