"""Test double of TensorRT-LLM: only the names and signatures trtllm_b12x.trtllm touches.

Two API generations live side by side (a real install has one): G1 in
``_torch/modules/fused_moe``, G2 in ``_torch/moe/fused_moe``; tests import one of them.
``_stage.STAGE`` picks the G2 stage (G2a, G2b, G2c; see docs/trtllm.md): the G2 modules
follow each stage's upstream files where the adapter depends on them.
"""

__version__ = "0.0.0+test-double"
