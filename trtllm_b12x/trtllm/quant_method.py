"""The quant method: TensorRT-LLM's CUTLASS NVFP4 method (and its W4A16 variant), plus one
step once the CUTLASS tensors are final (G2 ``transform_weights``, G1 ``post_load_weights``):
build our weight bundle from them (views: the bundle's layout is theirs), make the layer's
:class:`MoERunner` and compile its decode kernel for this GPU. A failure leaves the layer on
CUTLASS with the reason.
"""

from __future__ import annotations

import sys
import types

import torch

from .. import ops
from ..activation import Activation
from ..moe import MoERunner, Parallel
from ..quantization.bundle import nbytes
from . import _log, backend
from .backend import activation_constants, layer_activation, runtime_facts
from .decision import dtype_name
from .weights import WEIGHT_TENSORS, bundle_from_module, own_bytes

_ACTIVATION_KIND = {"Swiglu": "swiglu", "Relu2": "relu2"}


class B12xQuantMixin:
    """Builds the b12x runner once the CUTLASS tensors are final; keeps them for prefill."""

    _b12x_quant = "NVFP4"  # the quant algo this method serves
    _b12x_swizzled = True  # scale layout the parent method leaves

    def build_b12x(self, module, tensors: dict | None = None) -> None:
        if getattr(module, "b12x_reason", "") is not None:
            return
        if getattr(module, "fc31_act_scale", None) is not None:
            return module._b12x_off("NVFP4_AWQ pre-quant activation scales are not supported by the decode kernel")
        try:
            bundle = bundle_from_module(module, scales_swizzled=self._b12x_swizzled, tensors=tensors)
        except ValueError as exc:
            return module._b12x_off(f"unexpected CUTLASS weight layout: {exc}")
        runner, reason = _make_runner(module, bundle)
        if reason is not None:
            return module._b12x_off(reason)
        ops.register(runner)  # before any torch.compile trace of the layer
        module._b12x_runner = runner
        owners = [getattr(module, n) for n in WEIGHT_TENSORS]
        held = getattr(runner.decode, "held_bytes", dict)()
        parts = {"bundle scalars": own_bytes(bundle, *owners), **{f"decode {k}": v for k, v in held.items()}}
        module.b12x_extra_bytes = sum(parts.values())
        detail = ", ".join(f"{k} {v / 2**20:.1f} MiB" for k, v in parts.items())
        copied = " (a copy: Marlin repacks its own)" if tensors is not None else " (views of those tensors)"
        _log.once(("memory", type(module).__name__), "info",
                  f"{type(module).__name__}: layer {getattr(module, 'layer_idx', '?')} holds "
                  f"{module.b12x_extra_bytes / 2**20:.1f} MiB beyond its TensorRT-LLM tensors ({detail}); "
                  f"the bundle is{copied}")


class TransformWeightsHook:
    def transform_weights(self, module, *args, **kwargs):
        out = super().transform_weights(module, *args, **kwargs)
        self.build_b12x(module)
        return out


class CopyBeforeRepackHook:
    """Marlin's ``transform_weights`` repacks the CUTLASS-layout tensors into its own layout:
    our bundle is built from copies made just before, where the memory rule allows them."""

    def transform_weights(self, module, *args, **kwargs):
        copies = None
        if getattr(module, "b12x_reason", "") is None:
            why = marlin_copy_reason(nbytes(*(getattr(module, n) for n in WEIGHT_TENSORS)),
                                     getattr(module, WEIGHT_TENSORS[0]).device)
            if why is not None:
                module._b12x_off(why)
            else:
                copies = {n: getattr(module, n).detach().clone() for n in WEIGHT_TENSORS}
        out = super().transform_weights(module, *args, **kwargs)
        if copies is not None:
            self.build_b12x(module, tensors=copies)
        return out


MARLIN_FREE_FRACTION = 0.10  # the copy must leave at least this fraction of the GPU's memory free


def marlin_copy_reason(nbytes: int, device, free_total: tuple[int, int] | None = None) -> str | None:
    """The memory rule for moe_backend MARLIN, or why it refuses: a layer keeps a copy of its
    expert weights (``nbytes``) only while ``TRTLLM_B12X_MARLIN_COPY`` is not ``off`` and the
    copy leaves at least :data:`MARLIN_FREE_FRACTION` of the device's memory free (checked per
    layer as it loads). Off the GPU (test doubles) only the setting applies."""
    from .._env import settings

    if settings().marlin_copy == "off":
        return "TRTLLM_B12X_MARLIN_COPY=off: no copy of the expert weights next to Marlin's"
    if free_total is None and getattr(device, "type", None) == "cuda":
        free_total = torch.cuda.mem_get_info(device)
    if free_total is None:
        return None
    free, total = free_total
    if free - nbytes < MARLIN_FREE_FRACTION * total:
        return (f"moe_backend MARLIN: the b12x copy of this layer's expert weights ({nbytes / 2**20:.1f} MiB; "
                f"Marlin repacks its own) would leave {max(free - nbytes, 0) / 2**30:.2f} GiB of "
                f"{total / 2**30:.1f} GiB free; the rule keeps {MARLIN_FREE_FRACTION:.0%} free "
                "(TRTLLM_B12X_MARLIN_COPY=off turns the copy off)")
    return None


