"""G2 double: resolution through ``IMPL_PRIORITY`` / ``BACKEND_FAMILY``, ``can_implement(p, d)``
returning ``MoEEligibility``, ``run_moe(ctx, *, workspace=None)``, ``transform_weights``."""

from ...fake_moe import RenormalizeMoeRoutingMethod
from .create_moe import create_moe, create_moe_backend
from .fused_moe_cutlass import CutlassFusedMoE
from .moe_resolution import resolve_moe_cls, resolve_moe_impl

__all__ = ["CutlassFusedMoE", "RenormalizeMoeRoutingMethod", "create_moe", "create_moe_backend",
           "resolve_moe_cls", "resolve_moe_impl"]
