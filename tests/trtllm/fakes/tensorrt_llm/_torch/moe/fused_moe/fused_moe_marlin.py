"""Marlin (upstream fused_moe_marlin @1f41a4c7, the concrete class): NVFP4 / W4A16_NVFP4 on
SM89-99 with bf16 activations; its quant method repacks the weights into Marlin's own layout
in ``transform_weights``, so the CUTLASS-layout tensors are gone after loading."""

import torch

from .fused_moe_cutlass import CutlassFusedMoE
from .impl_contract import MoEEligibility, MoERejectReason
from .quantization import NVFP4MarlinFusedMoEMethod


class MarlinFusedMoE(CutlassFusedMoE):
    @classmethod
    def can_implement(cls, p, d):
        R = MoERejectReason
        checks = ((p.quant not in ("NVFP4", "W4A16_NVFP4"), R.QUANT_UNSUPPORTED, f"quant {p.quant}"),
                  (not 89 <= d.env.sm < 100, R.SM_UNSUPPORTED, f"MarlinFusedMoE needs SM89-99, got SM{d.env.sm}"),
                  (bool(p.swiglu_gptoss_style), R.ACTIVATION_UNSUPPORTED, "gpt-oss style"),
                  (p.dtype_act != torch.bfloat16, R.DTYPE_UNSUPPORTED, f"dtype {p.dtype_act}"),
                  (d.eplb_enabled, R.EPLB_UNSUPPORTED, "no EPLB"))
        for failed, reason, detail in checks:
            if failed:
                return MoEEligibility.no(reason, detail)
        return MoEEligibility.ok()

    def _get_quant_method(self):
        return NVFP4MarlinFusedMoEMethod()

    def quantize_input(self, x, post_quant_comm=True, **kwargs):
        self.calls.append("marlin.quantize_input")
        return x, None

    def run_moe(self, ctx, *, workspace=None):
        self.calls.append("marlin.run_moe")
        return self.quant_method.marlin_math(self, ctx.x, ctx.token_selected_experts,
                                             ctx.token_final_scales).to(ctx.output_dtype or ctx.x.dtype)
