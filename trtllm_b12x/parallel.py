"""Expert and tensor parallelism across processes, checked against the whole layer.

Every rank builds the same preset layer (same seed), takes its shard — EP: a slice of the
experts (views), TP: an intermediate shard, EP x TP: both — runs its decode (the fused kernel
on its GPU below 64 tokens, the torch fallback otherwise) on the same tokens and global expert
ids (no alltoall; ``-1`` marks an unrouted slot), and the partial outputs are summed across
ranks with ``torch.distributed`` as TensorRT-LLM reduces them. Rank 0 compares the sum with
the float32 oracle of the whole layer and, on GPUs, times each rank's decode, the all-reduce
and the whole layer against one GPU.

torchrun-compatible (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``)::

    torchrun --nproc-per-node 2 -m trtllm_b12x.parallel --preset qwen3-30b-a3b --ep 2 --json ep2.json

or, on one machine without torchrun, ``--spawn`` starts the ranks itself (gloo on the CPU).
Keep NVLink multicast off on shared hosts (``NCCL_NVLS_ENABLE=0``,
``TORCH_SYMM_MEM_DISABLE_MULTICAST=1``; set here when unset).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from .bench.moe import case_inputs as bench_case_inputs
from .models import PRESETS, MoEShape, make_moe_weights
from .moe import DECODE_MAX_TOKENS, MoERunner
from .reference import moe_reference, relative_error

# the runner's torch fallback (bf16 GEMMs over exact weights) against the float32 oracle
FALLBACK_BOUND = 2e-2


@dataclass(frozen=True)
class ParallelCase:
    shape: MoEShape
    ep: int = 1
    tp: int = 1
    tokens: tuple[int, ...] = (1, 7, 63)
    skew: float = 0.0
    unrouted: float = 0.0  # fraction of routed slots set to -1
    num_experts: int | None = None  # generate only this many experts of the preset
    seed: int = 0
    reps: int = 20  # timed repetitions per cell (GPU)

    @property
    def world(self) -> int:
        return self.ep * self.tp


@dataclass
class RankResult:
    m: int
    rel_err: float
    bound: float
    rank_us: list = field(default_factory=list)  # per rank (GPU)
    allreduce_us: float | None = None
    layer_us: float | None = None  # the whole layer on one GPU, same inputs


def rank_layout(rank: int, tp: int) -> tuple[int, int]:
    """(ep_rank, tp_rank) of a global rank: TP ranks are adjacent, as TensorRT-LLM's MoE mapping."""
    return rank // tp, rank % tp


def case_inputs(case: ParallelCase, full, m: int):
    """The bench's case (same tokens and routing), with a fraction of slots made unrouted (-1)."""
    x, ids, w = bench_case_inputs(case.shape, full, m, seed=case.seed, skew=case.skew)
    if case.unrouted > 0:
        gen = torch.Generator(device=ids.device).manual_seed(case.seed + 1000 + m)
        drop = torch.rand(ids.shape, generator=gen, device=ids.device) < case.unrouted
        ids = torch.where(drop, torch.full_like(ids, -1), ids)
    return x, ids, w


def run_rank(case: ParallelCase, rank: int, world: int, device: torch.device) -> list[RankResult]:
    """One rank's part (a process group must be initialised): shard, decode, all-reduce, and on
    rank 0 the comparison with the whole layer's oracle."""
    if world != case.world:
        raise ValueError(f"world size {world} != ep {case.ep} x tp {case.tp}")
    full = make_moe_weights(case.shape, seed=case.seed, device=device, num_experts=case.num_experts)
    act = case.shape.default_activation()
    factory = None
    if device.type == "cuda":
        from .kernels.decode import decode_kernel_factory as factory
    ep_rank, tp_rank = rank_layout(rank, case.tp)
    runner = MoERunner.shard(full, act, ep_size=case.ep, ep_rank=ep_rank, tp_size=case.tp, tp_rank=tp_rank,
                             decode_kernel=factory)
    results = []
    for m in case.tokens:
        x, ids, w = case_inputs(case, full, m)
        part = runner(x, ids, w).float()
        total = part.clone()
        dist.all_reduce(total)
        res = RankResult(m, float("nan"), _bound(runner, m))
        if device.type == "cuda":
            res.rank_us, res.allreduce_us, res.layer_us = _timings(case, runner, full, act, factory, x, ids, w, part)
        if rank == 0:
            res.rel_err = relative_error(total, moe_reference(x, ids, w, full, act))
        results.append(res)
    return results


