"""The Humming bench peer's own side, on the CPU: the ModelOpt tensors it hands over, the
routing alignment it builds, and why it does not run here (Humming itself needs an SM90 GPU)."""

import pytest
import torch

from trtllm_b12x.bench import humming_peer as hp
from trtllm_b12x.models import PRESETS, make_moe_weights, parse_shape
from trtllm_b12x.quantization.nvfp4 import dequantize_nvfp4


@pytest.mark.parametrize("shape", [PRESETS["qwen3-30b-a3b"], parse_shape("2688,1856,8,2,relu2"),
                                   parse_shape("256,704,8,2,swiglu")], ids=lambda s: s.name)
def test_modelopt_tensors_are_the_layer_zero_padded(shape):
    w = make_moe_weights(shape, seed=1, num_experts=8)
    fc1, fc2, (ip, hn, hk) = hp.modelopt_tensors(w)
    e, h, i = w.num_experts, w.hidden_size, w.intermediate_size
    g = len(w.fc1_projections)
    assert (g * ip) % 256 == 0 and ip % 128 == 0 and ip >= i and hn % 256 == 0 and hn >= h
    assert hk == -(-h // 128) * 128
    assert fc1["weight"].shape == (e, g * ip, hk // 2) and fc1["weight_scale"].shape == (e, g * ip, hk // 16)
    assert fc2["weight"].shape == (e, hn, ip // 2) and fc2["weight_scale"].shape == (e, hn, ip // 16)
    assert fc1["weight_scale"].dtype == torch.float8_e4m3fn and fc1["weight_scale_2"].shape == (e, g)
    d1 = dequantize_nvfp4(fc1["weight"], fc1["weight_scale"])
    want = w.dequant_w13().view(e, g, i, h)  # gate, then up, each times its global
    for half in range(g):
        rows = d1[:, half * ip : (half + 1) * ip]
        assert torch.equal(rows[:, :i, :h] * fc1["weight_scale_2"][:, half, None, None], want[:, half])
        assert not rows[:, i:].any() and not rows[:, :, h:].any()
    d2 = dequantize_nvfp4(fc2["weight"], fc2["weight_scale"], fc2["weight_scale_2"])
    assert torch.equal(d2[:, :h, :i], w.dequant_w2()) and not d2[:, h:].any() and not d2[:, :, i:].any()


@pytest.mark.parametrize("m, k, experts, block", [(1, 8, 128, 8), (5, 2, 8, 16), (63, 8, 16, 64), (3, 4, 4, 1)])
def test_align_blocks_puts_each_routed_row_once_in_its_experts_blocks(m, k, experts, block):
    ids = torch.randint(0, experts, (m, k), generator=torch.Generator().manual_seed(m + k), dtype=torch.int32)
    sorted_ids, expert_ids, padded = hp.align_blocks(ids, block, experts)
    n = m * k
    counts = torch.bincount(ids.reshape(-1).long(), minlength=experts)
    assert sorted_ids.shape == (n + experts * (block - 1),) and padded.shape == (1,)
    assert padded.item() == int(((counts + block - 1) // block * block).sum())
    used = sorted_ids[: padded.item()]
    real = used[used < n]
    assert sorted(real.tolist()) == list(range(n)) and (sorted_ids[padded.item():] == n).all()
    for b in range(padded.item() // block):
        rows = used[b * block : (b + 1) * block]
        rows = rows[rows < n].long()
        assert rows.numel() > 0 and (ids.reshape(-1)[rows] == expert_ids[b]).all()
        assert torch.equal(rows, rows.sort().values)  # routing order within an expert


def test_why_it_does_not_run_here(monkeypatch):
    assert hp.unavailable(torch.device("cpu")) == "no CUDA GPU here"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (12, 0))
    assert "SM90 path only" in hp.unavailable(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    monkeypatch.setitem(__import__("sys").modules, "humming", None)  # not installed
    assert hp.unavailable(torch.device("cuda")).startswith("humming-kernels is not installed (pip install")


def test_the_bench_lists_it_as_not_run_on_a_cpu():
    from trtllm_b12x.bench.moe import run_sweep

    shape = PRESETS["qwen3-30b-a3b"]
    res = run_sweep(shape, make_moe_weights(shape, seed=0, num_experts=8), [1], impls=["humming-w4a16"], reps=1)
    assert res.rows == [] and res.skipped["humming-w4a16"].startswith("no CUDA GPU here (SM90 GPU, humming-kernels")


def _fake_humming(monkeypatch, calls):
    """A double of the Humming calls the peer makes, written from their contract in humming
    0.1.20 (``schema/modelopt.py``, ``transform.py``, ``forward.py``, ``csrc/launcher``):
    ``convert_humming`` turns per-stack globals into one per output channel where they differ;
    the transform is checked to need no padding (the peer pads); ``humming_forward`` computes,
    per block ``b`` of ``sorted_ids`` below ``num_tokens_padded``, row ``sid`` of the output
    from input row ``sid // top_k`` and expert ``expert_ids[b]``, skipping ``sid >=
    valid_shape_m``; router weights are not applied."""
    import sys
    import types

    from trtllm_b12x.quantization.nvfp4 import dequantize_nvfp4

    class Schema:
        @classmethod
        def from_config(cls, config):
            assert config == {"quant_method": "modelopt", "quant_algo": "nvfp4"}
            return cls()

        def convert_humming(self, t, shape_n_stacks, shape_k_stacks, param_dtype, num_experts, device=None):
            g = t["weight_scale_2"].view(num_experts, -1)
            per_row = g.repeat_interleave(torch.tensor(shape_n_stacks), dim=1) if g.shape[1] > 1 else g
            return "schema", {"weight": t["weight"].view(torch.int32), "weight_scale": t["weight_scale"],
                              "weight_scale_2": per_row}

    def transform(t, shape_n, shape_k, weight_schema, input_schema, num_experts, pad_n_to_multiple,
                  pad_k_to_multiple, torch_dtype, device):
        assert shape_n % pad_n_to_multiple == 0 and shape_k % pad_k_to_multiple == 0, "the peer pads"
        assert t["weight"].shape == (num_experts, shape_n, shape_k // 8) and input_schema is None
        return {"n": shape_n, "k": shape_k}, t

    def forward(cfg, *, inputs, weight, weight_scale, weight_scale_2, outputs, sorted_ids, expert_ids,
                num_tokens_padded, locks, top_k, valid_shape_m, compute_config, tuning_config):
        import json

        assert json.loads(compute_config)["gemm_type"] == "indexed" and outputs.shape[1] == cfg["n"]
        block = json.loads(tuning_config)["block_shape"][0]
        calls.append((cfg["n"], top_k, block))
        for b in range(int(num_tokens_padded.item()) // block):
            e = int(expert_ids[b])
            wt = dequantize_nvfp4(weight[e].view(torch.uint8), weight_scale[e]) * weight_scale_2[e].view(-1, 1)
            for sid in sorted_ids[b * block : (b + 1) * block].tolist():
                if sid < valid_shape_m:
                    outputs[sid] = (inputs[sid // top_k].float() @ wt.T).to(outputs.dtype)

    mods = {"humming": types.ModuleType("humming")}
    for name, attrs in {"forward": {"humming_forward": forward}, "schema": {}, "schema.base": {"BaseWeightSchema": Schema},
                        "transform": {"prepare_and_transform_humming_tensors": transform},
                        "tune": {"get_heuristics_config": lambda cfg, shape_m, gemm_type: {
                            "block_shape": [8 if shape_m <= 16 else 16, 128]}}}.items():
        mod = types.ModuleType(f"humming.{name}")
        mod.__dict__.update(attrs)
        mods[f"humming.{name}"] = mod
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.mark.parametrize("shape", [PRESETS["qwen3-30b-a3b"], parse_shape("2688,1856,8,2,relu2")], ids=lambda s: s.name)
def test_the_peer_computes_the_layer_through_the_humming_calls(monkeypatch, shape):
    """On the CPU, through the double: the padded tensors, the sort, FC2's top_k = 1 over the
    same rows, the activation's halves and the top-k sum give the layer (against the oracle)."""
    from trtllm_b12x.metrics import relative_error
    from trtllm_b12x.models import make_hidden_states, make_routing
    from trtllm_b12x.reference import moe_reference

    calls = []
    _fake_humming(monkeypatch, calls)
    w = make_moe_weights(shape, seed=2, num_experts=8)
    act = shape.default_activation()
    fn = hp.build(w, act)
    for m in (1, 5):
        x = make_hidden_states(m, shape, seed=m)
        ids, rw = make_routing(m, w.num_experts, shape.top_k, seed=m)
        err = relative_error(fn(x, ids, rw).float(), moe_reference(x, ids, rw, w, act))
        assert err < 1e-2, err
    g = 2 if shape.activation == "swiglu" else 1
    n1 = g * -(-shape.intermediate_size // (256 // g)) * (256 // g)
    hn = -(-shape.hidden_size // 256) * 256
    assert calls[:2] == [(n1, shape.top_k, 8), (hn, 1, 8)]
    with pytest.raises(ValueError, match="bfloat16"):
        fn(x.half(), ids, rw)
