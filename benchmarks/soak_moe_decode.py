"""CUDA-graph soak of the fused decode: many replays with new routing every replay.

For each preset and each batch size one graph is captured (caller-owned output and
workspace, fixed addresses); every replay gets new tokens and new routing (uniform and
skewed alternate) copied into the captured inputs, and its output must equal an eager call
on the same inputs bit for bit. The whole sequence then runs a second time on the same
inputs and must reproduce the first run bit for bit. Every 500th replay is also checked
against the float32 oracle (the GPU suite's bound: twice the torch fallback's error plus
1e-3). Outputs are poisoned (NaN) before each replay.

    python benchmarks/soak_moe_decode.py --replays 10000 --json soak.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import time

import torch

from trtllm_b12x.arch import describe_device
from trtllm_b12x.kernels.decode import decode_kernel_factory
from trtllm_b12x.models import PRESETS, make_moe_weights
from trtllm_b12x.moe import MoERunner
from trtllm_b12x.reference import moe_reference, relative_error

M_LIST = (1, 7, 32, 63)


def routing_bank(n: int, m: int, experts: int, top_k: int, gen: torch.Generator):
    """``n`` routings of ``m`` tokens: even ones uniform, odd ones skewed to a tenth of the experts."""
    logits = torch.randn(n, m, experts, generator=gen, device="cuda")
    hot = max(top_k, experts // 10)
    logits[1::2, :, :hot] += 3.0
    vals, ids = logits.topk(top_k, dim=-1)
    return ids.to(torch.int32), torch.softmax(vals, dim=-1)


def soak(name: str, replays: int, seed: int) -> dict:
    shape = PRESETS[name]
    weights = make_moe_weights(shape, seed=seed, device="cuda")
    act = shape.default_activation()
    runner = MoERunner(weights, act, decode_kernel=decode_kernel_factory)
    assert runner.decode is not None, f"{name}: no fused decode on this GPU"
    gen = torch.Generator(device="cuda").manual_seed(seed)
    per_m = replays // len(M_LIST)
    report = {"preset": name, "experts": weights.num_experts, "replays": per_m * len(M_LIST), "per_m": {}}
    t_all = time.perf_counter()
    for m in M_LIST:
        xs = torch.randn(per_m, m, shape.hidden_size, generator=gen, device="cuda").to(torch.bfloat16)
        bank_ids, bank_w = routing_bank(per_m, m, weights.num_experts, shape.top_k, gen)
        x, ids, w = xs[0].clone(), bank_ids[0].clone(), bank_w[0].clone()
        out = torch.empty(m, shape.hidden_size, dtype=torch.bfloat16, device="cuda")
        eager = torch.empty_like(out)
        ws = torch.zeros(runner.workspace_bytes(m, shape.top_k, x.dtype), dtype=torch.uint8, device="cuda")
        runner(x, ids, w, out=out, workspace=ws)  # compile and warm up outside the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            runner(x, ids, w, out=out, workspace=ws)
        first = torch.empty(per_m, m, shape.hidden_size, dtype=torch.bfloat16, device="cuda")
        mismatches = torch.zeros(2, dtype=torch.int64, device="cuda")  # graph vs eager, run 2 vs run 1
        worst, checked = 0.0, 0
        t0 = time.perf_counter()
        for run in range(2):
            for i in range(per_m):
                x.copy_(xs[i])
                ids.copy_(bank_ids[i])
                w.copy_(bank_w[i])
                out.fill_(float("nan"))
                graph.replay()
                runner(x, ids, w, out=eager)
                mismatches[0] += (out.view(torch.int16) != eager.view(torch.int16)).any()
                if run == 0:
                    first[i].copy_(out)
                    if i % 500 == 0:
                        ref = moe_reference(x, ids, w, weights, act)
                        fb = torch.empty_like(out)
                        runner.fallback(x, ids, w, fb)
                        err, err_fb = relative_error(out.float(), ref), relative_error(fb.float(), ref)
                        worst = max(worst, err / (2 * err_fb + 1e-3))
                        checked += 1
                else:
                    mismatches[1] += (out.view(torch.int16) != first[i].view(torch.int16)).any()
        torch.cuda.synchronize()
        bad = mismatches.tolist()
        report["per_m"][m] = {"replays": per_m, "graph_vs_eager_mismatches": bad[0],
                              "run2_vs_run1_mismatches": bad[1], "oracle_checks": checked,
                              "worst_error_over_bound": worst, "seconds": time.perf_counter() - t0}
        print(f"{name} m={m}: {per_m} replays x 2 runs, mismatches graph/eager {bad[0]}, run2/run1 {bad[1]}, "
              f"oracle checks {checked} (worst {worst:.2f} of the bound), {time.perf_counter() - t0:.1f} s", flush=True)
    report["seconds"] = time.perf_counter() - t_all
    report["ok"] = all(v["graph_vs_eager_mismatches"] == 0 and v["run2_vs_run1_mismatches"] == 0
                       and v["worst_error_over_bound"] <= 1.0 for v in report["per_m"].values())
    return report


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["qwen3-30b-a3b", "nemotron-3-super"], choices=sorted(PRESETS))
    p.add_argument("--replays", type=int, default=10_000, help="replays per preset (split over the batch sizes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the report here")
    args = p.parse_args()
    reports = [soak(n, args.replays, args.seed) for n in args.presets]
    doc = {"device": describe_device(torch.device("cuda")), "date": datetime.date.today().isoformat(),
           "torch": torch.__version__, "reports": reports}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    ok = all(r["ok"] for r in reports)
    print("soak:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
