"""`trtllm-b12x` command: bench (the main job), compile, doctor."""

from __future__ import annotations

import argparse
import platform
import sys
import time

from rich.console import Console
from rich.table import Table

from ._env import package_version



def _console() -> Console:
    # Piped output (logs, CI) gets a wide fixed width so table columns are never elided.
    return Console() if sys.stdout.isatty() else Console(width=160)

GPU_TOKENS = [1, 2, 3, 4, 7, 8, 16, 31, 32, 63]
CPU_TOKENS = [1, 2, 4, 8, 16, 32, 63]


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench.moe import run_sweep
    from .bench.report import plot, results_table, skipped_table, write_json
    from .models import MoEShape, get_preset, make_moe_weights

    console = _console()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    t0 = time.perf_counter()
    if args.checkpoint:
        from .quantization import load_moe_layer

        weights = load_moe_layer(args.checkpoint, args.layer, device=device)
        shape = MoEShape(
            f"{args.checkpoint}:layer{args.layer}", weights.hidden_size, weights.intermediate_size,
            weights.num_experts, args.top_k or 8, "swiglu" if weights.gated else "relu2", str(args.checkpoint),
        )
    else:
        shape = get_preset(args.preset)
        if args.num_experts is not None and not shape.top_k <= args.num_experts <= shape.num_experts:
            raise SystemExit(f"--num-experts must be in [{shape.top_k}, {shape.num_experts}] for {shape.name}")
        if args.top_k:
            raise SystemExit("--top-k applies to --checkpoint layers; presets carry their own top-k")
        with console.status(f"generating synthetic NVFP4 weights for {shape.name} on {device}"):
            weights = make_moe_weights(shape, seed=args.seed, device=device, num_experts=args.num_experts)
    console.print(
        f"[bold]{shape.name}[/]: H={shape.hidden_size} I={shape.intermediate_size} E={weights.num_experts} "
        f"top-k={shape.top_k} {shape.activation}; {weights.bytes_per_expert / 1e6:.2f} MB/expert NVFP4 "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    tokens = args.tokens or (GPU_TOKENS if device.type == "cuda" else CPU_TOKENS)
    with console.status("benchmarking") as status:
        res = run_sweep(shape, weights, tokens, impls=args.impl, reps=args.reps, skew=args.skew, seed=args.seed,
                        progress=lambda s: status.update(f"benchmarking {s}"))
    console.print(results_table(res))
    if (sk := skipped_table(res)) is not None:
        console.print(sk)
    out = write_json(res, args.json or f"b12x-bench-{shape.name.replace('/', '_')}.json")
    console.print(f"results: {out}")
    if args.plot:
        console.print(f"plot: {plot(res, args.plot)}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    import torch

    from .arch import TARGETS, device_capability, target_for_capability, UnsupportedArchError

    console = _console()
    t = Table(title="trtllm-b12x doctor", show_header=False)
    t.add_column("item")
    t.add_column("value")
    t.add_row("python", platform.python_version())
    t.add_row("trtllm-b12x", package_version("trtllm-b12x"))
    t.add_row("torch", f"{torch.__version__} (CUDA {torch.version.cuda or 'none'})")
    t.add_row("nvidia-cutlass-dsl", package_version("nvidia-cutlass-dsl"))
    cc = device_capability()
    if cc is None:
        t.add_row("GPU", "none (kernels can still be compiled ahead of time for any target)")
        here = None
    else:
        t.add_row("GPU", f"{torch.cuda.get_device_name()} (sm_{cc[0]}{cc[1]})")
        try:
            here = target_for_capability(cc)
        except UnsupportedArchError as e:
            here = None
            t.add_row("tier here", str(e))
    for target in TARGETS.values():
        runs = "runs here" if here is not None and here.tier == target.tier else "compile only"
        t.add_row(f"target {target.name}", f"{target.tier} tier — {target.parts}: {runs}")
    console.print(t)
    from .trtllm import doctor_report

    trt = Table(title="TensorRT-LLM integration", show_header=False)
    trt.add_column("item")
    trt.add_column("value")
    for line in doctor_report(args.model, sm=args.sm):
        item, _, value = line.partition(": ")
        trt.add_row(item, value)
    console.print(trt)
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from .arch import get_target
    from .kernels.cache import KernelCache, default_cache
    from .kernels.catalog import KEY_SASS, preset_kernels
    from .kernels.sass import ToolNotFound, analyze_cubin
    from .models import get_preset

    console = _console()
    target = get_target(args.arch)
    shape = get_preset(args.preset)
    cache = KernelCache(root=args.cache_dir) if args.cache_dir else default_cache()
    specs = preset_kernels(shape)
    table = Table(title=f"{shape.name} kernels for {target.name} ({target.parts}) — cache {cache.directory}")
    for col in ("kernel", "time s", "origin", "regs", "smem B", "spills", "key SASS"):
        table.add_column(col, justify="left" if col in ("kernel", "key SASS", "origin") else "right")
    failures = 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"compiling for {target.name}", total=len(specs))
        for spec in specs:
            ck = spec.get(target, cache)
            try:
                sass = analyze_cubin(ck.cubin) if ck.cubin else None
            except ToolNotFound as e:
                console.print(f"[yellow]{e}[/]")
                sass = None
            if sass is None:
                table.add_row(spec.label, f"{ck.seconds:.2f}", ck.origin, "?", "?", "?", "no cubin / no nvdisasm")
            else:
                r = sass.resources
                failures += sass.spills > 0 or r.shared_bytes > target.smem_per_block
                keys = ", ".join(f"{KEY_SASS[k]}×{n}" for k, n in sass.key_instructions(tuple(KEY_SASS)).items())
                table.add_row(spec.label, f"{ck.seconds:.2f}", ck.origin, str(r.registers), str(r.shared_bytes),
                              str(sass.spills), keys)
            progress.advance(task)
    console.print(table)
    if failures:
        console.print(f"[red]{failures} kernel(s) spill or exceed {target.smem_per_block} B of shared memory[/]")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    from .models import DEFAULT_PRESET, PRESETS

    p = argparse.ArgumentParser(prog="trtllm-b12x", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("bench", help="benchmark MoE decode implementations on a preset or checkpoint layer")
    b.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    b.add_argument("--checkpoint", help="ModelOpt NVFP4 checkpoint directory (instead of a preset)")
    b.add_argument("--num-experts", type=int, help="generate only this many experts of the preset (a quick look)")
    b.add_argument("--layer", type=int, default=0, help="MoE layer index in --checkpoint")
    b.add_argument("--top-k", type=int, help="router top-k for --checkpoint layers (default 8)")
    b.add_argument("--tokens", type=int, nargs="+", help="token counts (default: a decode sweep)")
    b.add_argument("--impl", nargs="+", help="only these implementations")
    b.add_argument("--reps", type=int, help="timed repetitions (default 50 on GPU, 2 on CPU)")
    b.add_argument("--skew", type=float, default=0.0, help="routing skew (0 = uniform)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    b.add_argument("--json", help="results file (default: b12x-bench-<preset>.json)")
    b.add_argument("--plot", help="write a PNG plot of latency and roofline vs tokens")
    b.set_defaults(fn=cmd_bench)

    c = sub.add_parser("compile", help="compile a preset's kernels for a target (no GPU needed) and fill the cache")
    c.add_argument("--arch", required=True, help="sm_90a, sm_120a or sm_121a")
    c.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    c.add_argument("--cache-dir", help="cache root (default: TRTLLM_B12X_CACHE_DIR or ~/.cache/trtllm_b12x)")
    c.set_defaults(fn=cmd_compile)

    d = sub.add_parser("doctor", help="versions, GPU, tiers that run here, TensorRT-LLM status")
    d.add_argument("--model", help="preset name, config.json or checkpoint directory: would moe_backend "
                                   "CUTLASS run the b12x backend for it here, and why not")
    d.add_argument("--sm", type=int, help="evaluate for this SM (120, 121, 90) instead of this machine's GPU")
    d.set_defaults(fn=cmd_doctor)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
