"""The SM120 tier's layouts and dataflow, checked on the CPU.

1. Lane by lane, the emulated block-scaled MMAs over the weights exactly as the SM120 kernel
   reads them (the bundle's TensorRT-LLM CUTLASS tensors in place: row-major codes, 128x4
   scale words at the kernel's addresses) equal the exact dense product of the logical
   weights (the bundle's own un-swizzling accessors), for every preset's FC1 and FC2 — bit for bit.
2. A permuted 128x4 tile, swapped ``[w3; w1]`` halves, an off-by-one row or a wrong shared-memory
   word order fail that comparison.
3. The host model of the kernel's dataflow (token quantization, epilogue, requantized NVFP4
   intermediate, FC2, slot-ordered sum) reproduces ``reference.py`` in W4A4 mode.
"""

import pytest
import torch

from trtllm_b12x.activation import Activation
from trtllm_b12x.arch import get_target
from trtllm_b12x.models import PRESETS, MoEShape, make_hidden_states, make_moe_weights, make_routing
from trtllm_b12x.moe import MoERunner
from trtllm_b12x.quantization.codecs import unpack_e2m1
from trtllm_b12x.quantization.layouts import scale_words
from trtllm_b12x.quantization.mma_emulator import e2m1_units, e4m3_units, stored_gemv
from trtllm_b12x.quantization.nvfp4 import quantize_nvfp4
from trtllm_b12x.reference import moe_reference, relative_error

from conftest import W4A4_BOUND

pytest.importorskip("cutlass", reason="nvidia-cutlass-dsl is not installed")

ODD = MoEShape("odd-gated-384", 384, 80, 7, 3, "swiglu", "-")


def _fused(shape, experts, seed=0, act=None, **runner_kw):
    from trtllm_b12x.kernels.moe_decode_sm120 import FusedDecodeSm120

    w = make_moe_weights(shape, seed=seed, num_experts=experts)
    runner = MoERunner(w, act or shape.default_activation(), **runner_kw)
    return FusedDecodeSm120(runner, target=get_target("sm_120a"))


def _dense(data, scale):
    """Exact integer values (units of 2^-10) of an NVFP4 matrix."""
    return e2m1_units(unpack_e2m1(data)) * e4m3_units(scale.view(torch.uint8)).repeat_interleave(16, -1)


def _tokens(p, k, seed):
    x = torch.randn(p, k, generator=torch.Generator().manual_seed(seed))
    return quantize_nvfp4(x, 0.003)


