"""Timing harness shared by the CLI and benchmarks/.

GPU: each measured call is one CUDA-graph replay (when the callable is graph-safe),
preceded by an L2 flush outside the timed region; device events around the replay;
the median is reported. CPU: wall clock, median.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class Timing:
    median_us: float
    min_us: float
    reps: int
    method: str


def _l2_bytes(device) -> int:
    props = torch.cuda.get_device_properties(device)
    return int(getattr(props, "L2_cache_size", 0) or 64 << 20)


def time_cpu(fn: Callable[[], object], reps: int = 3, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e6)
    return Timing(statistics.median(ts), min(ts), reps, "cpu wall clock")


def time_gpu(fn: Callable[[], object], reps: int = 50, warmup: int = 5, graph: bool = True, flush_l2: bool = True) -> Timing:
    """Median device time of ``fn`` (a CUDA-graph replay of it when ``graph``)."""
    dev = torch.cuda.current_device()
    flush = torch.empty(2 * _l2_bytes(dev), dtype=torch.uint8, device=dev) if flush_l2 else None
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            fn()
        run = fn
        if graph:
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=stream):
                fn()
            run = g.replay
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            if flush is not None:
                flush.zero_()
            starts[i].record()
            run()
            ends[i].record()
    torch.cuda.synchronize()
    ts = [s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends)]
    method = ("cuda-graph replay" if graph else "eager") + (", L2 flushed" if flush_l2 else "")
    return Timing(statistics.median(ts), min(ts), reps, method)


def measure_read_bandwidth(nbytes: int = 2 << 30, reps: int = 20) -> float:
    """HBM read bandwidth in bytes/s: a reduction over a buffer much larger than L2."""
    x = torch.ones(nbytes // 4, dtype=torch.float32, device="cuda")
    out = torch.empty((), dtype=torch.float32, device="cuda")
    t = time_gpu(lambda: torch.sum(x, dim=0, out=out), reps=reps, graph=True, flush_l2=False)
    return nbytes / (t.median_us * 1e-6)
