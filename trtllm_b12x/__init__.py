"""trtllm-b12x: NVFP4 mixture-of-experts decode kernels for TensorRT-LLM.

Importing the package has no side effects; see the submodules for the API.
"""

__version__ = "0.1.0"
