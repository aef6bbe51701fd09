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

from trtllm_b12x.bench.moe import IMPLS, case_inputs, read_ceiling
from trtllm_b12x.models import get_preset, make_moe_weights

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
        if not m.isdigit() or not 0 < int(m) < 64:
            ap.error(f"--case {c!r}: expected PRESET:M with 0 < M < 64 (the decode range)")
        cases.setdefault(name, []).append(int(m))
    device = torch.device("cuda")
    fused = [i for i in IMPLS if i.name.startswith("b12x-fused") and i.unavailable(device) is None]
    if not fused:
        why = "; ".join(f"{i.name}: {i.unavailable(device)}" for i in IMPLS if i.name.startswith("b12x-fused"))
        print(f"profile_moe_decode: no fused decode kernel runs here ({why})", file=sys.stderr)
        return 2
    for name, ms in cases.items():
        shape = get_preset(name)
        w = make_moe_weights(shape, seed=1, device=device)
        ours = fused[0].build(w, shape.default_activation())  # what the bench times as this tier's kernel
        ceiling = read_ceiling(w)
        for m in ms:
            x, ids, rw = case_inputs(shape, w, m)
            ours(x, ids, rw)  # compile, allocate
            ceiling(ids)
            torch.cuda.synchronize()
            torch.cuda.profiler.start()
            ours(x, ids, rw)
            ceiling(ids)
            torch.cuda.synchronize()
            torch.cuda.profiler.stop()
        del ours, w
    return 0


if __name__ == "__main__":
    sys.exit(main())
