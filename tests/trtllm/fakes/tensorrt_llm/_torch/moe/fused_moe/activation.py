"""G2c activation carrier (upstream activation.py @1262edbc): frozen dataclasses with a
``kind`` and ``constants()``; ``install_activation_params`` materializes the SwiGLU
constants as per-local-expert float32 buffers ``act_alpha`` / ``act_beta`` / ``act_clamp``
(None where the carrier gives none)."""

from dataclasses import dataclass
from typing import ClassVar

import torch

from ...utils import ActivationType


@dataclass(frozen=True)
class ActivationConstants:
    alpha: object = None
    beta: object = None
    limit: object = None


@dataclass(frozen=True, eq=False)
class SwigluActivation:
    clamp: object = None
    kind: ClassVar[ActivationType] = ActivationType.Swiglu

    def constants(self):
        return ActivationConstants(limit=self.clamp)


@dataclass(frozen=True, eq=False)
class SwigluBiasActivation:
    gate_sigmoid_scale: object
    linear_offset: object
    clamp: object = None
    kind: ClassVar[ActivationType] = ActivationType.SwigluBias

    def constants(self):
        return ActivationConstants(alpha=self.gate_sigmoid_scale, beta=self.linear_offset, limit=self.clamp)


@dataclass(frozen=True, eq=False)
class SimpleActivation:
    kind: ActivationType

    def constants(self):
        return ActivationConstants()


DEFAULT_MOE_ACTIVATION = SwigluActivation()


def activation_constant_names(act) -> frozenset:
    c = act.constants()
    return frozenset(n for n, v in (("alpha", c.alpha), ("beta", c.beta), ("clamp", c.limit)) if v is not None)


def install_activation_params(module) -> None:
    """Per-expert tensors (CUTLASS declares PER_EXPERT_TENSOR): a scalar is broadcast, a
    tensor of the local expert count is cloned; None stays None."""
    c = module.activation.constants()
    for name, value in (("act_alpha", c.alpha), ("act_beta", c.beta), ("act_clamp", c.limit)):
        if name in module._buffers:
            del module._buffers[name]
        if value is None:
            setattr(module, name, None)
            continue
        t = torch.as_tensor(value, dtype=torch.float32)
        t = t.expand(module.expert_size_per_partition).clone() if t.numel() == 1 else t.clone()
        module.register_buffer(name, t, persistent=False)
