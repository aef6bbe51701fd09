"""Small synthetic MoE layers for CPU tests."""

import torch

from trtllm_b12x.models import MoEShape, make_moe_weights

SMALL_GATED = MoEShape("small-gated", 64, 96, 6, 2, "swiglu", "synthetic")
SMALL_RELU2 = MoEShape("small-relu2", 96, 32, 5, 3, "relu2", "synthetic")


def small_weights(shape=SMALL_GATED, seed=None):
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()))
        print(f"small_weights({shape.name}) seed: {seed}")  # shown in a failing test's report
    return make_moe_weights(shape, seed=seed)
