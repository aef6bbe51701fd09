"""doctor_report: versions, generation, promotion state and the per-model verdict."""

import json

import pytest

from trtllm_b12x.trtllm import backend, doctor_report, enable
from trtllm_b12x.trtllm.doctor import model_facts


@pytest.fixture(autouse=True)
def kernel_available():
    backend.set_decode_kernel_factory(lambda runner: None)  # importable; per-layer availability is separate


def _verdict(lines):
    (line,) = [ln for ln in lines if ln.startswith("moe_backend CUTLASS:")]
    return line


def test_without_tensorrt_llm(monkeypatch):
    import trtllm_b12x.trtllm.doctor as doctor

    monkeypatch.setattr(doctor, "package_version", lambda dist: "not installed")
    real = doctor.importlib.util.find_spec
    monkeypatch.setattr(doctor.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorrt_llm" else real(name, *a))
    lines = doctor_report("nemotron-3-super", sm=120)
    assert lines[:3] == ["TensorRT-LLM: not installed", "TensorRT-LLM API generation: - (not installed)",
                         "promotion: off"]
    assert "model: nemotron-3-super: quant NVFP4, dtype bfloat16, activation Relu2" in lines
    assert _verdict(lines) == ("moe_backend CUTLASS: B12xCutlassFusedMoE (b12x decode below 64 tokens, "
                               "CUTLASS prefill); memory: views of the CUTLASS tensors + the decode kernel's copy "
                               "(1.59 GB per MoE layer)")


@pytest.mark.parametrize("sm, expect", [
    (100, "stock CutlassFusedMoE (SM_UNSUPPORTED: SM100 is not supported"),
    (90, "B12xCutlassFusedMoE"),  # a preset on SM90 runs as W4A16_NVFP4
])
def test_preset_verdict_follows_the_sm(sm, expect):
    assert expect in _verdict(doctor_report("qwen3-30b-a3b", sm=sm, import_trtllm=False))


def test_attention_dp_is_reported():
    line = _verdict(doctor_report("qwen3-30b-a3b", sm=120, attention_dp=True, import_trtllm=False))
    assert "TOPOLOGY_UNSUPPORTED: attention DP over several ranks is not supported" in line


def test_config_directory_with_modelopt_quant_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "qwen3_moe", "hidden_act": "silu", "torch_dtype": "bfloat16"}))
    (tmp_path / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "NVFP4"}}))
    name, facts, _ = model_facts(str(tmp_path), sm=121)
    assert (facts.quant, facts.dtype, facts.activation, facts.gptoss_style) == ("NVFP4", "bfloat16", "Swiglu", False)
    assert "B12xCutlassFusedMoE" in _verdict(doctor_report(str(tmp_path), sm=121, import_trtllm=False))


def test_config_dict_verdicts():
    gptoss = {"model_type": "gpt_oss", "hidden_act": "silu", "torch_dtype": "bfloat16",
              "quantization_config": {"quant_method": "modelopt", "quant_algo": "NVFP4"}}
    assert "ACTIVATION_UNSUPPORTED: gpt-oss style SwiGLU" in _verdict(doctor_report(gptoss, sm=120, import_trtllm=False))
    ct = {"hidden_act": "silu", "torch_dtype": "bfloat16", "quantization_config": {"quant_method": "compressed-tensors"}}
    assert "QUANT_UNSUPPORTED: quant_algo compressed-tensors on SM120" in _verdict(
        doctor_report(ct, sm=120, import_trtllm=False))


def test_unknown_sm_is_said(monkeypatch):
    import trtllm_b12x.trtllm.doctor as doctor

    monkeypatch.setattr(doctor, "_device_sm", lambda: None)
    lines = doctor_report("deepseek-v3", import_trtllm=False)
    assert "not evaluated: the SM (no GPU here; pass sm=120, 121 or 90)" in lines


def test_bad_model_names_the_choices():
    with pytest.raises(ValueError, match=r"model 'nope' is neither a preset \(qwen3-30b-a3b, .*\) nor a config.json"):
        doctor_report("nope", sm=120, import_trtllm=False)


@pytest.mark.parametrize("gen, pkg", [("G1", "tensorrt_llm._torch.modules.fused_moe"),
                                      ("G2", "tensorrt_llm._torch.moe.fused_moe")])
def test_with_tensorrt_llm_installed(fakes_on_path, monkeypatch, gen, pkg):
    import trtllm_b12x.trtllm.doctor as doctor

    monkeypatch.setattr(doctor, "package_version", lambda dist: "1.2.1")
    if gen == "G1":  # only G1 importable, as in a 1.2.x container
        monkeypatch.setattr(doctor._hook, "PACKAGES", ("tensorrt_llm._torch.modules.fused_moe",))
    lines = doctor_report("qwen3-30b-a3b", sm=120)
    assert lines[0] == "TensorRT-LLM: 1.2.1"
    assert lines[1] == f"TensorRT-LLM API generation: {gen} ({pkg})"
    enable(package=pkg)
    assert f"promotion: active ({gen}, {pkg})" in doctor_report(import_trtllm=False)


def test_sm90_names_the_marlin_family_and_its_memory_cost():
    lines = doctor_report("qwen3-30b-a3b", sm=90, import_trtllm=False)
    (marlin,) = [ln for ln in lines if ln.startswith("moe_backend MARLIN:")]
    assert marlin.startswith("moe_backend MARLIN: B12xMarlinFusedMoE (b12x decode below 64 tokens, Marlin prefill)")
    assert "a copy of the expert weights" in marlin and "(0.34 GB per MoE layer)" in marlin
    assert not [ln for ln in doctor_report("qwen3-30b-a3b", sm=120, import_trtllm=False)
                if ln.startswith("moe_backend MARLIN")]
