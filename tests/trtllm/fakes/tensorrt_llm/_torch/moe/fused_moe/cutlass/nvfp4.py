MOE_IMPL_REGISTRY: dict = {}


def register_moe_impl(cls):
    if cls.__name__ in MOE_IMPL_REGISTRY:
        raise ValueError(f"duplicate MoE impl {cls.__name__}")
    MOE_IMPL_REGISTRY[cls.__name__] = cls
    return cls


from .base import CutlassFusedMoEBase  # noqa: E402


@register_moe_impl
class TrtllmCutlassNvfp4Impl(CutlassFusedMoEBase):
    identity = "trtllm.cutlass.grouped_gemm.nvfp4"
