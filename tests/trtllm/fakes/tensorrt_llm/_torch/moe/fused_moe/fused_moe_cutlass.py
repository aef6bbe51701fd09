import torch

from ....models.modeling_utils import QuantAlgo
from ... import utils
from ...fake_moe import CutlassLifecycle, MoE
from ...model_config import ModelConfig
from .impl_contract import MoEEligibility, MoERejectReason, MoEStaticCapability, require_comm_plan
from .activation import DEFAULT_MOE_ACTIVATION
from .impl_base import MoEImplBase
from .interface import _reject
from .stage import ACTIVATION_CARRIER
from .quantization import NVFP4CutlassFusedMoEMethod, UnquantizedFusedMoEMethod, W4A16NVFP4CutlassFusedMoEMethod


class CutlassFusedMoE(CutlassLifecycle, MoE, *((MoEImplBase,) if ACTIVATION_CARRIER else ())):
    capabilities = MoEStaticCapability(supports_moe_lora=True, supports_eplb=True, supports_expert_bias=True)
    QUANT_METHODS = {QuantAlgo.W4A16_NVFP4: W4A16NVFP4CutlassFusedMoEMethod, QuantAlgo.NVFP4: NVFP4CutlassFusedMoEMethod,
                     QuantAlgo.NVFP4_AWQ: NVFP4CutlassFusedMoEMethod}
    UNQUANTIZED = UnquantizedFusedMoEMethod

    @classmethod
    def can_implement(cls, p, d):
        if p.quant == "NVFP4" and d.env.sm not in (100, 103, 120, 121):
            return _reject(MoERejectReason.SM_UNSUPPORTED, f"CutlassFusedMoE NVFP4 needs SM100/103/120/121, got SM{d.env.sm}")
        if p.dtype_act not in (torch.bfloat16, torch.float16, torch.float8_e4m3fn):
            return _reject(MoERejectReason.DTYPE_UNSUPPORTED, f"CutlassFusedMoE: dtype {p.dtype_act}")
        return MoEEligibility.ok()

    if ACTIVATION_CARRIER:  # G2c @954e6e66: the activation carrier, no swiglu_*

        def __init__(self, *, routing_method, num_experts, hidden_size, intermediate_size, dtype=None,
                     reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None, weight_loading_mode=0,
                     bias=False, apply_router_weight_on_input=False, layer_idx=None,
                     activation=DEFAULT_MOE_ACTIVATION, init_load_balancer=False):
            if init_load_balancer:
                raise TypeError(f"{type(self).__name__} is an execution unit, not a complete MoE layer. "
                                "Construct it through create_moe() / ConfigurableMoE.")
            super().__init__(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                             intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                             model_config=model_config, weight_loading_mode=weight_loading_mode, bias=bias,
                             layer_idx=layer_idx, activation=activation)
            self._finish_init(apply_router_weight_on_input, model_config)

    else:  # G2a/G2b: swiglu_* attributes and an ActivationType

        def __init__(self, *, routing_method, num_experts, hidden_size, intermediate_size, dtype=None,
                     reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None, weight_loading_mode=0,
                     bias=False, apply_router_weight_on_input=False, layer_idx=None, swiglu_alpha=None,
                     swiglu_beta=None, swiglu_limit=None, swiglu_limit_scalar=None, init_load_balancer=True,
                     activation_type=utils.ActivationType.Swiglu):
            super().__init__(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                             intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                             model_config=model_config, weight_loading_mode=weight_loading_mode, bias=bias,
                             swiglu_alpha=swiglu_alpha, swiglu_beta=swiglu_beta, swiglu_limit=swiglu_limit,
                             layer_idx=layer_idx, activation_type=activation_type)
            self._finish_init(apply_router_weight_on_input, model_config)

    def run_moe(self, ctx, *, workspace=None):
        require_comm_plan(self, ctx)
        return self.fused_moe(ctx.x, ctx.token_selected_experts, ctx.token_final_scales, ctx.x_sf, ctx.output_dtype)
