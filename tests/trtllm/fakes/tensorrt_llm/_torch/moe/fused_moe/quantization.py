import functools

from ...fake_moe import NVFP4MethodBase


class FusedMoEMethodBase:
    def post_load_weights(self, module):
        self.transform_weights(module)
        self.cache_derived_state(module)

    def transform_weights(self, module):
        pass

    def cache_derived_state(self, module):
        module.derived_state_cached = True


class UnquantizedFusedMoEMethod(FusedMoEMethodBase):
    def create_weights(self, module):
        pass

    def load_weights(self, module, weights, weight_loading_mode):
        pass


class NVFP4CutlassFusedMoEMethod(NVFP4MethodBase, FusedMoEMethodBase):
    pass


class W4A16NVFP4CutlassFusedMoEMethod(NVFP4CutlassFusedMoEMethod):
    swizzled = False


class NVFP4MarlinFusedMoEMethod(NVFP4CutlassFusedMoEMethod):
    """Repacks in ``transform_weights``: the double keeps the math of the loaded tensors aside
    (as Marlin's own layout would hold it) and overwrites the CUTLASS-layout tensors, so that
    whoever reads them after the repack reads something else (as upstream replaces them)."""

    def transform_weights(self, module):
        import torch
        from ...fake_moe import cutlass_math

        module._marlin_math = functools.partial(cutlass_math, module=None, swizzled=True,
                                                tensors={k: getattr(module, k).data.clone() for k in _TENSORS})
        for k in ("w3_w1_weight", "w2_weight"):
            getattr(module, k).data.copy_(torch.flip(getattr(module, k).data, dims=(1,)))  # "Marlin tiles"
        module._marlin_packed = True

    def marlin_math(self, module, x, ids, scales):
        return module._marlin_math(layer=module, x=x, ids=ids, scales=scales)


_TENSORS = ("w3_w1_weight", "w3_w1_weight_scale", "w2_weight", "w2_weight_scale", "fc31_alpha", "fc2_alpha",
            "fc31_input_scale", "fc2_input_scale")
