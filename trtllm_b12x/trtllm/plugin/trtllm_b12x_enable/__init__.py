"""Imported by ``trtllm-serve`` / ``trtllm-bench --custom_module_dirs``: enables the b12x MoE
backend (see :mod:`trtllm_b12x.trtllm`)."""

import trtllm_b12x.trtllm

status = trtllm_b12x.trtllm.enable()
