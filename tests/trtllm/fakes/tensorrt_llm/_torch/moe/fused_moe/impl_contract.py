from dataclasses import dataclass
from enum import Enum

import torch

from .stage import STAGE


@dataclass(frozen=True)
class MoEStaticCapability:
    supports_moe_lora: bool = False
    supports_eplb: bool = False
    supports_expert_bias: bool = False


@dataclass(frozen=True)
class _ProblemG2a:  # upstream @04c2347b: no bias, no activation_constants
    quant: str | None
    dtype_act: torch.dtype
    swiglu_gptoss_style: bool | None = None
    activation: str = "Swiglu"


@dataclass(frozen=True)
class _ProblemG2b(_ProblemG2a):  # @1f41a4c7: bias (moe_resolution passes it)
    bias: bool | None = None


@dataclass(frozen=True)
class _ProblemG2c(_ProblemG2b):  # @0790edf6
    activation_constants: frozenset = frozenset()


# fields are passed by keyword, so the order inheritance gives them does not matter here
MoEProblem = {"G2a": _ProblemG2a, "G2b": _ProblemG2b}.get(STAGE, _ProblemG2c)


@dataclass(frozen=True)
class MoEEnvironment:
    sm: int
    available_deps: tuple = ()

    def has_dep(self, name) -> bool:
        return name in self.available_deps


@dataclass(frozen=True)
class MoEDeployment:
    ep_size: int
    tp_size: int
    use_dp: bool
    num_slots: int
    env: MoEEnvironment
    parallel_size: int
    cluster_size: int = 1
    eplb_enabled: bool = False
    moe_lora_enabled: bool = False


class MoERejectReason(str, Enum):
    QUANT_UNSUPPORTED = "quant_unsupported"
    DTYPE_UNSUPPORTED = "dtype_unsupported"
    SM_UNSUPPORTED = "sm_unsupported"
    DEP_MISSING = "dep_missing"
    TOPOLOGY_UNSUPPORTED = "topology_unsupported"
    LORA_UNSUPPORTED = "lora_unsupported"
    ACTIVATION_UNSUPPORTED = "activation_unsupported"
    EPLB_UNSUPPORTED = "eplb_unsupported"


@dataclass(frozen=True)
class MoEEligibility:
    eligible: bool
    reject_reason: MoERejectReason | None = None
    detail: str = ""

    def __post_init__(self):
        if self.eligible == (self.reject_reason is not None):
            raise ValueError("a rejection must name a MoERejectReason, an acceptance none")

    def __bool__(self):
        return self.eligible

    @classmethod
    def ok(cls):
        return cls(True)

    @classmethod
    def no(cls, reason, detail):
        return cls(False, reason, detail)


@dataclass(frozen=True)
class MoERejection:
    legacy_backend: str
    reason: MoERejectReason
    detail: str = ""


@dataclass(frozen=True)
class MoEResolutionReport:
    problem: MoEProblem
    deployment: MoEDeployment
    winner: str | None
    selected_by: str
    rejected: tuple = ()
    eligible: tuple = ()
    requested: str | None = None


@dataclass(frozen=True)
class MoECommPlan:
    input_sf_swizzled: bool
    enable_alltoall: bool
    moe_output: torch.Tensor | None
    payload_in_workspace: bool


@dataclass(frozen=True)
class MoERunContext:
    token_selected_experts: torch.Tensor | None
    token_final_scales: torch.Tensor | None
    x: torch.Tensor
    x_sf: torch.Tensor | None
    output_dtype: torch.dtype | None = None
    comm_plan: MoECommPlan | None = None


def require_comm_plan(impl, ctx):
    assert ctx.comm_plan is not None, f"{type(impl).__name__}.run_moe needs ctx.comm_plan"
    return ctx.comm_plan
