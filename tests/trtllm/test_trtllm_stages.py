"""The API stages the adapter cannot promote under are left stock, with the reason: G2a and
G2b (``create_moe`` wraps only its own classes: a promoted subclass would be built bare and
fail at its first forward; G2a's ``MoEProblem`` has no ``bias``) and the G3 fork (per-quant
leaf registry). On each, the model builds, loads and runs on stock CUTLASS."""

import importlib

import pytest

import trtllm_layers as tl
from trtllm_b12x.reference import moe_reference, relative_error
from trtllm_b12x.trtllm import backend, doctor_report, enable


@pytest.fixture(params=["G2a", "G2b", "G3"])
def stage(request, fakes_on_path):
    importlib.import_module("tensorrt_llm._stage").STAGE = request.param
    importlib.import_module("tensorrt_llm._utils").SM = 120
    importlib.import_module(tl.STAGE_PACKAGES[request.param])
    return request.param


@pytest.mark.parametrize("shape", [tl.GATED, tl.RELU2], ids=["swiglu", "relu2"])
def test_an_unsupported_stage_is_left_stock_and_runs(stage, shape, caplog):
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    with caplog.at_level("WARNING"):
        st = enable()
    assert st.state == "unsupported" and f"stage {stage}" in st.reason and "left untouched" in st.reason
    assert any("left untouched" in r.getMessage() for r in caplog.records)
    weights = tl.weights_for(shape)
    be, layer = tl.loaded_layer(stage, shape, weights)  # construction resolves through can_implement
    assert not type(be).__name__.startswith("B12x")
    for m in (3, 80):
        out, x, ids, w = tl.run(layer, shape, m)  # decode and prefill both on the stock path
        assert relative_error(out.float(), moe_reference(x, ids, w, weights, shape.default_activation())) < 1e-2
    assert be.calls.count("cutlass.run_moe") == 2


def test_the_doctor_names_the_stage(stage):
    lines = doctor_report()
    (gen,) = [line for line in lines if line.startswith("TensorRT-LLM API generation")]
    assert f"stage {stage}" in gen and "left untouched" in gen
