"""Which TensorRT-LLM MoE API generation is loaded, decided by signatures, not versions.

G1 (``tensorrt_llm._torch.modules.fused_moe``): selection by ``get_moe_cls(model_config,
override_quant_config)``; ``can_implement(quant_algo, dtype_activation, swiglu_gptoss_style)``;
``run_moe(x, token_selected_experts, token_final_scales, x_sf=None, ...)``.

G2 (``tensorrt_llm._torch.moe.fused_moe``): selection through ``moe_resolution``'s
``IMPL_PRIORITY`` / ``BACKEND_FAMILY`` tables; ``can_implement(p, d) -> MoEEligibility``;
``run_moe(ctx, *, workspace=None)``; quant methods build derived tensors in
``transform_weights``.

A package that matches neither (say, G2 signatures with G1 selection) is an unknown
generation: :func:`detect` returns the list of mismatches and nothing is patched.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Generation:
    name: str  # "G1" | "G2"
    package: ModuleType
    create_moe: ModuleType
    cutlass: type  # CutlassFusedMoE
    nvfp4_method: type  # NVFP4CutlassFusedMoEMethod
    w4a16_method: type | None  # W4A16NVFP4CutlassFusedMoEMethod, where it exists
    resolution: ModuleType | None = None  # G2 moe_resolution
    contract: ModuleType | None = None  # G2 impl_contract
    marlin: type | None = None  # G2 fused_moe_marlin.MarlinFusedMoE, where it exists (SM89-99)
    marlin_method: type | None = None  # its quant method (repacks the weights in transform_weights)


def _params(fn) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def _kwonly(fn) -> list[str]:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]
    except (TypeError, ValueError):
        return []


def _sub(pkg: str, name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"{pkg}.{name}")
    except ImportError:
        return None


def _common(pkg: str, miss: list[str]):
    create = _sub(pkg, "create_moe")
    cutlass_mod = _sub(pkg, "fused_moe_cutlass")
    quant = _sub(pkg, "quantization")
    cutlass = getattr(cutlass_mod, "CutlassFusedMoE", None)
    nvfp4 = getattr(quant, "NVFP4CutlassFusedMoEMethod", None)
    if create is None or _params(getattr(create, "create_moe_backend", None))[:1] != ["moe_cls"]:
        miss.append("create_moe.create_moe_backend(moe_cls, ...) not found")
    if not isinstance(cutlass, type):
        miss.append("fused_moe_cutlass.CutlassFusedMoE not found")
    if not isinstance(nvfp4, type):
        miss.append("quantization.NVFP4CutlassFusedMoEMethod not found")
    return create, cutlass, quant, nvfp4


def _check_g1(pkg: str):
    miss: list[str] = []
    create, cutlass, quant, nvfp4 = _common(pkg, miss)
    if _params(getattr(create, "get_moe_cls", None))[:2] != ["model_config", "override_quant_config"]:
        miss.append("create_moe.get_moe_cls(model_config, override_quant_config) not found")
    if cutlass is not None:
        if _params(getattr(cutlass, "can_implement", None))[:1] != ["quant_algo"]:
            miss.append(f"CutlassFusedMoE.can_implement{_sig(cutlass, 'can_implement')} is not (quant_algo, ...)")
        run = _params(getattr(cutlass, "run_moe", None))
        if run[1:4] != ["x", "token_selected_experts", "token_final_scales"] or "x_sf" not in run:
            miss.append(f"CutlassFusedMoE.run_moe{_sig(cutlass, 'run_moe')} is not (x, token_selected_experts, "
                        "token_final_scales, x_sf, ...)")
    if miss:
        return miss
    return Generation("G1", sys.modules[pkg], create, cutlass, nvfp4, getattr(quant, "W4A16NVFP4CutlassFusedMoEMethod", None))


def _check_g2(pkg: str):
    miss: list[str] = []
    create, cutlass, quant, nvfp4 = _common(pkg, miss)
    res = _sub(pkg, "moe_resolution")
    contract = _sub(pkg, "impl_contract")
    prio, family = getattr(res, "IMPL_PRIORITY", None), getattr(res, "BACKEND_FAMILY", None)
    if not isinstance(prio, tuple) or cutlass not in prio:
        miss.append("moe_resolution.IMPL_PRIORITY (a tuple holding CutlassFusedMoE) not found")
    if not isinstance(family, dict) or cutlass not in family.get("CUTLASS", ()):
        miss.append("moe_resolution.BACKEND_FAMILY['CUTLASS'] holding CutlassFusedMoE not found")
    if not callable(getattr(res, "resolve_moe_impl", None)):
        miss.append("moe_resolution.resolve_moe_impl not found")
    eligibility = getattr(contract, "MoEEligibility", None)
    if not (hasattr(eligibility, "ok") and hasattr(eligibility, "no") and hasattr(contract, "MoERejectReason")):
        miss.append("impl_contract.MoEEligibility.ok/no and MoERejectReason not found")
    if cutlass is not None:
        if _params(getattr(cutlass, "can_implement", None)) != ["p", "d"]:
            miss.append(f"CutlassFusedMoE.can_implement{_sig(cutlass, 'can_implement')} is not (p, d)")
        run = getattr(cutlass, "run_moe", None)
        if _params(run)[1:2] != ["ctx"] or "workspace" not in _kwonly(run):
            miss.append(f"CutlassFusedMoE.run_moe{_sig(cutlass, 'run_moe')} is not (ctx, *, workspace)")
    if nvfp4 is not None and not hasattr(nvfp4, "transform_weights"):
        miss.append("NVFP4CutlassFusedMoEMethod.transform_weights not found")
    if miss:
        return miss
    if (why := _g2_wrap_reason(pkg, create, cutlass)) is not None:
        return why
    marlin = getattr(_sub(pkg, "fused_moe_marlin"), "MarlinFusedMoE", None)
    marlin_method = getattr(quant, "NVFP4MarlinFusedMoEMethod", None)
    usable = (isinstance(marlin, type) and issubclass(marlin, cutlass) and isinstance(marlin_method, type)
              and marlin in prio and marlin in family.get("MARLIN", ()))
    return Generation("G2", sys.modules[pkg], create, cutlass, nvfp4,
                      getattr(quant, "W4A16NVFP4CutlassFusedMoEMethod", None), res, contract,
                      marlin=marlin if usable else None, marlin_method=marlin_method if usable else None)


class Unsupported(str):
    """A recognised stage the adapter leaves untouched (not a mismatch): the reason."""


def _g2_wrap_reason(pkg: str, create, cutlass) -> "Unsupported | None":
    """G2c wraps every ``impl_base.MoEImplBase`` subclass in ``ConfigurableMoE`` (``create_moe``
    imports that base for its rule); earlier stages wrap an exact tuple of their own classes."""
    base = getattr(_sub(pkg, "impl_base"), "MoEImplBase", None)
    if isinstance(base, type) and issubclass(cutlass, base) and getattr(create, "MoEImplBase", None) is base:
        return None
    stage = "G2a" if pkg.endswith("modules.fused_moe") else "G2b"
    return Unsupported(
        f"{pkg}: API stage {stage}: create_moe wraps only its own backend classes in ConfigurableMoE, so a promoted "
        "CutlassFusedMoE subclass would be built bare and fail at its first forward; TensorRT-LLM left untouched "
        "(supported: G1, and G2c where create_moe wraps every MoEImplBase subclass)")


def _g3_reason(pkg: str) -> "Unsupported | None":
    """The fork's leaf registry: a ``cutlass`` subpackage listing ``CUTLASS_LEAVES`` over an
    abstract ``CutlassFusedMoEBase`` (``CutlassFusedMoE`` survives only as its alias)."""
    base = getattr(_sub(pkg, "cutlass.base"), "CutlassFusedMoEBase", None)
    if not isinstance(base, type) or getattr(_sub(pkg, "cutlass"), "CUTLASS_LEAVES", None) is None:
        return None
    return Unsupported(
        f"{pkg}: per-quant leaf registry (cutlass.CUTLASS_LEAVES over CutlassFusedMoEBase, @register_moe_impl; "
        "stage G3): promotion under it is not supported yet; TensorRT-LLM left untouched")


def _sig(cls, name) -> str:
    try:
        return str(inspect.signature(getattr(cls, name)))
    except (TypeError, ValueError, AttributeError):
        return "(missing)"


def detect(package: str) -> Generation | str:
    """The generation of the imported ``package``, or why none matches."""
    if package not in sys.modules:
        return f"{package} is not imported"
    if (why := _g3_reason(package)) is not None:
        return why
    found = {"G1": _check_g1(package), "G2": _check_g2(package)}
    for gen in found.values():
        if isinstance(gen, (Generation, Unsupported)):
            return gen
    why = "; ".join(f"{name}: {', '.join(miss)}" for name, miss in found.items())
    return f"{package} matches no known TensorRT-LLM MoE API generation ({why})"
