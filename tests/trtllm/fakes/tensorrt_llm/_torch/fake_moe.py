"""Parts of the double shared by both generations: the MoE layer base (the attributes the
adapter reads), top-k routing, and the CUTLASS NVFP4 weight method (create / load with
TensorRT-LLM's layout, built by the test-side ``cutlass_layout`` model)."""

import torch
from torch import nn

from .utils import ActivationType, is_gated_activation


class RenormalizeMoeRoutingMethod:
    def __init__(self, top_k: int):
        self.top_k = self.experts_per_token = top_k

    def get_experts_per_token(self) -> int:
        return self.top_k

    def apply(self, router_logits):
        vals, ids = router_logits.float().topk(self.top_k, dim=-1)
        return ids.to(torch.int32), torch.softmax(vals, dim=-1)


class MoE(nn.Module):
    def __init__(self, *, routing_method, num_experts, hidden_size, intermediate_size, dtype=None,
                 reduce_results=False, model_config=None, weight_loading_mode=0, bias=False, swiglu_alpha=None,
                 swiglu_beta=None, swiglu_limit=None, layer_idx=None, activation_type=ActivationType.Swiglu,
                 activation=None):
        super().__init__()
        m = model_config.mapping
        self.routing_method, self.num_experts, self.hidden_size = routing_method, num_experts, hidden_size
        self.intermediate_size, self.dtype, self.quant_config = intermediate_size, dtype, model_config.quant_config
        self.bias, self.layer_idx, self.weight_loading_mode = bias, layer_idx, weight_loading_mode
        if activation is None:  # the swiglu_* stages
            self.swiglu_alpha, self.swiglu_beta, self.swiglu_limit = swiglu_alpha, swiglu_beta, swiglu_limit
        else:  # G2c: the activation carrier; its constants become act_* buffers (below)
            self.activation = activation
            activation_type = activation.kind
        self.activation_type = int(activation_type)
        self.is_gated_activation = is_gated_activation(activation_type)
        self.intermediate_size_expand_ratio = 2 if self.is_gated_activation else 1
        self.tp_size, self.tp_rank, self.ep_size, self.ep_rank = m.moe_tp_size, m.moe_tp_rank, m.moe_ep_size, m.moe_ep_rank
        self.use_dp, self.parallel_size, self.cluster_size = m.enable_attention_dp, m.tp_size, m.moe_cluster_size
        self.intermediate_size_per_partition = intermediate_size // self.tp_size
        self.expert_size_per_partition = num_experts // self.ep_size
        self.num_slots = num_experts
        self.slot_start = self.ep_rank * self.expert_size_per_partition
        self.layer_load_balancer = model_config.moe_load_balancer  # EPLB on when a balancer is configured
        self.calls = []  # what ran, for the tests
        if activation is not None:
            from .moe.fused_moe.activation import install_activation_params

            install_activation_params(self)


