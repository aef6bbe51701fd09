"""The promotion decision table, row by row: the pure decision, then each generation end to end
(G1: get_moe_cls + the constructed layer; G2: resolve_moe_impl's report + can_implement)."""

import importlib
import logging
from types import SimpleNamespace

import pytest
import torch

import trtllm_layers as tl
from trtllm_b12x.trtllm import backend, decide, enable
from trtllm_b12x.trtllm.decision import Facts, RuntimeFacts

OK = None
# id: (sm, quant, dtype, activation, layer/topology knobs, expected reason code or OK)
TABLE = {
    "sm120-nvfp4-swiglu": (120, "NVFP4", torch.bfloat16, "Swiglu", {}, OK),
    "sm121-nvfp4-relu2-fp16": (121, "NVFP4", torch.float16, "Relu2", {}, OK),
    "sm120-nvfp4-ep2": (120, "NVFP4", torch.bfloat16, "Swiglu", {"ep": (2, 1)}, OK),
    "sm120-nvfp4-tp2": (120, "NVFP4", torch.bfloat16, "Swiglu", {"tp": (2, 0)}, OK),
    "sm90-w4a16-swiglu": (90, "W4A16_NVFP4", torch.bfloat16, "Swiglu", {}, OK),
    "sm90-w4a16-relu2-ep2": (90, "W4A16_NVFP4", torch.bfloat16, "Relu2", {"ep": (2, 0)}, OK),
    "sm100-nvfp4": (100, "NVFP4", torch.bfloat16, "Swiglu", {}, "SM_UNSUPPORTED"),
    "sm89-w4a16": (89, "W4A16_NVFP4", torch.bfloat16, "Swiglu", {}, "SM_UNSUPPORTED"),
    "sm90-nvfp4": (90, "NVFP4", torch.bfloat16, "Swiglu", {}, "QUANT_UNSUPPORTED"),
    "sm120-w4a16": (120, "W4A16_NVFP4", torch.bfloat16, "Swiglu", {}, "QUANT_UNSUPPORTED"),
    "sm120-fp8": (120, "FP8", torch.bfloat16, "Swiglu", {}, "QUANT_UNSUPPORTED"),
    "sm120-unquantized": (120, None, torch.bfloat16, "Swiglu", {}, "QUANT_UNSUPPORTED"),
    "sm120-fp32": (120, "NVFP4", torch.float32, "Swiglu", {}, "DTYPE_UNSUPPORTED"),
    "sm120-geglu": (120, "NVFP4", torch.bfloat16, "Geglu", {}, "ACTIVATION_UNSUPPORTED"),
    "sm120-expert-bias": (120, "NVFP4", torch.bfloat16, "Swiglu", {"layer_kw": {"bias": True}}, "ACTIVATION_UNSUPPORTED"),
    "sm120-attention-dp": (120, "NVFP4", torch.bfloat16, "Swiglu", {"attention_dp": True, "tp_size": 2},
                           "TOPOLOGY_UNSUPPORTED"),
    "sm120-eplb": (120, "NVFP4", torch.bfloat16, "Swiglu", {"eplb": SimpleNamespace(num_slots=6)}, "EPLB_UNSUPPORTED"),
}


def _facts(sm, quant, dtype, activation, knobs):
    return Facts(sm=sm, quant=quant or "none", dtype=str(dtype).removeprefix("torch."), activation=activation,
                 bias=knobs.get("layer_kw", {}).get("bias", False), ep_size=knobs.get("ep", (1, 0))[0],
                 attention_dp=knobs.get("attention_dp", False), eplb=knobs.get("eplb") is not None)


@pytest.mark.parametrize("row", TABLE, ids=list(TABLE))
def test_decision(row):
    sm, quant, dtype, act, knobs, expected = TABLE[row]
    v = decide(_facts(sm, quant, dtype, act, knobs), RuntimeFacts())
    assert v.ok == (expected is OK) and v.code == expected, v
    if not v.ok:
        assert "supported" in v.detail  # every rejection names what is supported


@pytest.mark.parametrize("row", TABLE, ids=list(TABLE))
def test_generation(trtllm, generation, row, caplog):
    sm, quant, dtype, act, knobs, expected = TABLE[row]
    importlib.import_module("tensorrt_llm._utils").SM = sm
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    ours = enable().backend
    knobs = dict(knobs)
    layer_kw = knobs.pop("layer_kw", None)
    cfg = tl.model_config(quant=quant, dtype=dtype, **knobs)
    act_type = tl.mod("tensorrt_llm._torch.utils").ActivationType[act]
    if generation == "G2":
        res = tl.mod(trtllm.__name__ + ".moe_resolution")
        report = res.resolve_moe_impl(cfg, num_experts=6, dtype=dtype, activation_type=act_type,
                                      bias=bool((layer_kw or {}).get("bias")))
        assert (report.winner == ours.__name__) == (expected is OK), report
        if expected is not OK:
            (mine,) = [r for r in report.rejected if r.legacy_backend == ours.__name__]
            assert mine.reason.name == expected and mine.detail.startswith(ours.__name__ + ": ")
            assert ours.can_implement(report.problem, report.deployment).reject_reason.name == expected
        return
    # G1: selection sees quant, dtype, SM and the mapping; the constructed layer sees the rest
    caplog.set_level(logging.INFO, logger="trtllm_b12x.trtllm")
    be, _ = tl.make_layer("G1", tl.GATED, activation=act, dtype=dtype, layer_kw=layer_kw, quant=quant, **knobs)
    decodes = type(be) is ours and be.b12x_reason is None
    assert decodes == (expected is OK), getattr(be, "b12x_reason", type(be))
    if expected is not OK:
        said = be.b12x_reason if type(be) is ours else " ".join(r.getMessage() for r in caplog.records)
        assert expected in said
        ok, why = ours.can_implement(tl.mod("tensorrt_llm.models.modeling_utils").QuantAlgo[quant] if quant else None,
                                     dtype)
        assert ok == (expected not in ("SM_UNSUPPORTED", "QUANT_UNSUPPORTED", "DTYPE_UNSUPPORTED"))
        assert ok or why.startswith(f"{ours.__name__}: {expected}: ")


