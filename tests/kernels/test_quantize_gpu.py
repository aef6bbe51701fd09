"""GPU: the quantize kernel is bit-exact with quantization.quantize_nvfp4."""

import pytest
import torch

from conftest import requires_gpu
from trtllm_b12x.quantization import quantize_nvfp4, swizzle_128x4

pytestmark = [pytest.mark.gpu, requires_gpu]

HIDDEN = [2048, 1024, 2688, 7168, 4096]  # the presets' expert input widths


def _inputs(m, h, dtype, gen):
    x = torch.randn(m, h, generator=gen, device="cuda") * torch.rand(m, 1, generator=gen, device="cuda").mul(8).exp2()
    x[:, :16] = 0  # an all-zero block
    if m > 2:
        x[1, 16:32] *= 1e-6  # scales in the e4m3 subnormal range
        x[2, 40] = -0.0
    return x.to(dtype)


def _poisoned(m, h, layout):
    q = torch.full((m, h // 2), 0xAB, dtype=torch.uint8, device="cuda")
    rows = m if layout == "linear" else -(-m // 128) * 128
    cols = h // 16 if layout == "linear" else -(-(h // 16) // 4) * 4
    s = torch.full((rows, cols), 0x7F, dtype=torch.uint8, device="cuda").view(torch.float8_e4m3fn)  # e4m3 NaN
    return q, s


@pytest.mark.parametrize("layout", ["linear", "swizzled"])
@pytest.mark.parametrize("m", [1, 2, 7, 64, 1000, 8192])
@pytest.mark.parametrize("h", HIDDEN)
def test_bit_exact(m, h, layout):
    from trtllm_b12x.kernels.quantize import quantize_activations

    seed = torch.seed() % 2**31
    print(f"seed: {seed}")  # shown in a failing test's report
    gen = torch.Generator(device="cuda").manual_seed(seed)
    dtype = torch.bfloat16 if (m + h) % 2 == 0 else torch.float16
    x = _inputs(m, h, dtype, gen)
    g = (x.float().abs().amax() / 2688).reshape(1)
    out = _poisoned(m, h, layout)
    q, s = quantize_activations(x, g, sf_layout=layout, out=out)
    torch.cuda.synchronize()
    assert q.data_ptr() == out[0].data_ptr()
    rq, rs = quantize_nvfp4(x, g)
    assert torch.equal(q, rq)
    want = rs if layout == "linear" else swizzle_128x4(rs)
    assert torch.equal(s.view(torch.uint8), want.view(torch.uint8))


def test_saturating_scale_and_cpu_agreement():
    from trtllm_b12x.kernels.quantize import quantize_activations

    x = (torch.randn(33, 2048, device="cuda") * 100).bfloat16()
    g = torch.tensor([1e-4], device="cuda")  # far too small: block scales saturate at 448
    q, s = quantize_activations(x, g)
    rq, rs = quantize_nvfp4(x.cpu(), g.cpu())
    assert torch.equal(q.cpu(), rq) and torch.equal(s.view(torch.uint8).cpu(), rs.view(torch.uint8))
    assert (s.float() == 448).float().mean() > 0.9


def test_cuda_graph_replay_matches_eager():
    from trtllm_b12x.kernels.quantize import quantize_activations

    x = torch.randn(63, 4096, device="cuda").bfloat16()
    g = torch.tensor([0.003], device="cuda")
    out = _poisoned(63, 4096, "swizzled")
    quantize_activations(x, g, sf_layout="swizzled", out=out)  # compile/load outside capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        quantize_activations(x, g, sf_layout="swizzled", out=out)
    for _ in range(5):
        x.copy_(torch.randn_like(x, dtype=torch.float32).bfloat16())
        g.fill_(float(torch.rand(())) * 0.01 + 1e-3)
        graph.replay()
        rq, rs = quantize_nvfp4(x, g)
        assert torch.equal(out[0], rq) and torch.equal(out[1].view(torch.uint8), swizzle_128x4(rs).view(torch.uint8))


def test_input_errors():
    from trtllm_b12x.kernels.quantize import quantize_activations

    g = torch.ones(1, device="cuda")
    with pytest.raises(TypeError, match="supported: torch.bfloat16"):
        quantize_activations(torch.ones(2, 64, device="cuda"), g)
    with pytest.raises(ValueError, match="multiple of 16"):
        quantize_activations(torch.ones(2, 40, device="cuda").bfloat16(), g)
    with pytest.raises(ValueError, match="not contiguous"):
        quantize_activations(torch.ones(64, 4, device="cuda").bfloat16().t(), g)
    with pytest.raises(ValueError, match="1-element float32"):
        quantize_activations(torch.ones(2, 64, device="cuda").bfloat16(), torch.ones(2, device="cuda"))
    with pytest.raises(ValueError, match="needs a CUDA tensor"):
        quantize_activations(torch.ones(2, 64).bfloat16(), g.cpu())
