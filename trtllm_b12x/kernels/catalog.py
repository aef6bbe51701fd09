"""Which compiled kernels a model preset needs, per target (for `trtllm-b12x compile`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..arch import Target
from ..models import MoEShape
from .cache import CompiledKernel, KernelCache

# SASS opcodes worth reporting: conversions, tensor-core MMAs, wide memory ops, spills.
KEY_SASS = {
    "F2FP.SATFINITE.E2M1.F32.PACK_AB_MERGE_C": "cvt.e2m1x2",
    "F2FP.SATFINITE.E4M3.F32.PACK_AB_MERGE_C": "cvt.e4m3x2",
    "OMMA.SF.16864.F32.E2M1.E2M1.UE4M3.4X": "OMMA.SF(nvfp4)",
    "HMMA": "HMMA",
    "HGMMA": "HGMMA",
    "LDG.E.128": "LDG.128",
    "STG.E.64": "STG.64",
    "LDL": "LDL",
    "STL": "STL",
}


@dataclass(frozen=True)
class KernelSpec:
    label: str
    get: Callable[[Target, KernelCache], CompiledKernel]


def preset_kernels(shape: MoEShape) -> list[KernelSpec]:
    from .decode import compile_phase, phase_configs
    from .quantize import QuantizeConfig, get_kernel

    def decode(phase: int, dtype: str):
        def get(target: Target, cache: KernelCache) -> CompiledKernel:
            cfgs = phase_configs(shape.hidden_size, shape.intermediate_size, shape.num_experts,
                                 shape.default_activation(), shape.top_k, dtype, target)
            return compile_phase(cfgs[phase], target, cache=cache)

        return get

    specs = [KernelSpec(f"decode {('FC1+' + shape.activation, 'FC2')[phase]} ({dtype})", decode(phase, dtype))
             for dtype in ("bfloat16", "float16") for phase in (0, 1)]
    for what, width in (("FC1 input", shape.hidden_size), ("FC2 input", shape.intermediate_size)):
        for layout in ("linear", "swizzled"):
            cfg = QuantizeConfig(width, "bfloat16", layout)
            specs.append(KernelSpec(f"quantize {what} (K={width}, {layout} scales)",
                                    lambda target, cache, cfg=cfg: get_kernel(cfg, target, cache=cache)))
    return specs
