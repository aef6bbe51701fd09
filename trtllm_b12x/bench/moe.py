"""MoE decode benchmark: every implementation available here over a sweep of token counts."""

from __future__ import annotations

import datetime
import platform
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from ..activation import Activation
from ..arch import describe_device
from ..models import MoEShape, make_hidden_states, make_routing
from ..quantization.bundle import MoEWeights
from ..moe import DECODE_MAX_TOKENS, MoERunner
from ..reference import moe_reference, relative_error
from . import humming_peer
from .timing import Timing, measure_read_bandwidth, time_cpu, time_gpu

MoEFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Impl:
    """A benchmarked implementation: ``build(weights, activation)`` returns ``fn(x, ids, w)``."""

    name: str
    mode: str  # numerics it implements: "w4a16" | "w4a4"
    needs: str  # hardware it needs, for the "not run here" list
    unavailable: Callable[[torch.device], str | None]  # why it cannot run here, or None
    build: Callable[[MoEWeights, Activation], MoEFn]
    graph_safe: bool = False
    decode_only: bool = False  # serves m < DECODE_MAX_TOKENS only (larger m would time another path)


def _oracle(weights: MoEWeights, act: Activation) -> MoEFn:
    return lambda x, ids, w: moe_reference(x, ids, w, weights, act)


def _dequant_bf16(weights: MoEWeights, act: Activation) -> MoEFn:
    """Peer: dequantize the touched experts to bf16 each call, then per-expert GEMMs
    (the runner's fallback path)."""
    runner = MoERunner(weights, act, validate_ids=False)
    return lambda x, ids, w: runner(x, ids, w)


def _bf16_grouped(weights: MoEWeights, act: Activation) -> MoEFn:
    """Peer: bf16 weights resident in memory (3.6x the NVFP4 bytes), torch grouped GEMM."""
    chunks = range(0, weights.num_experts, 16)
    w13 = torch.cat([weights.dequant_w13(slice(i, i + 16)).bfloat16() for i in chunks])
    w2 = torch.cat([weights.dequant_w2(slice(i, i + 16)).bfloat16() for i in chunks])
    w13_t, w2_t = w13.transpose(1, 2), w2.transpose(1, 2)  # [E, K, N], column-major per expert
    num_e = weights.num_experts

    def run(x, ids, w):
        k = ids.shape[1]
        flat = ids.reshape(-1).long()
        order = torch.argsort(flat, stable=True)
        counts = torch.zeros(num_e, dtype=torch.int64, device=x.device).scatter_add_(0, flat, torch.ones_like(flat))
        offs = torch.cumsum(counts, 0).to(torch.int32)  # (bincount would sync: not capturable)
        tok = order // k
        h = torch._grouped_mm(x[tok], w13_t, offs=offs)
        a = act(h.float()).to(x.dtype)
        y = torch._grouped_mm(a, w2_t, offs=offs)
        out = torch.zeros(x.shape[0], weights.hidden_size, dtype=torch.float32, device=x.device)
        out.index_add_(0, tok, y.float() * w.reshape(-1)[order, None])
        return out.to(x.dtype)

    return run


def _fused(weights: MoEWeights, act: Activation) -> MoEFn:
    """Ours: the fused NVFP4 decode kernel of this GPU's tier (W4A16 on SM90, W4A4 on SM120)."""
    from ..kernels.decode import decode_kernel_factory

    runner = MoERunner(weights, act, decode_kernel=decode_kernel_factory, validate_ids=False)
    out = {}

    def run(x, ids, w):
        o = out.setdefault(x.shape, torch.empty(x.shape[0], weights.hidden_size, dtype=x.dtype, device=x.device))
        return runner(x, ids, w, out=o)

    return run


def _needs_fused(tier: str) -> Callable[[torch.device], str | None]:
    def needs(device: torch.device) -> str | None:
        if device.type != "cuda":
            return "no CUDA GPU here"
        from ..arch import current_target
        from ..kernels.decode import device_reason

        if (why := device_reason(device)) is not None:
            return why
        here = current_target(device).tier
        return None if here == tier else f"the {tier} tier's kernel; this GPU runs the {here} one"

    return needs


def _needs_cuda(device: torch.device) -> str | None:
    return None if device.type == "cuda" else "no CUDA GPU here"


