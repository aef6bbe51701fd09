"""The checkpoint reader and the bundle refuse what the kernels would turn into garbage, with
the file, tensor, expert, value and rule named."""

import pytest
import torch
from safetensors.torch import save_file

from trtllm_b12x.models import make_moe_weights
from trtllm_b12x.quantization import load_moe_layer, quantize_weight
from trtllm_b12x.quantization.bundle import MoEWeights

from helpers import SMALL_GATED

H, I, E = 64, 32, 3
BASE = "model.layers.2.mlp.experts.{e}.{p}"


def _layer(gen):
    """A valid gated layer's tensors (ModelOpt names)."""
    out = {}
    for e in range(E):
        for p, (n, k) in (("gate_proj", (I, H)), ("up_proj", (I, H)), ("down_proj", (H, I))):
            q = quantize_weight(torch.randn(n, k, generator=gen).to(torch.bfloat16))
            name = BASE.format(e=e, p=p)
            out[f"{name}.weight"] = q.data
            out[f"{name}.weight_scale"] = q.scale
            out[f"{name}.weight_scale_2"] = q.global_scale.reshape(())
            out[f"{name}.input_scale"] = torch.tensor(0.01)
    return out


def _save(tmp_path, tensors):
    f = tmp_path / "model.safetensors"
    save_file(tensors, f)
    return f


def _name(e, p, key):
    return BASE.format(e=e, p=p) + "." + key


def test_the_valid_layer_loads(tmp_path, gen):
    w = load_moe_layer(_save(tmp_path, _layer(gen)), 2)
    assert (w.num_experts, w.hidden_size, w.intermediate_size) == (E, H, I)


BAD_SCALARS = [
    ("int32 global", "weight_scale_2", lambda t: torch.tensor(3, dtype=torch.int32), r"dtype torch.int32"),
    ("nan input scale", "input_scale", lambda t: torch.tensor(float("nan")), r"value nan; .*finite and > 0"),
    ("vector global", "weight_scale_2", lambda t: t.reshape(1).repeat(4), r"shape \(4,\); a per-tensor scale"),
    ("inf global", "weight_scale_2", lambda t: torch.tensor(float("inf")), r"value inf; .*finite and > 0"),
    ("zero global", "weight_scale_2", lambda t: torch.tensor(0.0), r"value 0.0; .*finite and > 0"),
    ("negative input scale", "input_scale", lambda t: torch.tensor(-0.5), r"value -0.5; .*finite and > 0"),
]


@pytest.mark.parametrize("what, key, bad, rule", BAD_SCALARS, ids=[b[0] for b in BAD_SCALARS])
def test_a_bad_scalar_is_refused_naming_file_and_tensor(tmp_path, gen, what, key, bad, rule):
    t = _layer(gen)
    name = _name(1, "down_proj", key)
    t[name] = bad(t[name])
    f = _save(tmp_path, t)
    with pytest.raises(ValueError, match=rule) as err:
        load_moe_layer(f, 2)
    assert str(f) in str(err.value) and name in str(err.value)


def test_a_missing_global_is_named(tmp_path, gen):
    t = _layer(gen)
    del t[_name(2, "up_proj", "weight_scale_2")]
    f = _save(tmp_path, t)
    with pytest.raises(ValueError, match=r"expert 2 up projection, weight_scale_2 \(absent\): missing"):
        load_moe_layer(f, 2)


def test_one_expert_without_input_scale_is_refused(tmp_path, gen):
    t = _layer(gen)
    del t[_name(1, "gate_proj", "input_scale")]
    with pytest.raises(ValueError, match=r"expert 1 gate projection, input_scale \(absent\): missing while other"):
        load_moe_layer(_save(tmp_path, t), 2)


def test_experts_of_different_shapes_are_refused(tmp_path, gen):
    t = _layer(gen)
    q = quantize_weight(torch.randn(I + 16, H, generator=gen).to(torch.bfloat16))
    t[_name(2, "up_proj", "weight")], t[_name(2, "up_proj", "weight_scale")] = q.data, q.scale
    f = _save(tmp_path, t)
    with pytest.raises(ValueError, match=r"tensor .*experts\.2\.up_proj\.weight: shape \(48, 32\); expert 0 has \(32, 32\)"):
        load_moe_layer(f, 2)


@pytest.mark.parametrize("byte, what", [(0x7F, "NaN"), (0x90, "negative")])
def test_nan_or_negative_block_scales_are_refused(tmp_path, gen, byte, what):
    t = _layer(gen)
    name = _name(0, "gate_proj", "weight_scale")
    u = t[name].view(torch.uint8).clone()
    u[5, 1] = byte
    t[name] = u.view(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match=rf"{name}: row 5, block 1 holds 0x{byte:02x}.*finite and non-negative"):
        load_moe_layer(_save(tmp_path, t), 2)


def test_a_truncated_file_is_named(tmp_path, gen):
    f = _save(tmp_path, _layer(gen))
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"{f}: (not a readable safetensors file|tensor .* cannot be read)"):
        load_moe_layer(f, 2)
    f.write_bytes(b"\x00" * 3)
    with pytest.raises(ValueError, match=rf"{f}: not a readable safetensors file"):
        load_moe_layer(f, 2)


def test_a_missing_path_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere: no such checkpoint"):
        load_moe_layer(tmp_path / "nowhere", 0)


@pytest.mark.parametrize("field, value, rule", [
    ("w13_global", float("inf"), r"MoEWeights.w13_global: expert 1, half 0 is inf"),
    ("w2_global", 0.0, r"MoEWeights.w2_global: expert 1 is 0.0"),
    ("fc1_input_scale", -1.0, r"MoEWeights.fc1_input_scale: expert 1 is -1.0"),
    ("fc2_input_scale", float("nan"), r"MoEWeights.fc2_input_scale: expert 1 is nan"),
])
def test_the_bundle_refuses_bad_globals(field, value, rule):
    w = make_moe_weights(SMALL_GATED, seed=0)
    t = getattr(w, field).clone()
    t[1] = value
    with pytest.raises(ValueError, match=rule + ".*must be finite and > 0"):
        MoEWeights(**{**w.__dict__, field: t})
