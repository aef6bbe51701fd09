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
    assert ip % 128 == 0 and hn % 256 == 0 and hk % 128 == 0 and ip >= i and hn >= h and hk >= h
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