def test_unknown_facts_abstain():
    v = decide(Facts(sm=120))
    assert v.ok and "quant" in v.unknown and "decode kernel" in v.unknown
    assert decide(Facts(quant="NVFP4")).ok  # SM unknown: NVFP4 is a supported algo somewhere


@pytest.mark.parametrize("facts, code, words", [
    (Facts(cluster_size=2), "TOPOLOGY_UNSUPPORTED", "MoE cluster size 2 is not supported; supported: 1"),
    (Facts(router_weight_on_input=True), "TOPOLOGY_UNSUPPORTED", "apply_router_weight_on_input is not supported"),
    (Facts(gptoss_style=True), "ACTIVATION_UNSUPPORTED", "gpt-oss style SwiGLU is not supported"),
    (Facts(lora=True), "LORA_UNSUPPORTED", "routed-expert LoRA is not supported"),
    (Facts(ep_size=0), "TOPOLOGY_UNSUPPORTED", "ep_size 0 is not valid"),
    (Facts(quant="NVFP4_AWQ", sm=121), "QUANT_UNSUPPORTED", "quant_algo NVFP4_AWQ on SM121 is not supported"),
])
def test_other_rejections(facts, code, words):
    v = decide(facts, RuntimeFacts())
    assert v.code == code and words in v.detail


def test_missing_kernel_is_the_last_gate():
    runtime = RuntimeFacts(kernel_missing="nvidia-cutlass-dsl is not importable (ModuleNotFoundError: cutlass)")
    v = decide(Facts(sm=120, quant="NVFP4"), runtime)
    assert v.code == "DEP_MISSING" and "nvidia-cutlass-dsl is not importable" in v.detail
    assert decide(Facts(sm=100), runtime).code == "SM_UNSUPPORTED"  # a hardware reason wins


# moe_backend families beyond CUTLASS (G2c): (family, sm, quant, dtype, ep, FlashInfer, the winner)
FAMILY_TABLE = {
    "cutedsl-upstream-b12x": ("CUTEDSL", 120, "NVFP4", torch.bfloat16, 1, True, "CuteDslB12xFusedMoE"),
    "cutedsl-no-flashinfer": ("CUTEDSL", 120, "NVFP4", torch.bfloat16, 1, False, "B12xCutlassFusedMoE"),
    "cutedsl-ep2": ("CUTEDSL", 121, "NVFP4", torch.bfloat16, 2, True, "B12xCutlassFusedMoE"),
    "marlin-sm90-nvfp4": ("MARLIN", 90, "NVFP4", torch.bfloat16, 1, False, "B12xMarlinFusedMoE"),
    "marlin-sm90-w4a16": ("MARLIN", 90, "W4A16_NVFP4", torch.bfloat16, 2, False, "B12xMarlinFusedMoE"),
    "marlin-sm90-fp16": ("MARLIN", 90, "NVFP4", torch.float16, 1, False, None),  # Marlin prefill: bf16 only
    "marlin-sm120": ("MARLIN", 120, "NVFP4", torch.bfloat16, 1, False, "CutlassFusedMoE"),  # Marlin: SM89-99
    "cutlass-sm90-nvfp4": ("CUTLASS", 90, "NVFP4", torch.bfloat16, 1, False, None),  # no candidate at all
}


@pytest.mark.parametrize("row", FAMILY_TABLE, ids=list(FAMILY_TABLE))
def test_family_rows(g2, row):
    family, sm, quant, dtype, ep, flashinfer, winner = FAMILY_TABLE[row]
    importlib.import_module("tensorrt_llm._utils").SM = sm
    env = importlib.import_module(g2.__name__ + ".impl_environment")
    env.DEPS = ("flashinfer",) if flashinfer else ()
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    enable()
    try:
        res = importlib.import_module(g2.__name__ + ".moe_resolution")
        mc = tl.model_config(quant=quant, dtype=dtype, backend=family, ep=(ep, 0))
        report = res.resolve_moe_impl(mc, num_experts=6, dtype=dtype)
    finally:
        env.DEPS = ()
    assert report.winner == winner, report
    ours = "B12xMarlinFusedMoE" if family == "MARLIN" else "B12xCutlassFusedMoE"
    asked = {r.legacy_backend for r in report.rejected} | set(report.eligible)
    if family != "CUTLASS":
        assert ours in asked, report  # a candidate of that family: it answered
    if winner != ours and family != "CUTLASS" and ours not in report.eligible:
        assert any(r.legacy_backend == ours and r.detail for r in report.rejected), report  # said why not
