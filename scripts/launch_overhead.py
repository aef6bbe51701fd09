"""Host cost per launch of a compiled kernel, by piece (prints µs per call)."""
import time
import torch
from trtllm_b12x.arch import current_target
from trtllm_b12x.kernels.quantize import QuantizeConfig, get_kernel, launch


def per_call(fn, n=3000):
    for _ in range(100):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t = (time.perf_counter() - t0) / n * 1e6
    torch.cuda.synchronize()
    return t


x = torch.randn(1, 2048, device="cuda").bfloat16()
g = torch.ones(1, device="cuda")
q = torch.empty(1, 1024, dtype=torch.uint8, device="cuda")
s = torch.empty(1, 128, dtype=torch.uint8, device="cuda")
ck = get_kernel(QuantizeConfig(2048), current_target(), tvm_ffi=True)
st = torch.cuda.current_stream().cuda_stream
print("torch x.add_(0)          ", per_call(lambda: x.add_(0)))
print("torch.cuda.current_stream", per_call(lambda: torch.cuda.current_stream()))
print("ffi fn direct            ", per_call(lambda: ck.fn(x, q, s, g, st)))
print("launch() wrapper         ", per_call(lambda: launch(ck, x, q, s, g)))
import tvm_ffi
print("tvm_ffi version", tvm_ffi.__version__, "torch has c exchange:", hasattr(torch.Tensor, "__c_dlpack_exchange_api__"))
