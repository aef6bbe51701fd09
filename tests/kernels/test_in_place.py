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
