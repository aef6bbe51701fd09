"""One eager call of the fused decode and of the read-only ceiling per (preset, m), between
``cudaProfilerStart`` / ``Stop``, for a per-kernel profile (each launch alone, caches flushed)::

    ncu --profile-from-start off --clock-control none --cache-control all --csv --page raw \\
        --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,smsp__inst_executed.sum \\
        python benchmarks/profile_moe_decode.py [--case PRESET:M ...]

Per case the profiled launches are, in order: FC1, FC2, slot sum (fused decode), then the
ceiling's FC1 and FC2 streams. Kernels compile (or load from the cache) before profiling.
"""

from __future__ import annotations

import argparse
import sys

import torch

from trtllm_b12x.kernels.moe_decode import decode_kernel_factory
from trtllm_b12x.kernels.stream import read_ceiling_fn
from trtllm_b12x.models import get_preset, make_hidden_states, make_moe_weights, make_routing
from trtllm_b12x.moe import MoERunner

DEFAULT_CASES = ("nemotron-3-super:1", "nemotron-3-super:8", "qwen3-30b-a3b:8", "qwen3-30b-a3b:63")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", nargs="+", default=list(DEFAULT_CASES), help="PRESET:M, M < 64")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_moe_decode: needs a CUDA GPU", file=sys.stderr)
        return 2
    cases: dict[str, list[int]] = {}
    for c in args.case:
        name, _, m = c.partition(":")
        cases.setdefault(name, []).append(int(m))
    for name, ms in cases.items():
        shape = get_preset(name)
        w = make_moe_weights(shape, seed=1, device="cuda")
        runner = MoERunner(w, shape.default_activation(), decode_kernel=decode_kernel_factory, validate_ids=False)
        ceiling = read_ceiling_fn(w.w13, w.w13_scale, w.w2, w.w2_scale, w.num_experts)
        for m in ms:
            x = make_hidden_states(m, shape, seed=m, device="cuda")
            ids, rw = make_routing(m, w.num_experts, shape.top_k, seed=m, device="cuda")
            out = torch.empty(m, shape.hidden_size, dtype=x.dtype, device="cuda")
            runner(x, ids, rw, out=out)  # compile, allocate
            ceiling(ids)
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            runner(x, ids, rw, out=out)
            ceiling(ids)
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
        del runner, w
    return 0


if __name__ == "__main__":
    sys.exit(main())
