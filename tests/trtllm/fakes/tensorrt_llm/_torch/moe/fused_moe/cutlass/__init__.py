"""G3 (a fork, xxi-nv @b71c32fd): per-quant CUTLASS leaves over an abstract base, each
registered with ``@register_moe_impl``; ``CUTLASS_LEAVES`` feeds IMPL_PRIORITY and the
CUTLASS family. Absent (ImportError) in every other stage."""

from ..stage import STAGE

if STAGE != "G3":
    raise ImportError("the per-quant CUTLASS leaf package exists only in stage G3")

from .base import CutlassFusedMoEBase  # noqa: E402
from .nvfp4 import TrtllmCutlassNvfp4Impl  # noqa: E402

CUTLASS_LEAVES = (TrtllmCutlassNvfp4Impl,)
__all__ = ["CUTLASS_LEAVES", "CutlassFusedMoEBase", "TrtllmCutlassNvfp4Impl"]
