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


# SM120 (W4A4) decode vs the W4A4 oracle: output rounding to bf16/fp16 (about 2e-3) plus
# FC2-input requantizations that FP32 summation order moves by one E2M1 step (about 4e-3
# each in a 5-token batch, measured on the exact host model); a layout error is of order one.
W4A4_BOUND = 1.5e-2
