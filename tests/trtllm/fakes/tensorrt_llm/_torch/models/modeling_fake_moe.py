"""A model file that binds the selection function in its own namespace, as TensorRT-LLM's
model files do (``moe_backend_cls=get_moe_cls(model_config)``)."""

from ..modules.fused_moe import get_moe_cls


def gate_backend_cls(model_config):
    return get_moe_cls(model_config)
