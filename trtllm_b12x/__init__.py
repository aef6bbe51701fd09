"""trtllm-b12x: NVFP4 mixture-of-experts decode kernels for TensorRT-LLM.

Importing the package has no side effects; see the submodules for the API.
"""

__version__ = "0.1.0"


def enable():
    """Promote the b12x MoE backend under TensorRT-LLM's ``moe_backend: CUTLASS``
    (see :func:`trtllm_b12x.trtllm.enable`)."""
    from .trtllm import enable as _enable

    return _enable()
