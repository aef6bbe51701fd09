from ...utils import ActivationType
from .fused_moe_cutlass import CutlassFusedMoE
from .fused_moe_marlin import MarlinFusedMoE
from .fused_moe_stubs import CuteDslB12xFusedMoE, TRTLLMGenFusedMoE, VanillaMoE
from .impl_contract import MoEDeployment, MoEProblem, MoERejection, MoEResolutionReport
from .impl_environment import collect_moe_environment
from .stage import STAGE

IMPL_PRIORITY = (CuteDslB12xFusedMoE, TRTLLMGenFusedMoE, MarlinFusedMoE, CutlassFusedMoE, VanillaMoE)
BACKEND_FAMILY = {
    "CUTLASS": frozenset({CutlassFusedMoE}),
    "CUTEDSL": frozenset({CuteDslB12xFusedMoE}),
    "MARLIN": frozenset({MarlinFusedMoE}),
    "TRTLLM": frozenset({TRTLLMGenFusedMoE}),
    "VANILLA": frozenset({VanillaMoE}),
}
FALLBACK_IMPL = CutlassFusedMoE


def build_moe_problem(model_config, *, dtype=None, bias=False, swiglu_gptoss_style=False,
                      activation_type=ActivationType.Swiglu, activation_constants=frozenset()):
    algo = getattr(model_config.quant_config, "quant_algo", None)
    algo = {"NVFP4_AWQ": "NVFP4"}.get(getattr(algo, "value", None), getattr(algo, "value", None))  # canonical_quant
    extra = {}
    if STAGE != "G2a":
        extra["bias"] = bias
    if STAGE == "G2c":
        extra["activation_constants"] = activation_constants
    return MoEProblem(quant=algo, dtype_act=dtype, swiglu_gptoss_style=swiglu_gptoss_style,
                      activation=ActivationType(activation_type).name, **extra)


def build_moe_deployment(model_config, num_experts):
    m = model_config.mapping
    return MoEDeployment(ep_size=m.moe_ep_size, tp_size=m.moe_tp_size, use_dp=m.enable_attention_dp,
                         num_slots=num_experts, env=collect_moe_environment(), parallel_size=m.tp_size,
                         cluster_size=m.moe_cluster_size, eplb_enabled=model_config.moe_load_balancer is not None,
                         moe_lora_enabled=model_config.lora_config is not None)


def resolve_moe_impl(model_config, *, num_experts=None, dtype=None, bias=False, swiglu_gptoss_style=False,
                     activation_type=ActivationType.Swiglu, activation_constants=frozenset()):
    problem = build_moe_problem(model_config, dtype=dtype, bias=bias, swiglu_gptoss_style=swiglu_gptoss_style,
                                activation_type=activation_type, activation_constants=activation_constants)
    deployment = build_moe_deployment(model_config, num_experts)
    requested = model_config.moe_backend.upper()
    family = BACKEND_FAMILY[requested]
    candidates = [c for c in IMPL_PRIORITY if c in family]
    if FALLBACK_IMPL not in family:
        candidates.append(FALLBACK_IMPL)
    rejected, eligible = [], []
    for c in candidates:
        verdict = c.can_implement(problem, deployment)
        if verdict.eligible:
            eligible.append(c.__name__)
        else:
            rejected.append(MoERejection(c.__name__, verdict.reject_reason, verdict.detail))
    winner = eligible[0] if eligible else None
    return MoEResolutionReport(problem, deployment, winner, "pinned" if winner else "failed", tuple(rejected),
                               tuple(eligible), requested)


def impl_class_for(report):
    for c in IMPL_PRIORITY:
        if c.__name__ == report.winner:
            return c
    raise ValueError(f"resolution report names {report.winner!r}, which no candidate class claims")


def resolve_moe_cls(model_config, **kwargs):
    return impl_class_for(resolve_moe_impl(model_config, **kwargs))
