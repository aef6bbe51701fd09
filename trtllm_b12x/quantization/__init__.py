"""The NVFP4 format: codecs, quantization, scale layouts, weight bundles, checkpoint reading.

Pure torch; never imports the kernels.
"""

from .bundle import NVFP4_BYTES_PER_ELEMENT, MoEWeights
from .checkpoint import load_moe_layer, moe_layers
from .codecs import (
    E2M1_MAX,
    E2M1_VALUES,
    E4M3_MAX,
    e2m1_decode,
    e2m1_encode,
    e4m3_decode,
    e4m3_encode,
    pack_e2m1,
    unpack_e2m1,
)
from .layouts import swizzle_128x4, swizzled_shape, unswizzle_128x4
from .nvfp4 import (
    BLOCK,
    NVFP4Tensor,
    dequantize_nvfp4,
    fake_quantize,
    global_scale_from_amax,
    quantize_activation,
    quantize_nvfp4,
    quantize_weight,
)

__all__ = [
    "BLOCK",
    "E2M1_MAX",
    "E2M1_VALUES",
    "E4M3_MAX",
    "MoEWeights",
    "NVFP4Tensor",
    "NVFP4_BYTES_PER_ELEMENT",
    "dequantize_nvfp4",
    "e2m1_decode",
    "e2m1_encode",
    "e4m3_decode",
    "e4m3_encode",
    "fake_quantize",
    "global_scale_from_amax",
    "load_moe_layer",
    "moe_layers",
    "pack_e2m1",
    "quantize_activation",
    "quantize_nvfp4",
    "quantize_weight",
    "swizzle_128x4",
    "swizzled_shape",
    "unpack_e2m1",
    "unswizzle_128x4",
]
