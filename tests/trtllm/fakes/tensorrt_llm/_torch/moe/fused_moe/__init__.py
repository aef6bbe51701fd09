"""G2 double: resolution through ``IMPL_PRIORITY`` / ``BACKEND_FAMILY``, ``can_implement(p, d)``
returning ``MoEEligibility``, ``run_moe(ctx, *, workspace=None)``, ``transform_weights``."""

from ...._stage import STAGE

if STAGE == "G2a":  # this package path does not exist yet at that stage
    raise ImportError("tensorrt_llm._torch.moe.fused_moe does not exist in stage G2a")

from ...fake_moe import RenormalizeMoeRoutingMethod  # noqa: E402
from .create_moe import create_moe, create_moe_backend  # noqa: E402
from .fused_moe_cutlass import CutlassFusedMoE  # noqa: E402
from .moe_resolution import resolve_moe_cls, resolve_moe_impl  # noqa: E402

__all__ = ["CutlassFusedMoE", "RenormalizeMoeRoutingMethod", "create_moe", "create_moe_backend",
           "resolve_moe_cls", "resolve_moe_impl"]
