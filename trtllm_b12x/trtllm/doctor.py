"""What ``trtllm-b12x doctor`` reports about the TensorRT-LLM integration.

:func:`doctor_report` answers, for a model (HF ``config.json`` path or directory, a config
dict, or a preset of :mod:`trtllm_b12x.models`): which TensorRT-LLM and API generation is
installed, whether promotion is active, and whether ``moe_backend: CUTLASS`` would run our
backend for that model here, with the reason; the verdict comes from the same
:func:`decide` that ``can_implement`` uses.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import site
import sys
from pathlib import Path
from typing import Mapping

from .._env import package_version
from ..models import PRESETS
from . import _hook
from .decision import Facts, decide, dtype_name

# HF ``hidden_act`` of the expert MLP -> TensorRT-LLM ActivationType name
_ACTS = {"silu": "Swiglu", "swiglu": "Swiglu", "relu2": "Relu2"}


def _load_config(model) -> tuple[str, dict]:
    if isinstance(model, Mapping):
        return str(model.get("_name_or_path", "config")), dict(model)
    path = Path(model)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ValueError(f"model {model!r} is neither a preset ({', '.join(PRESETS)}) nor a config.json file or directory")
    cfg = json.loads(path.read_text())
    hf_quant = path.parent / "hf_quant_config.json"  # ModelOpt writes the algo here
    if hf_quant.is_file():
        cfg.setdefault("hf_quant_config", json.loads(hf_quant.read_text()))
    return str(path), cfg


def _quant(cfg: dict) -> str:
    q = cfg.get("quantization_config") or {}
    algo = (q.get("quant_algo") or (cfg.get("hf_quant_config") or {}).get("quantization", {}).get("quant_algo")
            or cfg.get("quant_algo"))
    if algo:
        return str(algo).upper()
    return str(q.get("quant_method", "none")) if q else "none"


def model_facts(model, *, sm: int | None = None, ep_size: int = 1, attention_dp: bool = False) -> tuple[str, Facts, list[str]]:
    """``(name, facts, assumptions)`` for a preset name, config path or config dict."""
    if isinstance(model, str) and model in PRESETS:
        shape = PRESETS[model]
        facts = Facts(sm=sm, quant="W4A16_NVFP4" if sm == 90 else "NVFP4", dtype="bfloat16",
                      activation=_ACTS[shape.activation],
                      gptoss_style=False, bias=False, ep_size=ep_size, attention_dp=attention_dp)
        assumed = [f"preset {model} ({shape.checkpoint}): NVFP4 checkpoint, run as "
                   f"{facts.quant}, bfloat16 activations"]
        return model, facts, assumed
    name, cfg = _load_config(model)
    act = str(cfg.get("mlp_hidden_act") or cfg.get("hidden_act") or "silu").lower()
    facts = Facts(
        sm=sm, quant=_quant(cfg), dtype=dtype_name(cfg.get("torch_dtype") or cfg.get("dtype")),
        activation=_ACTS.get(act, act), gptoss_style=cfg.get("model_type") == "gpt_oss" or "swiglu_limit" in cfg,
        ep_size=ep_size, attention_dp=attention_dp,
    )
    return name, facts, []


def _layer_bytes(model) -> str:
    """`` (N GB per MoE layer)`` for a preset (its expert weights at full expert count), else ''."""
    if isinstance(model, str) and model in PRESETS:
        shape = PRESETS[model]
        return f" ({shape.num_experts * shape.bytes_per_expert / 1e9:.2f} GB per MoE layer)"
    return ""


def _device_sm() -> int | None:
    from ..arch import device_capability

    cc = device_capability()
    return None if cc is None else cc[0] * 10 + cc[1]


def _generation() -> str:
    if importlib.util.find_spec("tensorrt_llm") is None:
        return "TensorRT-LLM API generation: - (not installed)"
    from .generation import detect

    reasons = []
    for pkg in _hook.PACKAGES:
        try:
            importlib.import_module(pkg)
        except Exception as exc:  # an absent path is expected; any other failure is the answer
            reasons.append(f"{pkg}: {type(exc).__name__}: {exc}")
            continue
        gen = detect(pkg)
        return f"TensorRT-LLM API generation: {gen if isinstance(gen, str) else gen.name + ' (' + pkg + ')'}"
    return f"TensorRT-LLM API generation: unknown ({'; '.join(reasons)})"


def _hook_files() -> list[str]:
    dirs = list(site.getsitepackages()) + [site.getusersitepackages()] + sys.path
    return sorted({os.path.join(d, "trtllm_b12x_hook.pth") for d in dirs
                   if os.path.isfile(os.path.join(d, "trtllm_b12x_hook.pth"))})


def doctor_report(model=None, *, sm: int | None = None, ep_size: int = 1, attention_dp: bool = False,
                  import_trtllm: bool = True) -> list[str]:
    """Report lines (plain text). ``sm`` overrides the detected GPU (e.g. 120 to ask about an
    RTX PRO 6000 from another machine); ``import_trtllm=False`` skips importing TensorRT-LLM."""
    from ..moe import DECODE_MAX_TOKENS
    from .backend import MARLIN_NAME, NAME, runtime_facts
    from .promote import status

    lines = [f"TensorRT-LLM: {package_version('tensorrt_llm')}"]
    if import_trtllm:
        lines.append(_generation())
    lines.append(f"promotion: {status()}")
    hooks = _hook_files()
    lines.append(f"startup hook: {', '.join(hooks) if hooks else 'not installed'}"
                 + (f" (opted out: {_hook.ENV_DISABLE} is set)" if _hook.disabled() else ""))
    runtime = runtime_facts()
    lines.append("b12x decode kernel: " + ("importable (each layer compiles it for its shapes after loading)"
                                           if runtime.kernel_missing is None else runtime.kernel_missing))
    if model is None:
        return lines
    sm = sm if sm is not None else _device_sm()
    name, facts, assumed = model_facts(model, sm=sm, ep_size=ep_size, attention_dp=attention_dp)
    verdict = decide(facts, runtime)
    lines += [f"model: {name}: quant {facts.quant}, dtype {facts.dtype}, activation {facts.activation}",
              *assumed]
    per_layer = _layer_bytes(model)
    if verdict.ok:
        lines.append(f"moe_backend CUTLASS: {NAME} (b12x decode below {DECODE_MAX_TOKENS} tokens, CUTLASS prefill); "
                     "memory: views of the CUTLASS tensors + the decode kernel's copy" + per_layer)
    else:
        lines.append(f"moe_backend CUTLASS: stock CutlassFusedMoE ({verdict})")
    if sm == 90:  # Hopper: TensorRT-LLM serves NVFP4 with Marlin
        marlin = decide(dataclasses.replace(facts, quant="NVFP4" if facts.quant == "W4A16_NVFP4" else facts.quant,
                                            family="MARLIN"), runtime)
        if marlin.ok:
            lines.append(f"moe_backend MARLIN: {MARLIN_NAME} (b12x decode below {DECODE_MAX_TOKENS} tokens, Marlin "
                         "prefill); memory: a copy of the expert weights next to Marlin's repacked ones"
                         f"{per_layer}, only while it leaves 10% of the GPU free (TRTLLM_B12X_MARLIN_COPY=off: none)")
        else:
            lines.append(f"moe_backend MARLIN: stock MarlinFusedMoE ({marlin})")
    if "sm" in verdict.unknown:
        lines.append("not evaluated: the SM (no GPU here; pass sm=120, 121 or 90)")
    return lines
