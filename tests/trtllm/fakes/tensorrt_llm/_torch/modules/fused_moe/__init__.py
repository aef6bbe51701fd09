"""G1 double: selection by ``get_moe_cls``, tuple-returning ``can_implement``, keyword ``run_moe``.
With ``_stage.STAGE == "G2a"`` this path holds the G2 API instead (upstream @04c2347b): the
G2 double's modules, loaded under this package's name."""

import os

from ...._stage import STAGE

if STAGE == "G2a":
    __path__[:] = [os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "moe", "fused_moe")]
    from ...fake_moe import RenormalizeMoeRoutingMethod
    from .create_moe import create_moe, create_moe_backend
    from .fused_moe_cutlass import CutlassFusedMoE
    from .moe_resolution import resolve_moe_cls, resolve_moe_impl

    __all__ = ["CutlassFusedMoE", "RenormalizeMoeRoutingMethod", "create_moe", "create_moe_backend",
               "resolve_moe_cls", "resolve_moe_impl"]
else:
    from ...fake_moe import RenormalizeMoeRoutingMethod
    from .create_moe import create_moe, create_moe_backend, get_moe_cls
    from .fused_moe_cutlass import CutlassFusedMoE

    __all__ = ["CutlassFusedMoE", "RenormalizeMoeRoutingMethod", "create_moe", "create_moe_backend", "get_moe_cls"]
