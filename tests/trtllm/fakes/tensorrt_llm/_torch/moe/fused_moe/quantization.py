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
