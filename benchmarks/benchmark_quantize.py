"""NVFP4 activation-quantize kernel: achieved bandwidth vs the torch reference, launch
overhead per path (TVM-FFI vs DLPack), and warm-disk-cache load time in a fresh process.

    python benchmarks/benchmark_quantize.py [--out DIR]

Writes quantize_<gpu>_<date>.json and .png to DIR (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from trtllm_b12x.arch import current_target
from trtllm_b12x.bench.timing import time_gpu
from trtllm_b12x.kernels.cache import KernelCache, launch
from trtllm_b12x.kernels.quantize import QuantizeConfig, get_kernel, quantize_activations
from trtllm_b12x.quantization import quantize_nvfp4

SIZES = [(1, 2048), (64, 4096), (1024, 4096), (4096, 7168), (8192, 7168), (16384, 4096), (32768, 4096), (32768, 7168)]


def copy_bandwidth() -> float:
    """Device-to-device copy, bytes read + written per second (the HBM ceiling we compare with)."""
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    t = time_gpu(lambda: b.copy_(a), reps=20, flush_l2=False)
    return 2 * n / (t.median_us * 1e-6)


def launch_overhead(cache: KernelCache) -> dict:
    """Host µs per launch, by path: many back-to-back launches of a tiny problem, host clock."""
    x = torch.randn(1, 2048, device="cuda").bfloat16()
    g = torch.ones(1, device="cuda")
    q = torch.empty(1, 1024, dtype=torch.uint8, device="cuda")
    s = torch.empty(1, 128, dtype=torch.uint8, device="cuda")
    ffi = get_kernel(QuantizeConfig(2048), current_target(), cache=cache, tvm_ffi=True)
    dlp = get_kernel(QuantizeConfig(2048), current_target(), cache=cache, tvm_ffi=False)
    raw = torch.cuda.current_stream().cuda_stream

    def per_call(fn, n=3000):
        for _ in range(100):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        us = (time.perf_counter() - t0) / n * 1e6
        torch.cuda.synchronize()
        return us

    return {
        "tvm_ffi_call_us": per_call(lambda: ffi.fn(x, q, s, g, raw)),
        "tvm_ffi_launch_us": per_call(lambda: launch(ffi, x, q, s, g)),
        "dlpack_launch_us": per_call(lambda: launch(dlp, x, q, s, g)),
        "torch_add_us": per_call(lambda: x.add_(0)),
    }


def warm_start_seconds(root: str) -> dict:
    """A fresh process: import + load the kernel from the warm disk cache (no compile)."""
    script = textwrap.dedent(
        f"""
        import json, time
        t0 = time.perf_counter()
        from trtllm_b12x.arch import current_target
        from trtllm_b12x.kernels.cache import KernelCache
        from trtllm_b12x.kernels.quantize import QuantizeConfig, get_kernel
        t1 = time.perf_counter()
        c = KernelCache(root={root!r})
        ck = get_kernel(QuantizeConfig(4096), current_target(), cache=c)
        t2 = time.perf_counter()
        print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "origin": ck.origin, "compiled": c.stats.compiled}}))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    gpu = torch.cuda.get_device_name()
    date = datetime.date.today().isoformat()
    cache = KernelCache(root=tempfile.mkdtemp())
    bw = copy_bandwidth()
    rows = []
    for m, h in SIZES:
        x = torch.randn(m, h, device="cuda").bfloat16()
        g = (x.float().abs().amax() / 2688).reshape(1)
        q = torch.empty(m, h // 2, dtype=torch.uint8, device="cuda")
        s = torch.empty(m, h // 16, dtype=torch.float8_e4m3fn, device="cuda")
        quantize_activations(x, g, out=(q, s), cache=cache)
        rq, rs = quantize_nvfp4(x, g)
        exact = bool(torch.equal(q, rq) and torch.equal(s.view(torch.uint8), rs.view(torch.uint8)))
        nbytes = m * h * 2 + m * h // 2 + m * h // 16
        tk = time_gpu(lambda: quantize_activations(x, g, out=(q, s), cache=cache), reps=50)
        tt = time_gpu(lambda: quantize_nvfp4(x, g), reps=10, graph=False)
        rows.append({
            "m": m, "hidden": h, "elements": m * h, "bytes": nbytes, "bit_exact": exact,
            "kernel_us": tk.median_us, "kernel_gbps": nbytes / tk.median_us / 1e3,
            "kernel_pct_of_copy_bw": 100 * nbytes / (tk.median_us * 1e-6) / bw,
            "torch_us": tt.median_us, "torch_gbps": nbytes / tt.median_us / 1e3,
        })
        print(f"m={m:6d} H={h:5d} exact={exact} kernel {tk.median_us:9.1f} us {rows[-1]['kernel_gbps']:7.0f} GB/s "
              f"({rows[-1]['kernel_pct_of_copy_bw']:5.1f}% of copy BW)  torch {tt.median_us:10.1f} us", flush=True)
        del x, q, s, rq, rs
    overhead = launch_overhead(cache)
    print("host overhead per launch:", overhead)
    warm = warm_start_seconds(str(cache.root))
    print("fresh process, warm disk cache:", warm)
    result = {
        "gpu": gpu, "date": date, "torch": torch.__version__, "copy_bandwidth_gbps": bw / 1e9,
        "method": "CUDA-graph replay, L2 flushed, median of 50 (torch reference: eager, median of 10)",
        "rows": rows, "launch_overhead": overhead, "warm_start": warm,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"quantize_{gpu.replace(' ', '_')}_{date}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    plot(result, out / f"{stem}.png")
    print("wrote", out / f"{stem}.json")


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    xs = [r["elements"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(xs, [r["kernel_gbps"] for r in rows], "o-", label="b12x quantize kernel")
    ax.plot(xs, [r["torch_gbps"] for r in rows], "s-", label="torch reference (quantize_nvfp4)")
    ax.axhline(result["copy_bandwidth_gbps"], color="k", ls="--", label="device copy (read+write)")
    ax.axhline(0.7 * result["copy_bandwidth_gbps"], color="gray", ls=":", label="70% of copy")
    ax.set(xscale="log", xlabel="m·H elements", ylabel="GB/s (bytes read + written)",
           title=f"NVFP4 activation quantize — {result['gpu']}, {result['date']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
