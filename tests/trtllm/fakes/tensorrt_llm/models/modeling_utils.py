from dataclasses import dataclass
from enum import Enum


class QuantAlgo(str, Enum):
    NVFP4 = "NVFP4"
    NVFP4_AWQ = "NVFP4_AWQ"
    W4A16_NVFP4 = "W4A16_NVFP4"
    FP8 = "FP8"
    FP8_BLOCK_SCALES = "FP8_BLOCK_SCALES"
    MIXED_PRECISION = "MIXED_PRECISION"


@dataclass
class QuantConfig:
    quant_algo: QuantAlgo | None = None
