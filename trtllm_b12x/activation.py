"""MoE expert activations: SwiGLU (optionally with alpha/beta/limit) and ReLU^2."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

SUPPORTED = ("swiglu", "relu2")


@dataclass(frozen=True)
class Activation:
    """Activation of the routed experts.

    ``swiglu``: ``gate * sigmoid(alpha * gate) * (up + beta)``, with ``gate`` clamped to
    ``<= limit`` and ``up`` to ``[-limit, limit]`` when ``limit`` is set (TensorRT-LLM's
    ``swiglu_alpha / swiglu_beta / swiglu_limit``; the defaults give ``silu(gate) * up``).
    ``relu2``: ``relu(x) ** 2`` on a single (non-gated) FC1 output.
    """

    kind: str = "swiglu"
    alpha: float = 1.0
    beta: float = 0.0
    limit: float | None = None

    def __post_init__(self):
        if self.kind not in SUPPORTED:
            raise ValueError(f"activation {self.kind!r} is not supported; supported: {SUPPORTED}")
        if self.kind == "relu2" and (self.alpha != 1.0 or self.beta != 0.0 or self.limit is not None):
            raise ValueError("relu2 takes no alpha/beta/limit (those are SwiGLU parameters)")
        for name in ("alpha", "beta", "limit"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"swiglu {name}={v!r}: expected a finite number")
        if self.limit is not None and not self.limit > 0:
            raise ValueError(f"swiglu limit must be > 0, got {self.limit}")

    @property
    def gated(self) -> bool:
        return self.kind == "swiglu"

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        """Apply to FC1 output ``h [..., g*I]`` (gated: ``[gate | up]`` halves) -> ``[..., I]``."""
        if self.kind == "relu2":
            return torch.relu(h).square()
        gate, up = h.chunk(2, dim=-1)
        if self.limit is not None:
            gate = gate.clamp(max=self.limit)
            up = up.clamp(min=-self.limit, max=self.limit)
        return gate * torch.sigmoid(self.alpha * gate) * (up + self.beta)
