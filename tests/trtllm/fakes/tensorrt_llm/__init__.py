"""Test double of TensorRT-LLM: only the names and signatures trtllm_b12x.trtllm touches.

Two API generations live side by side (a real install has one): G1 in
``_torch/modules/fused_moe``, G2 in ``_torch/moe/fused_moe``; tests import one of them.
"""

__version__ = "0.0.0+test-double"