class NVFP4MethodBase:
    """Parameters of TensorRT-LLM's CUTLASS NVFP4 method and its load; ``swizzled`` is the
    scale layout left after loading (the W4A16 method un-swizzles)."""

    swizzled = True

    def create_weights(self, module):
        e, h = module.expert_size_per_partition, module.hidden_size
        g = module.intermediate_size_expand_ratio
        n1 = (g * module.intermediate_size_per_partition + 127) // 128 * 128
        shapes = {
            "w3_w1_weight": ((e, n1, h // 16), torch.int64),
            "w2_weight": ((e, h, n1 // g // 16), torch.int64),
            "w3_w1_weight_scale": ((e, n1, h // 64), torch.int32),
            "w2_weight_scale": ((e, h, n1 // g // 64), torch.int32),
            "fc31_input_scale": ((), torch.float32),
            "fc2_input_scale": ((), torch.float32),
            "fc31_alpha": ((e,), torch.float32),
            "fc2_alpha": ((e,), torch.float32),
        }
        for name, (shape, dtype) in shapes.items():
            module.register_parameter(name, nn.Parameter(torch.zeros(shape, dtype=dtype), requires_grad=False))
        awq = getattr(module.quant_config, "quant_algo", None) == "NVFP4_AWQ"
        module.register_parameter("fc31_act_scale", nn.Parameter(torch.ones(1, h), requires_grad=False) if awq else None)

    def load_weights(self, module, weights, weight_loading_mode):
        from cutlass_layout import cutlass_tensors  # the test-side layout model

        local = range(module.slot_start, module.slot_start + module.expert_size_per_partition)
        t = cutlass_tensors(weights, num_experts=module.num_experts, experts=local, hidden=module.hidden_size,
                            intermediate=module.intermediate_size, gated=module.is_gated_activation,
                            tp_size=module.tp_size, tp_rank=module.tp_rank, swizzled=self.swizzled)
        for name, value in t.items():
            getattr(module, name).data.copy_(value)


class CutlassLifecycle:
    """What both generations' ``CutlassFusedMoE`` share: weight lifecycle, input quantization
    and the fused_moe math; each generation keeps its own ``can_implement`` / ``run_moe`` form
    and its constructor signature (the adapter tells the generations apart by them)."""

    QUANT_METHODS: dict = {}  # per generation: QuantAlgo -> method class
    UNQUANTIZED = None  # the method class of anything else

    def _finish_init(self, apply_router_weight_on_input, model_config):
        self.apply_router_weight_on_input = apply_router_weight_on_input
        self._weights_created = False
        if not model_config.skip_create_weights_in_init:
            self.create_weights()

    def _get_quant_method(self):
        return self.QUANT_METHODS.get(getattr(self.quant_config, "quant_algo", None), self.UNQUANTIZED)()

    def create_weights(self):
        if self._weights_created:
            return
        self.quant_method = self._get_quant_method()
        self.quant_method.create_weights(self)
        self._weights_created = True

    def load_weights(self, weights):
        assert len(weights) == 1
        self.quant_method.load_weights(self, weights[0], self.weight_loading_mode)

    def post_load_weights(self):
        self.quant_method.post_load_weights(self)

    @property
    def _w4a16(self) -> bool:  # the W4A16 method leaves linear scales and unquantized inputs
        return not getattr(self.quant_method, "swizzled", True)

    def quantize_input(self, x, post_quant_comm=True, **kwargs):
        self.calls.append("cutlass.quantize_input")
        if self._w4a16:
            return x, None
        # stands in for fp4_quantize: the activations stay readable, x_sf marks them quantized
        return x, torch.ones(x.shape[0], self.hidden_size // 16, dtype=torch.uint8)

    def fused_moe(self, x, ids, scales, x_sf, output_dtype):
        self.calls.append("cutlass.run_moe")
        if x_sf is None and not self._w4a16:
            raise ValueError("CUTLASS NVFP4 fused_moe needs quantized input (x_sf)")
        return cutlass_math(self, x, ids, scales, swizzled=not self._w4a16).to(output_dtype or x.dtype)


def cutlass_math(module, x, ids, scales, swizzled, tensors=None, layer=None):
    """What the CUTLASS kernel computes from the module's tensors (float32, test-side model);
    ``tensors`` (with ``layer`` for the shapes) stands in for weights held elsewhere."""
    from cutlass_layout import dequant_cutlass, moe_math

    layer = layer if layer is not None else module
    t = tensors or {k: getattr(module, k).data for k in ("w3_w1_weight", "w3_w1_weight_scale", "w2_weight",
                                                         "w2_weight_scale", "fc31_alpha", "fc2_alpha",
                                                         "fc31_input_scale", "fc2_input_scale")}
    w13, w2 = dequant_cutlass(t, intermediate=layer.intermediate_size_per_partition,
                              gated=layer.is_gated_activation, swizzled=swizzled)
    return moe_math(x, ids, scales, w13, w2, expert_offset=layer.slot_start, gated=layer.is_gated_activation)
