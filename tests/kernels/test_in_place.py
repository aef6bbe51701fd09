"""The decode kernels read the bundle's tensors (TensorRT-LLM's CUTLASS layout) in place."""

import pytest

from trtllm_b12x.arch import get_target
from trtllm_b12x.models import PRESETS, make_moe_weights
from trtllm_b12x.moe import MoERunner

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed")


@pytest.mark.parametrize("name", ["qwen3-30b-a3b", "nemotron-3-nano"])
@pytest.mark.parametrize("arch", ["sm_90a", "sm_120a"])
def test_decode_holds_views_of_the_bundle_and_no_weights_of_its_own(name, arch):
    from trtllm_b12x.kernels.decode import fused_decode_class

    shape = PRESETS[name]
    w = make_moe_weights(shape, num_experts=4)
    target = get_target(arch)
    f = fused_decode_class(target.tier)(MoERunner(w, shape.default_activation()), target=target)
    for view, t in zip((*f.fc1, *f.fc2), (w.w13, w.w13_scale, w.w2, w.w2_scale)):
        assert view.untyped_storage().data_ptr() == t.untyped_storage().data_ptr()
        assert view.numel() * view.element_size() == t.numel() * t.element_size()
    held = f.held_bytes()
    assert set(held) == {"scalars", "workspace"} and held["scalars"] <= 32 * w.num_experts


def test_a_misaligned_weight_tensor_is_refused_by_name():
    """The kernels read the stored tensors in 16-byte vectors: a view that starts off a
    16-byte boundary is a clear error (and, through the factory, a fallback with one log
    line), not a misaligned load on the GPU."""
    import torch

    from trtllm_b12x.kernels.decode import fused_decode_class
    from trtllm_b12x.quantization.bundle import MoEWeights

    shape = PRESETS["qwen3-30b-a3b"]
    w = make_moe_weights(shape, num_experts=2)
    n = w.w2_scale.numel() * w.w2_scale.element_size()
    buf = torch.zeros(n + 4, dtype=torch.uint8)
    moved = buf[4:].view(w.w2_scale.dtype).view(w.w2_scale.shape)
    moved.copy_(w.w2_scale)
    bad = MoEWeights(**{**w.tensors(), "w2_scale": moved}, intermediate=w.intermediate, scale_layout=w.scale_layout)
    target = get_target("sm_90a")
    with pytest.raises(ValueError, match=r"MoEWeights.w2_scale starts at address 0x[0-9a-f]+; the kernels read it in 16-byte"):
        fused_decode_class(target.tier)(MoERunner(bad, shape.default_activation()), target=target)
    assert "16-byte vectors" in fused_decode_class(target.tier).shape_reason(bad)
