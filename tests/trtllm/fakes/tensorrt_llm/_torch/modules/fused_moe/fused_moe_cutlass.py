import torch

from ....models.modeling_utils import QuantAlgo
from ... import utils
from ...fake_moe import CutlassLifecycle, MoE
from ...model_config import ModelConfig
from .quantization import (FP8QDQFusedMoEMethod, NVFP4CutlassFusedMoEMethod, UnquantizedFusedMoEMethod,
                           W4A16NVFP4CutlassFusedMoEMethod)


class CutlassFusedMoE(CutlassLifecycle, MoE):
    QUANT_METHODS = {QuantAlgo.W4A16_NVFP4: W4A16NVFP4CutlassFusedMoEMethod, QuantAlgo.NVFP4: NVFP4CutlassFusedMoEMethod,
                     QuantAlgo.NVFP4_AWQ: NVFP4CutlassFusedMoEMethod, QuantAlgo.FP8: FP8QDQFusedMoEMethod}
    UNQUANTIZED = UnquantizedFusedMoEMethod

    @classmethod
    def can_implement(cls, quant_algo, dtype_activation=torch.bfloat16, swiglu_gptoss_style=False):
        from ...._utils import get_sm_version as sm  # G1 reads the SM inside can_implement

        if quant_algo == QuantAlgo.NVFP4 and sm() not in (100, 103, 120, 121):
            return False, f"CutlassFusedMoE NVFP4 needs SM100/103/120/121, got SM{sm()}"
        return True, None

    def __init__(self, *, routing_method, num_experts, hidden_size, intermediate_size, dtype=None,
                 reduce_results=False, model_config=ModelConfig(), aux_stream_dict=None, weight_loading_mode=0,
                 bias=False, apply_router_weight_on_input=False, layer_idx=None, swiglu_alpha=None, swiglu_beta=None,
                 swiglu_limit=None, init_load_balancer=True, without_comm=False,
                 activation_type=utils.ActivationType.Swiglu):
        super().__init__(routing_method=routing_method, num_experts=num_experts, hidden_size=hidden_size,
                         intermediate_size=intermediate_size, dtype=dtype, reduce_results=reduce_results,
                         model_config=model_config, weight_loading_mode=weight_loading_mode, bias=bias,
                         swiglu_alpha=swiglu_alpha, swiglu_beta=swiglu_beta, swiglu_limit=swiglu_limit,
                         layer_idx=layer_idx, activation_type=activation_type)
        self.enable_alltoall = False
        self._finish_init(apply_router_weight_on_input, model_config)

    def run_moe(self, x, token_selected_experts, token_final_scales, x_sf=None, is_sf_swizzled=True,
                output_dtype=None, tuner_num_tokens=None, tuner_top_k=None, moe_output=None, enable_alltoall=None):
        return self.fused_moe(x, token_selected_experts, token_final_scales, x_sf, output_dtype)

    def forward(self, x, router_logits):
        """The legacy ``forward_chunk`` path, reduced to the calls the adapter overrides."""
        ids, scales = self.routing_method.apply(router_logits)
        xq, x_sf = self.quantize_input(x, post_quant_comm=False)
        # as upstream's legacy path: no enable_alltoall in the call (the module's attribute holds it)
        return self.run_moe(x=xq, token_selected_experts=ids, token_final_scales=scales, x_sf=x_sf,
                            output_dtype=x.dtype)