def _bound(runner, m: int) -> float:
    """The GPU suite's bound for the fused decode (W4A4 on SM120), the fallback's otherwise."""
    if runner.decode is not None and m < DECODE_MAX_TOKENS:
        return 5e-2 if runner.decode.tier == "sm120" else FALLBACK_BOUND
    return FALLBACK_BOUND


def _timings(case, runner, full, act, factory, x, ids, w, part):
    from .bench.timing import time_gpu

    rank_us = time_gpu(lambda: runner(x, ids, w), reps=case.reps, graph=False).median_us
    ar = part.clone()
    ar_us = time_gpu(lambda: dist.all_reduce(ar), reps=case.reps, graph=False).median_us
    gathered = [torch.zeros(1, dtype=torch.float64, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, torch.tensor([rank_us], dtype=torch.float64, device=x.device))
    whole = MoERunner(full, act, decode_kernel=factory)
    layer_us = time_gpu(lambda: whole(x, ids, w), reps=case.reps, graph=False).median_us
    return [float(g) for g in gathered], ar_us, layer_us


def _worker(rank: int, world: int, case: ParallelCase, init: str, out_path: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        results = run_rank(case, rank, world, torch.device("cpu"))
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump([dataclasses.asdict(r) for r in results], f)
    finally:
        dist.destroy_process_group()


def spawn_cpu(case: ParallelCase) -> list[RankResult]:
    """Run ``case`` in ``ep x tp`` local processes over gloo; rank 0's results."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as d:
        init, out = f"file://{os.path.join(d, 'store')}", os.path.join(d, "rank0.json")
        mp.spawn(_worker, args=(case.world, case, init, out), nprocs=case.world, join=True)
        with open(out) as f:
            return [RankResult(**r) for r in json.load(f)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m trtllm_b12x.parallel", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="qwen3-30b-a3b", choices=sorted(PRESETS))
    p.add_argument("--ep", type=int, default=1)
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--tokens", type=int, nargs="+", default=[1, 7, 63, 80])
    p.add_argument("--num-experts", type=int)
    p.add_argument("--skew", type=float, default=0.0)
    p.add_argument("--unrouted", type=float, default=0.0)
    p.add_argument("--spawn", action="store_true", help="start the ranks here (gloo, CPU) instead of torchrun")
    p.add_argument("--json", help="rank 0 writes its results here")
    args = p.parse_args(argv)
    if args.ep < 1 or args.tp < 1 or any(t < 1 for t in args.tokens):
        p.error("--ep, --tp and --tokens must be positive")
    case = ParallelCase(PRESETS[args.preset], args.ep, args.tp, tuple(args.tokens), args.skew, args.unrouted,
                        args.num_experts)
    if args.spawn:
        results, rank = spawn_cpu(case), 0
    else:
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
        os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if cuda else "gloo")
        rank = dist.get_rank()
        device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        try:
            results = run_rank(case, rank, dist.get_world_size(), device)
        finally:
            dist.destroy_process_group()
    if rank == 0:
        ok = all(r.rel_err <= r.bound for r in results)
        for r in results:
            timing = "" if r.layer_us is None else (f"  ranks {['%.1f' % t for t in r.rank_us]} us, all-reduce "
                                                    f"{r.allreduce_us:.1f} us, one GPU {r.layer_us:.1f} us")
            print(f"{args.preset} ep={case.ep} tp={case.tp} m={r.m}: rel err {r.rel_err:.3g} (bound {r.bound:g})"
                  + timing)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"case": {"preset": args.preset, "ep": case.ep, "tp": case.tp, "skew": case.skew,
                                    "unrouted": case.unrouted}, "rows": [dataclasses.asdict(r) for r in results]},
                          f, indent=1)
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
