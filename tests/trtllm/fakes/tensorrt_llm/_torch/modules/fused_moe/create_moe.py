from ...model_config import ModelConfig
from ...utils import ActivationType
from .fused_moe_cutlass import CutlassFusedMoE


class VanillaMoE(CutlassFusedMoE):
    pass


def get_moe_cls(model_config, override_quant_config=None):
    backend = model_config.moe_backend.upper()
    if backend == "CUTLASS":
        return CutlassFusedMoE
    if backend == "VANILLA":
        return VanillaMoE
    raise ValueError(f"Unsupported moe backend: {model_config.moe_backend}")


def create_moe_backend(moe_cls, routing_method, num_experts=None, hidden_size=None, intermediate_size=None,
                       dtype=None, reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None,
                       weight_loading_mode=0, bias=False, apply_router_weight_on_input=False, layer_idx=None,
                       swiglu_alpha=None, swiglu_beta=None, swiglu_limit=None, init_load_balancer=True,
                       without_comm=False, activation_type=ActivationType.Swiglu):
    pretrained = model_config.pretrained_config
    if num_experts is None:
        num_experts = pretrained.num_experts
    if hidden_size is None:
        hidden_size = pretrained.hidden_size
    if intermediate_size is None:
        intermediate_size = pretrained.moe_intermediate_size
    # identity dispatch, as upstream: a subclass of CutlassFusedMoE falls through
    if moe_cls == CutlassFusedMoE or moe_cls == VanillaMoE:
        return moe_cls(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                       intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                       model_config=model_config, aux_stream_dict=aux_stream_dict,
                       weight_loading_mode=weight_loading_mode, bias=bias,
                       apply_router_weight_on_input=apply_router_weight_on_input, layer_idx=layer_idx,
                       swiglu_alpha=swiglu_alpha, swiglu_beta=swiglu_beta, swiglu_limit=swiglu_limit,
                       init_load_balancer=init_load_balancer, without_comm=without_comm,
                       activation_type=activation_type)
    raise ValueError(f"Unsupported moe backend: {moe_cls}")


def create_moe(routing_method, num_experts=None, hidden_size=None, intermediate_size=None, dtype=None,
               reduce_results=False, model_config=ModelConfig(), override_quant_config=None, aux_stream_dict=None,
               weight_loading_mode=0, bias=False, apply_router_weight_on_input=False, layer_idx=None,
               swiglu_alpha=None, swiglu_beta=None, swiglu_limit=None, activation_type=ActivationType.Swiglu):
    moe_cls = get_moe_cls(model_config, override_quant_config)
    return create_moe_backend(moe_cls=moe_cls, routing_method=routing_method, num_experts=num_experts,
                              hidden_size=hidden_size, intermediate_size=intermediate_size, dtype=dtype,
                              reduce_results=reduce_results, model_config=model_config,
                              aux_stream_dict=aux_stream_dict, weight_loading_mode=weight_loading_mode, bias=bias,
                              apply_router_weight_on_input=apply_router_weight_on_input, layer_idx=layer_idx,
                              swiglu_alpha=swiglu_alpha, swiglu_beta=swiglu_beta, swiglu_limit=swiglu_limit,
                              activation_type=activation_type)
