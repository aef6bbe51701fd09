"""Fused NVFP4 MoE decode vs its peers, timed in the same run (CUDA-graph replay, L2 flushed
before every replay, median of 50), with the read-only ceiling and the measured HBM read
bandwidth. One JSON + PNG per preset:

    python benchmarks/benchmark_moe_decode.py [--out DIR] [--preset P ...]

Files: moe_decode_<preset>_<gpu>_<date>.{json,png} in DIR (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

from trtllm_b12x.cli import main as cli_main

DEFAULT_PRESETS = ("qwen3-30b-a3b", "nemotron-3-super")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--preset", nargs="+", default=list(DEFAULT_PRESETS))
    ap.add_argument("--reps", type=int, default=50)
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmark_moe_decode: needs a CUDA GPU", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    day = datetime.date.today().isoformat()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for preset in args.preset:
        stem = out / f"moe_decode_{preset}_{gpu}_{day}"
        rc = cli_main(["bench", "--preset", preset, "--reps", str(args.reps),
                       "--json", f"{stem}.json", "--plot", f"{stem}.png"])
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
