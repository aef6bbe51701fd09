import pytest
import torch

cutlass = pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed")


def gpu_target():
    """The kernel tier of this machine's GPU, or None (tests then skip)."""
    from trtllm_b12x.arch import UnsupportedArchError, current_target

    if not torch.cuda.is_available():
        return None
    try:
        return current_target()
    except UnsupportedArchError:
        return None


requires_gpu = pytest.mark.skipif(gpu_target() is None, reason="needs an SM90 or SM120/SM121 GPU")
