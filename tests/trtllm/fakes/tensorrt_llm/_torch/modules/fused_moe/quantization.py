from ...fake_moe import NVFP4MethodBase


class FusedMoEMethodBase:
    def post_load_weights(self, module):
        pass


class UnquantizedFusedMoEMethod(FusedMoEMethodBase):
    def create_weights(self, module):
        pass

    def load_weights(self, module, weights, weight_loading_mode):
        pass


class FP8QDQFusedMoEMethod(UnquantizedFusedMoEMethod):
    pass


class NVFP4CutlassFusedMoEMethod(NVFP4MethodBase, FusedMoEMethodBase):
    pass


class W4A16NVFP4CutlassFusedMoEMethod(NVFP4CutlassFusedMoEMethod):
    swizzled = False
