from ..fused_moe_cutlass import CutlassFusedMoE


class CutlassFusedMoEBase(CutlassFusedMoE):
    """The fork's abstract leaf base (no descriptor); here it carries the double's CUTLASS math."""
