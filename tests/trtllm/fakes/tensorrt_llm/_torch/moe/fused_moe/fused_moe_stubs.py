"""Other members of the resolution tables, so ordering and family membership are tested."""

from .fused_moe_cutlass import CutlassFusedMoE
from .impl_contract import MoEEligibility, MoERejectReason


class TRTLLMGenFusedMoE(CutlassFusedMoE):
    @classmethod
    def can_implement(cls, p, d):
        return MoEEligibility.no(MoERejectReason.SM_UNSUPPORTED, "TRTLLMGenFusedMoE needs SM100")


class VanillaMoE(CutlassFusedMoE):
    @classmethod
    def can_implement(cls, p, d):
        return MoEEligibility.ok()


class CuteDslB12xFusedMoE(CutlassFusedMoE):
    """Upstream's b12x backend (fused_moe_cute_dsl_b12x @5a78084c): its can_implement gates, in
    upstream's order; FlashInfer is a dependency TensorRT-LLM probes (``d.env.has_dep``)."""

    @classmethod
    def can_implement(cls, p, d):
        import torch

        R = MoERejectReason
        checks = ((d.env.sm not in (120, 121), R.SM_UNSUPPORTED, f"needs SM120/121, got SM{d.env.sm}"),
                  (p.quant not in ("NVFP4", "W4A16_NVFP4"), R.QUANT_UNSUPPORTED, f"quant {p.quant}"),
                  (p.dtype_act not in (torch.float16, torch.bfloat16), R.DTYPE_UNSUPPORTED, f"dtype {p.dtype_act}"),
                  (bool(p.swiglu_gptoss_style), R.ACTIVATION_UNSUPPORTED, "gpt-oss style"),
                  (p.activation not in ("Swiglu", "Relu2"), R.ACTIVATION_UNSUPPORTED, f"activation {p.activation}"),
                  (not d.env.has_dep("flashinfer"), R.DEP_MISSING, "CuteDslB12xFusedMoE requires flashinfer"),
                  (d.eplb_enabled, R.EPLB_UNSUPPORTED, "no EPLB"),
                  (d.ep_size != 1, R.TOPOLOGY_UNSUPPORTED, f"CuteDslB12xFusedMoE requires ep_size == 1, got {d.ep_size}"),
                  (d.use_dp and d.parallel_size > 1, R.TOPOLOGY_UNSUPPORTED, "no attention DP"))
        for failed, reason, detail in checks:
            if failed:
                return MoEEligibility.no(reason, detail)
        return MoEEligibility.ok()