def _needs_grouped_mm(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "no CUDA GPU here"
    return None if hasattr(torch, "_grouped_mm") else "this torch has no _grouped_mm"


IMPLS: list[Impl] = [
    Impl("oracle-fp32", "w4a16", "any device", lambda d: None, _oracle),
    Impl("b12x-fused", "w4a16", "SM90 GPU (H100/H200)", _needs_fused("sm90"), _fused, graph_safe=True,
         decode_only=True),
    Impl("b12x-fused-w4a4", "w4a4", "SM120/SM121 GPU (RTX PRO 6000, RTX 5090, DGX Spark)", _needs_fused("sm120"),
         _fused, graph_safe=True, decode_only=True),
    Impl("torch-dequant-bf16", "w4a16", "CUDA GPU", _needs_cuda, _dequant_bf16),
    Impl("torch-bf16-grouped-gemm", "w4a16", "CUDA GPU with torch._grouped_mm (SM90+)", _needs_grouped_mm,
         _bf16_grouped, graph_safe=True),
    Impl("humming-w4a16", "w4a16", "SM90 GPU, humming-kernels (the [bench] extra), NVRTC or nvcc",
         humming_peer.unavailable, humming_peer.build, graph_safe=True),
]


@dataclass
class Row:
    impl: str
    m: int
    latency_us: float
    unique_experts: int
    weight_bytes: float
    gbps: float
    roofline_pct: float | None
    rel_err: float | None
    timing: str
    vs_ceiling: float | None = None  # latency over the read-only ceiling's at this m (same run)


@dataclass
class BenchResult:
    preset: str
    meta: dict
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"preset": self.preset, "meta": self.meta, "rows": [asdict(r) for r in self.rows], "skipped": self.skipped,
                "ceiling_misses": {impl: [asdict(c) for c in cells] for impl, cells in ceiling_misses(self).items()}}


# The fused decode's targets against the read-only ceiling: (first m, largest ratio) from m = 1 up.
CEILING_BARS: tuple[tuple[int, float], ...] = ((1, 1.30), (8, 1.15))
CEILING_TARGETS = ("b12x-fused", "b12x-fused-w4a4")  # the implementations held to the bars


def ceiling_bar(m: int) -> float:
    """The largest fused/ceiling ratio the decode aims for at ``m`` tokens."""
    return [bar for first, bar in CEILING_BARS if m >= first][-1]


def bars_text() -> str:
    """The bars in words, e.g. ``<= 1.30x at m < 8, <= 1.15x at m >= 8``."""
    parts = []
    for i, (first, bar) in enumerate(CEILING_BARS):
        nxt = CEILING_BARS[i + 1][0] if i + 1 < len(CEILING_BARS) else None
        where = f"m < {nxt}" if i == 0 else (f"{first} <= m < {nxt}" if nxt else f"m >= {first}")
        parts.append(f"<= {bar:.2f}x at {where}")
    return ", ".join(parts)


@dataclass(frozen=True)
class CeilingMiss:
    m: int
    vs_ceiling: float
    bar: float


def attach_ceiling_ratios(rows: list[Row]) -> None:
    """Each row's latency over the ceiling row of its m (where the ceiling ran)."""
    ceiling = {r.m: r.latency_us for r in rows if r.impl == CEILING}
    for r in rows:
        if r.impl != CEILING and r.m in ceiling:
            r.vs_ceiling = r.latency_us / ceiling[r.m]


def ceiling_misses(res: BenchResult) -> dict[str, list[CeilingMiss]]:
    """Per fused implementation that ran against the ceiling, the cells above their bar."""
    out: dict[str, list[CeilingMiss]] = {}
    for r in res.rows:
        if r.impl in CEILING_TARGETS and r.vs_ceiling is not None:
            cells = out.setdefault(r.impl, [])
            if r.vs_ceiling > ceiling_bar(r.m):
                cells.append(CeilingMiss(r.m, r.vs_ceiling, ceiling_bar(r.m)))
    return out