class PostLoadWeightsHook:
    def post_load_weights(self, module, *args, **kwargs):
        parent = getattr(super(), "post_load_weights", None)
        out = parent(module, *args, **kwargs) if parent is not None else None
        self.build_b12x(module)
        return out


def build_quant_methods(gen) -> dict:
    """``{TensorRT-LLM method class: our subclass}`` for NVFP4 (swizzled scales), where the
    generation has them W4A16_NVFP4 (linear scales) and Marlin's NVFP4 method (which repacks:
    our bundle is built from copies taken just before)."""
    hook = TransformWeightsHook if gen.name == "G2" else PostLoadWeightsHook
    out = {}
    for base, quant, swizzled, h in ((gen.nvfp4_method, "NVFP4", True, hook),
                                     (gen.w4a16_method, "W4A16_NVFP4", False, hook),
                                     (getattr(gen, "marlin_method", None), "NVFP4", True, CopyBeforeRepackHook)):
        if base is None:
            continue
        ns = {"__module__": __name__, "_b12x_quant": quant, "_b12x_swizzled": swizzled}
        out[base] = types.new_class(f"B12x{base.__name__}", (h, B12xQuantMixin, base),
                                    exec_body=lambda body, ns=ns: body.update(ns))
    return out


def _make_runner(module, bundle) -> tuple[MoERunner | None, str | None]:
    """Runner with the decode kernel for this GPU, compiled now; (None, reason) if none."""
    factory = backend._decode_kernel_factory()  # looked up per call: the plug-in point
    if factory is None:
        return None, runtime_facts().kernel_missing or "no decode kernel factory"
    kind = _ACTIVATION_KIND.get(layer_activation(module))
    constants = activation_constants(module) or {}  # per-layer values (the layer's decision checked that)
    parallel = Parallel(module.num_experts, getattr(module, "slot_start", 0), module.tp_size, module.tp_rank)
    try:
        runner = MoERunner(bundle, Activation(kind, **constants), parallel, decode_kernel=factory, validate_ids=False)
    except Exception as exc:  # a factory may fail in many ways (compile, unsupported shape)
        return None, f"decode kernel setup failed ({type(exc).__name__}: {exc})"
    if runner.decode is None:
        explain = getattr(sys.modules.get(getattr(factory, "__module__", "")), "unsupported_reason", None)
        why = explain(runner) if callable(explain) else None
        return None, "the decode kernel factory has no kernel for this layer here" + (f": {why}" if why else "")
    top_k = _top_k(module)
    compile_all = getattr(runner.decode, "compile_all", None)
    if callable(compile_all):  # compile before any CUDA-graph capture, and fail over here, not mid-run
        try:
            compile_all(dtype_name(module.dtype), top_k)
        except Exception as exc:  # compile errors and the SM120 tier's self-check
            return None, f"decode kernels failed to compile or check ({dtype_name(module.dtype)}, top_k={top_k}): {exc}"
    return runner, _first_launch(runner, module.dtype, top_k)


def _first_launch(runner: MoERunner, dtype, top_k: int) -> str | None:
    """One decode call at load time (one token routed to ``top_k`` local experts), so that a
    kernel that cannot launch here, or returns non-finite values, fails over now and not in
    the first served batch. Returns why it failed, or None."""
    w, par = runner.weights, runner.parallel
    gen = torch.Generator(device=w.device).manual_seed(0)
    x = torch.randn(1, w.hidden_size, generator=gen, device=w.device).to(dtype)
    ids = (par.expert_offset + torch.arange(top_k, device=w.device) % w.num_experts).to(torch.int32).view(1, top_k)
    rw = torch.full((1, top_k), 1.0 / top_k, device=w.device)
    try:
        out = runner(x, ids, rw)
        finite = bool(torch.isfinite(out).all())  # also waits for the launch
    except Exception as exc:  # a launch error of any kind: this layer stays on CUTLASS
        return f"first decode launch failed ({type(exc).__name__}: {exc})"
    return None if finite else "first decode launch returned non-finite values"


def _top_k(module) -> int:
    rm = module.routing_method
    k = getattr(rm, "experts_per_token", None)
    return int(k if k is not None else rm.get_experts_per_token())
