"""This checkout's fused decode against another checkout's, in one process and one run:
same weights, same inputs, each cell timed for both kernels and the read-only ceiling back
to back (CUDA-graph replay, L2 flushed, median), both outputs checked against the oracle.

    git archive <rev> trtllm_b12x | tar -x -C /tmp/base && mv /tmp/base/trtllm_b12x /tmp/base/trtllm_b12x_base
    python benchmarks/compare_moe_decode.py --baseline /tmp/base/trtllm_b12x_base --json out.json [--plot out.png]

The baseline package is imported under its directory's name (the package uses relative
imports only), so both versions live side by side; its bundle is built from this checkout's
tensors (the same TensorRT-LLM layout).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import sys
from pathlib import Path

import torch

from trtllm_b12x.bench.moe import case_inputs, read_ceiling
from trtllm_b12x.arch import describe_device
from trtllm_b12x.bench.timing import time_gpu
from trtllm_b12x.metrics import relative_error
from trtllm_b12x.models import PRESETS, make_moe_weights, parse_shape
from trtllm_b12x.reference import moe_reference

TOKENS = (1, 2, 4, 8, 16, 32, 63)
SKEWS = (0.0, 1.0)


def _baseline(path: str):
    p = Path(path).resolve()
    sys.path.insert(0, str(p.parent))
    return importlib.import_module(p.name)


def _runner_fn(mod, weights, act):
    """``fn(x, ids, w)`` of a package's fused decode on ``weights`` (that package's own bundle type)."""
    bundle_cls = importlib.import_module(f"{mod.__name__}.quantization.bundle").MoEWeights
    act_cls = importlib.import_module(f"{mod.__name__}.activation").Activation
    factory = importlib.import_module(f"{mod.__name__}.kernels.decode").decode_kernel_factory
    runner_cls = importlib.import_module(f"{mod.__name__}.moe").MoERunner
    w = weights if bundle_cls is type(weights) else bundle_cls(
        **weights.tensors(), intermediate=weights.intermediate, scale_layout=weights.scale_layout)
    a = act if act_cls is type(act) else act_cls(act.kind, act.alpha, act.beta, act.limit)
    runner = runner_cls(w, a, decode_kernel=factory, validate_ids=False)
    outs = {}

    def run(x, ids, rw):
        o = outs.setdefault(x.shape, torch.empty(x.shape[0], weights.hidden_size, dtype=x.dtype, device=x.device))
        return runner(x, ids, rw, out=o)

    return run, runner


def compare(shape, base, reps: int) -> list[dict]:
    preset = shape.name
    weights = make_moe_weights(shape, seed=0, device="cuda")
    act = shape.default_activation()
    new_fn, new_runner = _runner_fn(sys.modules["trtllm_b12x"], weights, act)
    old_fn, _ = _runner_fn(base, weights, act)
    if new_runner.decode is None:
        raise SystemExit(f"compare_moe_decode: {preset}: this checkout's fused decode does not serve it here")
    ceiling = read_ceiling(weights)
    rows = []
    for skew in SKEWS:
        for m in TOKENS:
            x, ids, w = case_inputs(shape, weights, m, seed=0, skew=skew)
            ref = moe_reference(x, ids, w, weights, act, mode="w4a16")
            row = {"preset": preset, "m": m, "skew": skew, "unique_experts": int(ids.unique().numel())}
            for name, fn in (("new", new_fn), ("old", old_fn)):
                row[f"{name}_err"] = relative_error(fn(x, ids, w).float(), ref)
                row[f"{name}_us"] = time_gpu(lambda fn=fn: fn(x, ids, w), reps=reps, graph=True).median_us
            row["ceiling_us"] = time_gpu(lambda: ceiling(ids), reps=reps, graph=True).median_us
            row["new_over_old"] = row["new_us"] / row["old_us"]
            rows.append(row)
            print(f"{preset:18s} skew {skew:3.1f} m={m:2d}  new {row['new_us']:8.1f}  old {row['old_us']:8.1f} us "
                  f"({row['new_over_old']:.3f}x)  ceiling {row['ceiling_us']:8.1f}  err {row['new_err']:.1e}",
                  flush=True)
    del new_fn, old_fn, new_runner, weights
    torch.cuda.empty_cache()
    return rows


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    presets = list(dict.fromkeys(r["preset"] for r in rows))
    fig, axes = plt.subplots(1, len(SKEWS), figsize=(6 * len(SKEWS), 4), sharey=True)
    for ax, skew in zip(axes, SKEWS):
        for p in presets:
            sel = [r for r in rows if r["preset"] == p and r["skew"] == skew]
            ax.plot([r["m"] for r in sel], [r["new_over_old"] for r in sel], marker="o", label=p)
        ax.axhline(1.03, color="red", lw=0.8, ls="--")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("tokens m")
        ax.set_title(f"{'uniform' if skew == 0 else f'skewed (zipf {skew})'} routing")
    axes[0].set_ylabel("new / previous kernel latency")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", required=True, help="directory of the other checkout's package (renamed)")
    ap.add_argument("--label", default="previous kernel", help="what the baseline is (for the JSON)")
    ap.add_argument("--preset", nargs="+", help="presets (default: all, or none when --shape is given)")
    ap.add_argument("--shape", nargs="+", default=[], help="layer shapes no preset has, H,I,E,K,ACT each")
    ap.add_argument("--reps", type=int, default=60)
    ap.add_argument("--json", required=True)
    ap.add_argument("--plot")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("compare_moe_decode: needs a CUDA GPU", file=sys.stderr)
        return 2
    base = _baseline(args.baseline)
    rows = []
    presets = args.preset if args.preset is not None else ([] if args.shape else list(PRESETS))
    for shape in [PRESETS[p] for p in presets] + [parse_shape(s) for s in args.shape]:
        rows += compare(shape, base, args.reps)
    meta = {"device": describe_device(torch.device("cuda")), "date": datetime.date.today().isoformat(),
            "baseline": args.label, "reps": args.reps, "method": "cuda-graph replay, L2 flushed, median",
            "worst_new_over_old": max(r["new_over_old"] for r in rows)}
    Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    if args.plot:
        plot(rows, args.plot, f"{meta['device']} {meta['date']}: this kernel vs {args.label}")
    print(f"worst new/old: {meta['worst_new_over_old']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
