from dataclasses import dataclass, field


@dataclass
class Mapping:
    tp_size: int = 1
    moe_tp_size: int = 1
    moe_tp_rank: int = 0
    moe_ep_size: int = 1
    moe_ep_rank: int = 0
    moe_cluster_size: int = 1
    enable_attention_dp: bool = False


@dataclass
class ModelConfig:
    moe_backend: str = "CUTLASS"
    quant_config: object = None
    pretrained_config: object = None
    mapping: Mapping = field(default_factory=Mapping)
    skip_create_weights_in_init: bool = False
    moe_load_balancer: object = None
    lora_config: object = None
