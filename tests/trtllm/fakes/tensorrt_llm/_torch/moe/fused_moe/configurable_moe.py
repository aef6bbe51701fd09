from torch import nn

from .activation import install_activation_params
from .impl_contract import MoECommPlan, MoERunContext
from .stage import ACTIVATION_CARRIER


class ConfigurableMoE(nn.Module):
    """Backend + external-communication scheduler, reduced to the calls the adapter sees."""

    def __init__(self, *, moe_cls, **kwargs):
        super().__init__()
        import importlib

        create_moe = importlib.import_module(".create_moe", __package__)  # looked up at call time, as upstream

        # the backend is built without its layer index or a load balancer (G2c: then the
        # activation parameters are installed again, the expert partition may have moved)
        kwargs.update(layer_idx=None, init_load_balancer=False)
        self.backend = create_moe.create_moe_backend(moe_cls, **kwargs)
        if ACTIVATION_CARRIER:
            install_activation_params(self.backend)

    def load_weights(self, weights):
        self.backend.load_weights(weights)

    def post_load_weights(self):
        self.backend.post_load_weights()

    def forward(self, x, router_logits, *, moe_output=None):
        b = self.backend
        ids, scales = b.routing_method.apply(router_logits)
        xq, x_sf = b.quantize_input(x, post_quant_comm=False)
        plan = MoECommPlan(input_sf_swizzled=True, enable_alltoall=False, moe_output=moe_output,
                           payload_in_workspace=False)
        return b.run_moe(MoERunContext(ids, scales, xq, x_sf, output_dtype=x.dtype, comm_plan=plan))
