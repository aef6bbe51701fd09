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
