"""G1 double: selection by ``get_moe_cls``, tuple-returning ``can_implement``, keyword ``run_moe``."""

from ...fake_moe import RenormalizeMoeRoutingMethod
from .create_moe import create_moe, create_moe_backend, get_moe_cls
from .fused_moe_cutlass import CutlassFusedMoE

__all__ = ["CutlassFusedMoE", "RenormalizeMoeRoutingMethod", "create_moe", "create_moe_backend", "get_moe_cls"]
