"""Device memory of one MoE layer served by the fused decode, per preset at its full expert count.

The layer's tensors are made as TensorRT-LLM's NVFP4 CUTLASS method leaves them (int64 E2M1
words, int32 scale words, fp32 alphas and input scales); then, measured with
``torch.cuda.memory_allocated``: the bundle built from them (``bundle_from_cutlass_tensors``),
the runner with its decode kernel, and the kernels compiled for bf16 with the preset's top-k
(which allocates the workspace for the largest decode batch). Reported: the layer's tensors,
the bytes added on top of them after all of that, which of those are the workspace, and the
peak while converting (transients included).

    python benchmarks/memory_moe_decode.py --json memory.json
"""

from __future__ import annotations

import argparse
import datetime
import json

import torch

from trtllm_b12x.arch import describe_device
from trtllm_b12x.kernels.cache import KernelCache
from trtllm_b12x.kernels.decode import decode_kernel_factory
from trtllm_b12x.models import PRESETS, make_moe_weights
from trtllm_b12x.quantization.bundle import nbytes
from trtllm_b12x.moe import MoERunner
from trtllm_b12x.trtllm.weights import bundle_from_cutlass_tensors


def module_tensors(shape, seed: int = 0) -> dict:
    """A layer's tensors in TensorRT-LLM's storage types (the bundle generator writes that layout)."""
    w = make_moe_weights(shape, seed=seed, device="cuda")
    in1, in2 = w.fc1_input_scale.amax().reciprocal(), w.fc2_input_scale.amax().reciprocal()
    t = {"w3_w1_weight": w.w13.view(torch.int64), "w3_w1_weight_scale": w.w13_scale.view(torch.int32),
         "w2_weight": w.w2.view(torch.int64), "w2_weight_scale": w.w2_scale.view(torch.int32),
         "fc31_input_scale": in1, "fc2_input_scale": in2,
         "fc31_alpha": w.w13_global.amax(1) / in1, "fc2_alpha": w.w2_global / in2}
    return t


def measure(name: str, cache: KernelCache) -> dict:
    shape = PRESETS[name]
    t = module_tensors(shape)
    torch.cuda.synchronize()
    layer = nbytes(*t.values())
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    bundle = bundle_from_cutlass_tensors(**t, intermediate_size=shape.intermediate_size, gated=shape.gated)
    after_bundle = torch.cuda.memory_allocated() - base
    runner = MoERunner(bundle, shape.default_activation(), decode_kernel=decode_kernel_factory)
    runner.decode.compile_all("bfloat16", shape.top_k)
    torch.cuda.synchronize()
    held = runner.decode.held_bytes()
    row = {
        "preset": name, "experts": bundle.num_experts, "layer_bytes": layer,
        "expert_weight_bytes": bundle.num_experts * bundle.stored_bytes_per_expert,
        "bundle_extra_bytes": after_bundle,
        "extra_bytes_after_compile": torch.cuda.memory_allocated() - base,
        "peak_extra_bytes": torch.cuda.max_memory_allocated() - base,
        "decode_held": held, "one_expert_bytes": bundle.stored_bytes_per_expert,
    }
    del runner, bundle, t
    torch.cuda.empty_cache()
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=sorted(PRESETS), choices=sorted(PRESETS))
    p.add_argument("--json")
    args = p.parse_args()
    cache = KernelCache()
    rows = []
    for name in args.presets:
        r = measure(name, cache)
        rows.append(r)
        gb = 1e9
        print(f"{name:18s} E={r['experts']:4d} layer {r['layer_bytes'] / gb:6.3f} GB | bundle +{r['bundle_extra_bytes']} B"
              f" | after compile +{r['extra_bytes_after_compile'] / gb:6.3f} GB (decode workspace "
              f"{r['decode_held']['workspace'] / 1e6:.2f} MB, "
              f"scalars {r['decode_held']['scalars'] / 1e3:.1f} kB) | peak +{r['peak_extra_bytes'] / gb:6.3f} GB",
              flush=True)
    doc = {"device": describe_device(torch.device("cuda")), "date": datetime.date.today().isoformat(),
           "torch": torch.__version__, "rows": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
