from ...model_config import ModelConfig
from ...utils import ActivationType
from .activation import DEFAULT_MOE_ACTIVATION, SwigluActivation, activation_constant_names
from .configurable_moe import ConfigurableMoE
from .fused_moe_cutlass import CutlassFusedMoE
from .fused_moe_marlin import MarlinFusedMoE
from .fused_moe_stubs import CuteDslB12xFusedMoE, TRTLLMGenFusedMoE, VanillaMoE
from .moe_resolution import resolve_moe_cls
from .stage import ACTIVATION_CARRIER, WRAPS_IMPL_BASE

if WRAPS_IMPL_BASE:
    from .impl_base import MoEImplBase  # G2c: the wrapping rule below reads it

_OWN_CLASSES = (CutlassFusedMoE, MarlinFusedMoE, CuteDslB12xFusedMoE, TRTLLMGenFusedMoE, VanillaMoE)


def _wrapped(moe_cls) -> bool:
    """G2c (@73312531): every MoEImplBase subclass; G2a/G2b (@04c2347b, @1f41a4c7): an exact tuple."""
    if WRAPS_IMPL_BASE:
        return issubclass(moe_cls, MoEImplBase)
    return moe_cls in _OWN_CLASSES


if ACTIVATION_CARRIER:

    def create_moe_backend(moe_cls, routing_method, num_experts=None, hidden_size=None, intermediate_size=None,
                           dtype=None, reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None,
                           weight_loading_mode=0, bias=False, apply_router_weight_on_input=False, layer_idx=None,
                           init_load_balancer=False, activation=DEFAULT_MOE_ACTIVATION):
        # identity dispatch, as upstream: a subclass of CutlassFusedMoE falls through
        if moe_cls in _OWN_CLASSES:
            return moe_cls(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                           intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                           model_config=model_config, aux_stream_dict=aux_stream_dict,
                           weight_loading_mode=weight_loading_mode, bias=bias,
                           apply_router_weight_on_input=apply_router_weight_on_input, layer_idx=layer_idx,
                           init_load_balancer=init_load_balancer, activation=activation)
        raise ValueError(f"Unsupported moe backend: {moe_cls}")

    def create_moe(routing_method, num_experts=None, hidden_size=None, intermediate_size=None, dtype=None,
                   reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None, weight_loading_mode=0,
                   bias=False, apply_router_weight_on_input=False, layer_idx=None, activation=DEFAULT_MOE_ACTIVATION):
        moe_cls = resolve_moe_cls(model_config, num_experts=num_experts, dtype=dtype, bias=bias,
                                  swiglu_gptoss_style=bias or activation.kind == ActivationType.SwigluBias,
                                  activation_type=activation.kind,
                                  activation_constants=activation_constant_names(activation))
        kw = dict(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                  intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                  model_config=model_config, aux_stream_dict=aux_stream_dict, weight_loading_mode=weight_loading_mode,
                  bias=bias, apply_router_weight_on_input=apply_router_weight_on_input, layer_idx=layer_idx,
                  activation=activation)
        if _wrapped(moe_cls):
            return ConfigurableMoE(moe_cls=moe_cls, **kw)
        return create_moe_backend(moe_cls, **kw)

else:

    def create_moe_backend(moe_cls, routing_method, num_experts=None, hidden_size=None, intermediate_size=None,
                           dtype=None, reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None,
                           weight_loading_mode=0, bias=False, apply_router_weight_on_input=False, layer_idx=None,
                           swiglu_alpha=None, swiglu_beta=None, swiglu_limit=None, init_load_balancer=False,
                           activation_type=ActivationType.Swiglu):
        if moe_cls in _OWN_CLASSES:
            return moe_cls(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                           intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                           model_config=model_config, aux_stream_dict=aux_stream_dict,
                           weight_loading_mode=weight_loading_mode, bias=bias,
                           apply_router_weight_on_input=apply_router_weight_on_input, layer_idx=layer_idx,
                           swiglu_alpha=swiglu_alpha, swiglu_beta=swiglu_beta, swiglu_limit=swiglu_limit,
                           init_load_balancer=init_load_balancer, activation_type=activation_type)
        raise ValueError(f"Unsupported moe backend: {moe_cls}")

    def create_moe(routing_method, num_experts=None, hidden_size=None, intermediate_size=None, dtype=None,
                   reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None, weight_loading_mode=0,
                   bias=False, apply_router_weight_on_input=False, layer_idx=None, swiglu_alpha=None,
                   swiglu_beta=None, swiglu_limit=None, activation_type=ActivationType.Swiglu):
        constants = frozenset(k for k, v in (("alpha", swiglu_alpha), ("beta", swiglu_beta), ("clamp", swiglu_limit))
                              if v is not None)
        moe_cls = resolve_moe_cls(model_config, num_experts=num_experts, dtype=dtype, bias=bias,
                                  swiglu_gptoss_style=bias and activation_type == ActivationType.SwigluBias,
                                  activation_type=activation_type, activation_constants=constants)
        kw = dict(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                  intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                  model_config=model_config, aux_stream_dict=aux_stream_dict, weight_loading_mode=weight_loading_mode,
                  bias=bias, apply_router_weight_on_input=apply_router_weight_on_input, layer_idx=layer_idx,
                  swiglu_alpha=swiglu_alpha, swiglu_beta=swiglu_beta, swiglu_limit=swiglu_limit,
                  activation_type=activation_type)
        if _wrapped(moe_cls):
            return ConfigurableMoE(moe_cls=moe_cls, **kw)
        return create_moe_backend(moe_cls, **kw)  # built bare: MoE.forward has no forward_impl here


__all__ = ["SwigluActivation", "create_moe", "create_moe_backend"]
