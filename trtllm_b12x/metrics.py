"""Comparison metrics shared by the oracle's users, the kernels' self-checks and the bench."""

from __future__ import annotations

import torch


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """``||out - ref|| / ||ref||`` in float64; NaN/inf anywhere in ``out`` gives inf."""
    out64, ref64 = out.double(), ref.double()
    if not bool(torch.isfinite(out64).all()):
        return float("inf")
    den = ref64.norm()
    num = (out64 - ref64).norm()
    return float(num / den) if den > 0 else float(num)
