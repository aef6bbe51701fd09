"""Fused NVFP4 MoE decode vs its peers, timed in the same run (CUDA-graph replay, L2 flushed
before every replay, median of 50), with the read-only ceiling and the measured HBM read
bandwidth; each row's latency over the ceiling's, and the cells where the fused decode misses
its bars. One JSON + PNG per layer and routing (uniform and skewed by default):

    python benchmarks/benchmark_moe_decode.py [--out DIR] [--preset P ...] [--shape H,I,E,K,ACT ...]
        [--skew S ...] [--tokens M ...] [--impl NAME ...]

Files: moe_decode_<preset or shape>_skew<S>_<gpu>_<date>.{json,png} in DIR (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import torch

from trtllm_b12x.cli import main as cli_main
from trtllm_b12x.models import PRESETS, parse_shape

DEFAULT_PRESETS = tuple(PRESETS)
TOKENS = (1, 2, 4, 8, 16, 32, 63)  # the decode cells the bars are set for


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--preset", nargs="+", help="presets (default: all, or none when --shape is given)")
    ap.add_argument("--shape", nargs="+", default=[], help="layer shapes no preset has, H,I,E,K,ACT each")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--skew", type=float, nargs="+", default=[0.0, 1.0], help="routings (0 = uniform)")
    ap.add_argument("--tokens", nargs="+", default=[str(m) for m in TOKENS])
    ap.add_argument("--impl", nargs="+", help="only these implementations (the ceiling always runs)")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmark_moe_decode: needs a CUDA GPU", file=sys.stderr)
        return 2
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    day = datetime.date.today().isoformat()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    presets = args.preset if args.preset is not None else ([] if args.shape else list(DEFAULT_PRESETS))
    layers = [("--preset", p, p) for p in presets] + [("--shape", s, parse_shape(s).name) for s in args.shape]
    extra = ["--tokens", *args.tokens] + (["--impl", *args.impl] if args.impl else [])
    for flag, value, name in layers:
        for skew in args.skew:
            stem = out / f"moe_decode_{name}_skew{skew:g}_{gpu}_{day}"
            rc = cli_main(["bench", flag, value, "--reps", str(args.reps), "--skew", str(skew), *extra,
                           "--json", f"{stem}.json", "--plot", f"{stem}.png"])
            if rc:
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