def run_sweep(
    shape: MoEShape,
    weights: MoEWeights,
    tokens: list[int],
    *,
    activation: Activation | None = None,
    impls: list[str] | None = None,
    reps: int | None = None,
    skew: float = 0.0,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BenchResult:
    device = weights.device
    on_gpu = device.type == "cuda"
    act = activation or shape.default_activation()
    reps = reps or (50 if on_gpu else 2)
    peak = measure_read_bandwidth() if on_gpu else None
    res = BenchResult(
        preset=shape.name,
        meta={
            "device": describe_device(device) if on_gpu else f"CPU ({platform.processor() or platform.machine()})",
            "date": datetime.date.today().isoformat(),
            "torch": torch.__version__,
            "shape": asdict(shape),
            "activation": asdict(act),
            "routing": "uniform" if skew == 0 else f"skewed (zipf {skew})",
            "read_bandwidth_gbps": None if peak is None else peak / 1e9,
            "reps": reps,
            "bytes_per_expert": weights.bytes_per_expert,
        },
    )
    chosen = [i for i in IMPLS if impls is None or i.name in impls]
    if impls is not None and (unknown := set(impls) - {i.name for i in IMPLS}):
        raise ValueError(f"unknown implementation(s) {sorted(unknown)}; known: {[i.name for i in IMPLS]}")
    runnable = []
    for impl in chosen:
        why = impl.unavailable(device)
        if why:
            res.skipped[impl.name] = f"{why} ({impl.needs})"
        else:
            runnable.append((impl, impl.build(weights, act)))
    ceiling = read_ceiling(weights, res.skipped)
    for m in tokens:
        x, ids, w = case_inputs(shape, weights, m, seed=seed, skew=skew)
        unique = int(ids.unique().numel())
        nbytes = unique * weights.bytes_per_expert
        refs: dict[str, torch.Tensor] = {}
        for impl, fn in runnable:
            if impl.decode_only and m >= DECODE_MAX_TOKENS:
                res.skipped[f"{impl.name} m={m}"] = (f"the fused decode serves m < {DECODE_MAX_TOKENS}; larger "
                                                     "batches are prefill (TensorRT-LLM: CUTLASS)")
                continue
            if progress:
                progress(f"{impl.name} m={m}")
            if impl.mode not in refs:
                refs[impl.mode] = moe_reference(x, ids, w, weights, act, mode=impl.mode)
            out = fn(x, ids, w)
            err = None if impl.name.startswith("oracle") else relative_error(out.float(), refs[impl.mode])
            t: Timing = (
                time_gpu(lambda: fn(x, ids, w), reps=reps, graph=impl.graph_safe)
                if on_gpu
                else time_cpu(lambda: fn(x, ids, w), reps=reps, warmup=0)  # the call above warmed up
            )
            gbps = nbytes / (t.median_us * 1e-6) / 1e9
            res.rows.append(
                Row(impl.name, m, t.median_us, unique, nbytes, gbps,
                    None if peak is None else 100.0 * gbps * 1e9 / peak, err, t.method)
            )
        if ceiling is not None:
            t = time_gpu(lambda: ceiling(ids), reps=reps, graph=True)
            gbps = nbytes / (t.median_us * 1e-6) / 1e9
            res.rows.append(Row(CEILING, m, t.median_us, unique, nbytes, gbps, 100.0 * gbps * 1e9 / peak, None, t.method))
    attach_ceiling_ratios(res.rows)
    return res


CEILING = "read-only-ceiling"


def case_inputs(shape: MoEShape, weights: MoEWeights, m: int, *, seed: int = 0, skew: float = 0.0):
    """``(x, ids, w)`` of the sweep's case with ``m`` tokens (also what the profile script runs)."""
    x = make_hidden_states(m, shape, seed=seed + m, device=weights.device)
    ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=seed + m, skew=skew, device=weights.device)
    return x, ids, w


def read_ceiling(weights: MoEWeights, skipped: dict | None = None) -> Callable | None:
    """The streaming kernel that reads the touched experts' bytes and nothing else (None, with
    the reason in ``skipped``, where it cannot run)."""
    if weights.device.type != "cuda":
        if skipped is not None:
            skipped[CEILING] = "no CUDA GPU here (needs SM90 or SM120/SM121: a CuTe DSL kernel)"
        return None
    from ..kernels.stream import read_ceiling_fn

    return read_ceiling_fn(weights.w13, weights.w13_scale, weights.w2, weights.w2_scale, weights.num_experts)