def _fc1(w, e=0):
    return w.w13[e], scale_words(w.w13_scale[e], w.fc1_rows, w.hidden_size // 64, w.scale_layout)


def _fc2(w, e=0):
    return w.w2[e], scale_words(w.w2_scale[e], w.hidden_size, w.fc2_cols // 64, w.scale_layout)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_emulated_mma_is_the_exact_product(name):
    shape = PRESETS[name]
    f = _fused(shape, 1)
    w, inter = f.weights, shape.intermediate_size
    # FC1: every stored row ([w3; w1], then TensorRT-LLM's zero rows), 5 tokens
    xd, xs = _tokens(5, shape.hidden_size, 1)
    got = stored_gemv(*_fc1(w), xd, xs)
    dense = {p: _dense(*(t[0] for t in w.fc1_half(p, [0]))) @ _dense(xd, xs).t() for p in w.fc1_projections}
    up_first = [dense["w3"], dense["w1"]] if shape.gated else [dense["w1"]]
    assert torch.equal(got[: len(up_first) * inter], torch.cat(up_first))
    assert not got[len(up_first) * inter:].any()  # padded rows are exactly zero
    # FC2 over the stored K (its padding columns are zero codes and scales)
    ad, as_ = _tokens(8, w.fc2_cols, 2)
    got = stored_gemv(*_fc2(w), ad, as_)
    want = _dense(*(t[0] for t in w.fc2([0]))) @ _dense(ad, as_)[:, :inter].t()
    assert torch.equal(got, want)


@pytest.mark.parametrize("permute", ["128x4 tile", "scale bytes", "[w3; w1] halves", "row off by one",
                                     "code words"])
def test_a_permuted_layout_fails(permute):
    f = _fused(PRESETS["qwen3-30b-a3b"], 1)
    w = f.weights
    codes, words = _fc1(w)
    xd, xs = _tokens(8, w.hidden_size, 3)
    right = stored_gemv(codes, words, xd, xs)
    sf = w.w13_scale[0].view(torch.uint8).reshape(-1, 512)  # the 128x4 tiles as stored
    if permute == "128x4 tile":  # every tile's 32 lines of 16 bytes in reverse order
        words = scale_words(sf.view(-1, 32, 16).flip(1), w.fc1_rows, w.hidden_size // 64, "swizzled")
    elif permute == "scale bytes":  # the 4 blocks of each word reversed
        words = scale_words(sf.view(-1, 4).flip(1), w.fc1_rows, w.hidden_size // 64, "swizzled")
    elif permute == "[w3; w1] halves":
        i = w.intermediate_size
        codes = torch.cat([codes[i:2 * i], codes[:i], codes[2 * i:]])
        words = torch.cat([words[i:2 * i], words[:i], words[2 * i:]])
    elif permute == "row off by one":
        codes = torch.roll(codes, 1, 0)
    else:  # the two halves of every row (the shared-memory swap applied twice)
        codes = codes.view(codes.shape[0], -1, 2, 16).flip(2).reshape(codes.shape)
    wrong = stored_gemv(codes.contiguous(), words.contiguous(), xd, xs)
    assert not torch.equal(wrong, right)
    assert relative_error(wrong.double(), right.double()) > 0.1


# fewer experts on the largest layers keep the suite fast; routing still spreads over them
CASES = [(n, 4 if s.hidden_size * s.intermediate_size > 4e6 else 8) for n, s in sorted(PRESETS.items())]
CASES += [("odd-gated-384", 7)]


@pytest.mark.parametrize("name, experts", CASES)
def test_host_model_reproduces_the_w4a4_oracle(name, experts):
    from trtllm_b12x.kernels.decode_model import decode_sm120_model

    shape = PRESETS.get(name, ODD)
    f = _fused(shape, experts, seed=4)
    for m, skew in ((1, 0.0), (13, 2.0)):
        x = make_hidden_states(m, shape, seed=m)
        ids, w = make_routing(m, experts, min(shape.top_k, experts), seed=m, skew=skew)
        out = decode_sm120_model(f, x, ids, w)
        ref = moe_reference(x, ids, w, f.weights, f.activation, mode="w4a4")
        assert relative_error(out, ref) <= W4A4_BOUND
        assert relative_error(out, moe_reference(x, ids, w, f.weights, f.activation)) > 3 * W4A4_BOUND  # W4A4 is not W4A16


def test_host_model_with_expert_parallel_and_swiglu_parameters():
    from trtllm_b12x.kernels.decode_model import decode_sm120_model
    from trtllm_b12x.kernels.moe_decode_sm120 import FusedDecodeSm120

    shape = PRESETS["qwen3-30b-a3b"]
    full = make_moe_weights(shape, seed=6, num_experts=8)
    act = Activation("swiglu", alpha=1.702, beta=1.0, limit=0.5)
    m = 9
    x = make_hidden_states(m, shape, seed=2)
    ids, w = make_routing(m, 8, shape.top_k, seed=2)
    total = torch.zeros(m, shape.hidden_size)
    for rank in range(2):
        r = MoERunner.shard(full, act, ep_size=2, ep_rank=rank)
        f = FusedDecodeSm120(r, target=get_target("sm_121a"))
        out = decode_sm120_model(f, x, ids, w)
        ref = moe_reference(x, ids, w, r.weights, act, mode="w4a4", local_expert_offset=r.parallel.expert_offset)
        assert relative_error(out, ref) <= W4A4_BOUND
        total += out
    assert relative_error(total, moe_reference(x, ids, w, full, act, mode="w4a4")) <= W4A4_BOUND


def test_sm120_tier_rejects_what_it_cannot_take():
    from trtllm_b12x.kernels.moe_decode_sm120 import FusedDecodeSm120

    shape = MoEShape("h96", 96, 64, 4, 2, "swiglu", "-")
    w = make_moe_weights(shape, num_experts=4)
    assert "not a multiple of 64 (tier sm120)" in FusedDecodeSm120.shape_reason(w)
    w = make_moe_weights(PRESETS["qwen3-30b-a3b"], num_experts=2)
    no_scale = type(w)(**{**w.__dict__, "fc1_input_scale": None})
    assert "needs the FC1 input scale" in FusedDecodeSm120.shape_reason(no_scale)


def test_self_check_accepts_the_model_and_rejects_a_wrong_kernel(monkeypatch, tmp_path):
    """The first-use check compares the launched kernels with the host model; here the launch
    is replaced (no SM120 GPU): by the W4A4 oracle (another implementation of the same math,
    within the bound) it passes, by a 10 % wrong result it raises."""
    from trtllm_b12x.kernels.cache import KernelCache
    from trtllm_b12x.kernels.decode_model import decode_sm120_model
    from trtllm_b12x.kernels.moe_decode_sm120 import FusedDecodeSm120

    shape = PRESETS["nemotron-3-super"]
    w = make_moe_weights(shape, num_experts=4)
    runner = MoERunner(w, shape.default_activation())
    f = FusedDecodeSm120(runner, target=get_target("sm_120a"), cache=KernelCache(root=tmp_path, use_disk=False))

    launches = []

    def oracle_launch(self, x, ids, rw, out, workspace=None):  # not the model: the W4A4 oracle
        launches.append(x.shape[0])
        out.copy_(moe_reference(x, ids, rw, self.weights, self.activation, mode="w4a4",
                                local_expert_offset=self.parallel.expert_offset))

    monkeypatch.setattr(FusedDecodeSm120, "__call__", oracle_launch)
    f.compile_all("bfloat16", 4)  # compiles both phases for sm_120a, then checks: a correct kernel passes
    assert launches == [1]

    def wrong_launch(self, x, ids, rw, out, workspace=None):
        out.copy_(1.1 * decode_sm120_model(self, x, ids, rw))

    monkeypatch.setattr(FusedDecodeSm120, "__call__", wrong_launch)
    for _ in range(2):  # a failed check is not remembered as compiled
        with pytest.raises(RuntimeError, match="SM120 decode self-check failed on this GPU \\(bfloat16, top_k=2\\)"):
            f.compile_all("bfloat16", 2)
