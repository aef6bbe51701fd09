"""`trtllm-b12x` command: bench (the main job), compile, doctor.

A user error (a bad argument, a missing file, an unsupported target, a checkpoint the reader
refuses) is one line on stderr and exit code 2; ``--debug`` shows the traceback instead.
Arguments are checked before any work starts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ._env import package_version

PROG = "trtllm-b12x"


class UsageError(Exception):
    """A mistake in the command line: reported in one line, exit code 2."""


def _console() -> Console:
    # Piped output (logs, CI) gets a wide fixed width so table columns are never elided.
    return Console() if sys.stdout.isatty() else Console(width=160)


@contextlib.contextmanager
def _progress(console: Console, what: str):
    """A live status line on a terminal; plain progress lines when stdout is piped."""
    if console.is_terminal:
        with console.status(what) as status:
            yield lambda s: status.update(f"{what}: {s}")
    else:
        console.print(f"{what} ...")
        yield lambda s: console.print(f"{what}: {s}")

GPU_TOKENS = [1, 2, 3, 4, 7, 8, 16, 31, 32, 63]
CPU_TOKENS = [1, 2, 4, 8, 16, 32, 63]
GPU_SKEWS = [0.0, 1.0]  # uniform and skewed routing (zipf 1: at m = 63 a tenth of the experts take 70-90 % of the pairs)
CPU_SKEWS = [0.0]


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from .bench.moe import run_sweep
    from .bench.report import ceiling_summary, plot, results_table, skipped_table, write_json
    from .models import MoEShape, get_preset, make_moe_weights

    console = _console()
    device = args.device
    t0 = time.perf_counter()
    if args.checkpoint:
        from .quantization import load_moe_layer

        weights = load_moe_layer(args.checkpoint, args.layer, device=device)
        shape = MoEShape(
            f"{args.checkpoint}:layer{args.layer}", weights.hidden_size, weights.intermediate_size,
            weights.num_experts, args.top_k or 8, "swiglu" if weights.gated else "relu2", str(args.checkpoint),
        )
    else:
        shape = args.layer_shape
        with _progress(console, f"generating synthetic NVFP4 weights for {shape.name} on {device}"):
            weights = make_moe_weights(shape, seed=args.seed, device=device, num_experts=args.num_experts)
        shape = dataclasses.replace(shape, num_experts=weights.num_experts)  # what ran, also in the JSON
    console.print(
        f"[bold]{shape.name}[/]: H={shape.hidden_size} I={shape.intermediate_size} E={weights.num_experts} "
        f"top-k={shape.top_k} {shape.activation}; {weights.bytes_per_expert / 1e6:.2f} MB/expert NVFP4 "
        f"(built in {time.perf_counter() - t0:.1f} s)"
    )
    tokens = args.tokens or (GPU_TOKENS if device.type == "cuda" else CPU_TOKENS)
    json_path = Path(args.json or f"b12x-bench-{shape.name.replace('/', '_')}.json")
    for skew in args.skew:
        with _progress(console, "benchmarking" + (f" (skew {skew:g})" if len(args.skew) > 1 else "")) as progress:
            res = run_sweep(shape, weights, tokens, impls=args.impl, reps=args.reps, skew=skew, seed=args.seed,
                            progress=progress)
        console.print(results_table(res))
        for line in ceiling_summary(res):
            console.print(line)
        if (sk := skipped_table(res)) is not None:
            console.print(sk)
        out = write_json(res, _per_skew(json_path, skew, args.skew))
        console.print(f"results: {out}")
        if args.plot:
            console.print(f"plot: {plot(res, _per_skew(Path(args.plot), skew, args.skew))}")
    return 0


def _per_skew(path: Path, skew: float, skews: list[float]) -> Path:
    """One output file per routing when several are run: ``<stem>_skew<s><suffix>``."""
    return path if len(skews) == 1 else path.with_name(f"{path.stem}_skew{skew:g}{path.suffix}")


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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + message
        raise UsageError(f"{self.prog}: {message}")


def _positive(kind=int):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"{text} must be > 0")
        return v

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def _non_negative(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(v) and v >= 0):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number >= 0")
    return v


def build_parser() -> argparse.ArgumentParser:
    from .arch import TARGETS
    from .models import DEFAULT_PRESET, PRESETS, SHAPE_FORMAT

    p = _Parser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"{PROG} {package_version('trtllm-b12x')}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)

    b = sub.add_parser("bench", help="benchmark MoE decode implementations on a preset or checkpoint layer")
    b.add_argument("--preset", choices=sorted(PRESETS), help=f"a preset layer (default {DEFAULT_PRESET})")
    b.add_argument("--shape", help=f"a layer shape no preset has: {SHAPE_FORMAT}")
    b.add_argument("--checkpoint", help="ModelOpt NVFP4 checkpoint directory (instead of a preset)")
    b.add_argument("--num-experts", type=_positive(), help="generate only this many experts of the preset (a quick look)")
    b.add_argument("--layer", type=int, default=0, help="MoE layer index in --checkpoint")
    b.add_argument("--top-k", type=_positive(), help="router top-k for --checkpoint layers (default 8)")
    b.add_argument("--tokens", type=_positive(), nargs="+", help="token counts (default: a decode sweep)")
    b.add_argument("--impl", nargs="+", help="only these implementations")
    b.add_argument("--reps", type=_positive(), help="timed repetitions (default 50 on GPU, 2 on CPU)")
    b.add_argument("--skew", type=_non_negative, nargs="+",
                   help="routing skew, zipf exponent (0 = uniform; several: one run and one file each; "
                        "default: 0 and 1 on a GPU, 0 on the CPU)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when present)")
    b.add_argument("--json", help="results file (default: b12x-bench-<preset>.json)")
    b.add_argument("--plot", help="write a PNG plot of latency and roofline vs tokens")
    b.set_defaults(fn=cmd_bench, check=check_bench)

    c = sub.add_parser("compile", help="compile a preset's kernels for a target (no GPU needed) and fill the cache")
    c.add_argument("--arch", required=True, choices=sorted(TARGETS), help="compile target")
    c.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS))
    c.add_argument("--cache-dir", help="cache root (default: TRTLLM_B12X_CACHE_DIR or ~/.cache/trtllm_b12x)")
    c.set_defaults(fn=cmd_compile, check=None)

    d = sub.add_parser("doctor", help="versions, GPU, tiers that run here, TensorRT-LLM status")
    d.add_argument("--model", help="preset name, config.json or checkpoint directory: would moe_backend "
                                   "CUTLASS run the b12x backend for it here, and why not")
    d.add_argument("--sm", type=int, choices=(90, 120, 121),
                   help="evaluate for this SM instead of this machine's GPU")
    d.set_defaults(fn=cmd_doctor, check=check_doctor)
    return p


def check_bench(args: argparse.Namespace) -> None:
    """Everything about a bench command line that can be wrong, before any work."""
    import torch

    from .bench.moe import IMPLS
    from .models import DEFAULT_PRESET, get_preset, parse_shape

    if args.impl and (unknown := sorted(set(args.impl) - {i.name for i in IMPLS})):
        raise UsageError(f"--impl: unknown implementation(s) {', '.join(unknown)}; known: "
                         f"{', '.join(i.name for i in IMPLS)}")
    try:
        dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise UsageError(f"--device {args.device!r} is not a device; supported: cpu, cuda, cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {args.device}: supported: cpu, cuda, cuda:N")
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise UsageError(f"--device {args.device}: no CUDA GPU is visible here; use --device cpu")
        if (dev.index or 0) >= n:
            raise UsageError(f"--device {args.device}: this machine has {n} CUDA device(s) (cuda:0..cuda:{n - 1})")
    args.device = dev
    if args.skew is None:
        args.skew = GPU_SKEWS if dev.type == "cuda" else CPU_SKEWS
    if len(set(args.skew)) != len(args.skew):
        raise UsageError(f"--skew {' '.join(f'{v:g}' for v in args.skew)}: each routing once (one results file each)")
    if sum(x is not None for x in (args.preset, args.shape, args.checkpoint)) > 1:
        raise UsageError("--preset, --shape and --checkpoint each name the layer: give one")
    if args.checkpoint:
        if not Path(args.checkpoint).exists():
            raise UsageError(f"--checkpoint {args.checkpoint}: no such file or directory")
        if args.num_experts is not None:
            raise UsageError("--num-experts applies to presets and shapes; a --checkpoint layer has its own experts")
        if args.layer < 0:
            raise UsageError(f"--layer {args.layer}: a layer index is >= 0")
        return
    try:
        shape = parse_shape(args.shape) if args.shape is not None else get_preset(args.preset or DEFAULT_PRESET)
    except ValueError as err:
        raise UsageError(f"--shape: {err}") from None
    if args.top_k:
        raise UsageError("--top-k applies to --checkpoint layers; presets and shapes carry their own top-k")
    if args.num_experts is not None and not shape.top_k <= args.num_experts <= shape.num_experts:
        raise UsageError(f"--num-experts {args.num_experts}: must be in [{shape.top_k}, {shape.num_experts}] "
                         f"for {shape.name} (top-k to all experts)")
    args.layer_shape = shape


def check_doctor(args: argparse.Namespace) -> None:
    from .models import PRESETS

    if args.model is not None and args.model not in PRESETS and not Path(args.model).exists():
        raise UsageError(f"--model {args.model!r}: neither a preset ({', '.join(PRESETS)}) nor an existing "
                         "config.json file or checkpoint directory")


# what the library raises for input it refuses: the user's error, not ours
_USER_ERRORS = (UsageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    from .arch import UnsupportedArchError

    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere on the line
    try:
        args = build_parser().parse_args(argv)
        if args.check is not None:
            args.check(args)
        return args.fn(args)
    except (*_USER_ERRORS, UnsupportedArchError) as exc:
        if debug:
            raise
        msg = str(exc) if isinstance(exc, UsageError) else f"{PROG}: {exc}"
        print(f"{msg if msg.startswith(PROG) else f'{PROG}: {msg}'}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
