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
from ..reference import moe_reference, relative_error
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


def _oracle(weights: MoEWeights, act: Activation) -> MoEFn:
    return lambda x, ids, w: moe_reference(x, ids, w, weights, act)


def _dequant_bf16(weights: MoEWeights, act: Activation) -> MoEFn:
    """Peer: dequantize the touched experts to bf16, then bf16 GEMMs per expert."""

    def run(x, ids, w):
        out = torch.zeros(x.shape[0], weights.hidden_size, dtype=torch.float32, device=x.device)
        flat = ids.reshape(-1).long()
        experts = flat.unique()
        w13 = weights.dequant_w13(experts).to(x.dtype)
        w2 = weights.dequant_w2(experts).to(x.dtype)
        for j, e in enumerate(experts.tolist()):
            tok, slot = (ids == e).nonzero(as_tuple=True)
            a = act((x[tok] @ w13[j].t()).float()).to(x.dtype)
            out.index_add_(0, tok, (a @ w2[j].t()).float() * w[tok, slot, None])
        return out.to(x.dtype)

    return run


def _needs_cuda(device: torch.device) -> str | None:
    return None if device.type == "cuda" else "needs a CUDA GPU"


IMPLS: list[Impl] = [
    Impl("oracle-fp32", "w4a16", "any device", lambda d: None, _oracle),
    Impl("torch-dequant-bf16", "w4a16", "CUDA GPU", _needs_cuda, _dequant_bf16),
]


def register(impl: Impl) -> None:
    """Add a kernel implementation to the sweep (kernel modules call this)."""
    if any(i.name == impl.name for i in IMPLS):
        raise ValueError(f"implementation {impl.name!r} is already registered")
    IMPLS.append(impl)


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


@dataclass
class BenchResult:
    preset: str
    meta: dict
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"preset": self.preset, "meta": self.meta, "rows": [asdict(r) for r in self.rows], "skipped": self.skipped}


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
    for m in tokens:
        x = make_hidden_states(m, shape, seed=seed + m, device=device)
        ids, w = make_routing(m, weights.num_experts, shape.top_k, seed=seed + m, skew=skew, device=device)
        unique = int(ids.unique().numel())
        nbytes = unique * weights.bytes_per_expert
        refs: dict[str, torch.Tensor] = {}
        for impl, fn in runnable:
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
    return res
