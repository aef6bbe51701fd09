import json

import pytest
import torch
from safetensors.torch import save_file

from trtllm_b12x.quantization import load_moe_layer, moe_layers, quantize_weight


def _proj(gen, n, k, prefix, out, input_scale=0.01):
    q = quantize_weight(torch.randn(n, k, generator=gen).to(torch.bfloat16))
    out[f"{prefix}.weight"] = q.data
    out[f"{prefix}.weight_scale"] = q.scale
    out[f"{prefix}.weight_scale_2"] = q.global_scale.reshape(())
    out[f"{prefix}.input_scale"] = torch.tensor(input_scale)
    return q


def test_reads_gated_layer_across_shards(tmp_path, gen):
    h, inter, n_exp = 64, 32, 4
    shard0, shard1, want = {}, {}, []
    for e in range(n_exp):
        dst = shard0 if e < 2 else shard1
        base = f"model.layers.3.mlp.experts.{e}"
        g = _proj(gen, inter, h, f"{base}.gate_proj", dst)
        u = _proj(gen, inter, h, f"{base}.up_proj", dst, input_scale=0.02)
        d = _proj(gen, h, inter, f"{base}.down_proj", dst)
        want.append((g, u, d))
    # distractors: a shared expert, another layer, a dense weight
    _proj(gen, inter, h, "model.layers.3.mlp.shared_experts.up_proj", shard0)
    _proj(gen, inter, h, "model.layers.5.mlp.experts.0.gate_proj", shard1)
    shard0["model.embed_tokens.weight"] = torch.zeros(4, 4)
    save_file(shard0, tmp_path / "model-00001-of-00002.safetensors")
    save_file(shard1, tmp_path / "model-00002-of-00002.safetensors")
    wm = {k: "model-00001-of-00002.safetensors" for k in shard0} | {k: "model-00002-of-00002.safetensors" for k in shard1}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))

    assert moe_layers(tmp_path) == [3, 5]
    b = load_moe_layer(tmp_path, 3)
    assert b.gated and (b.num_experts, b.hidden_size, b.intermediate_size) == (n_exp, h, inter)
    for e, (g, u, d) in enumerate(want):
        assert torch.equal(b.dequant_w13()[e, :inter], g.dequantize())
        assert torch.equal(b.dequant_w13()[e, inter:], u.dequantize())
        assert torch.equal(b.dequant_w2()[e], d.dequantize())
    assert b.fc1_input_scale.tolist() == pytest.approx([0.02] * n_exp)
    with pytest.raises(ValueError, match=r"MoE layers present: \[3, 5\]"):
        load_moe_layer(tmp_path, 4)
    with pytest.raises(ValueError, match="incomplete projections"):
        load_moe_layer(tmp_path, 5)


def test_reads_nemotron_latent_relu2_experts(tmp_path, gen):
    latent, inter, tensors, want = 64, 48, {}, []
    for e in range(3):
        base = f"backbone.layers.1.mixer.experts.{e}"
        want.append((_proj(gen, inter, latent, f"{base}.up_proj", tensors),
                     _proj(gen, latent, inter, f"{base}.down_proj", tensors)))
    save_file(tensors, tmp_path / "model.safetensors")
    b = load_moe_layer(tmp_path / "model.safetensors", 1)
    assert not b.gated and (b.hidden_size, b.intermediate_size) == (latent, inter)
    for e, (up, down) in enumerate(want):
        assert torch.equal(b.dequant_w13()[e], up.dequantize())
        assert torch.equal(b.dequant_w2()[e], down.dequantize())


def test_w1_w2_w3_names_and_missing_dir(tmp_path, gen):
    tensors = {}
    for e in range(2):
        base = f"model.layers.0.block_sparse_moe.experts.{e}"
        for p, (n, k) in {"w1": (32, 64), "w3": (32, 64), "w2": (64, 32)}.items():
            _proj(gen, n, k, f"{base}.{p}", tensors)
    save_file(tensors, tmp_path / "x.safetensors")
    assert load_moe_layer(tmp_path, 0).gated
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no \\*.safetensors"):
        load_moe_layer(empty, 0)
