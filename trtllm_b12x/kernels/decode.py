"""The fused MoE decode's tier registry: which host class serves a GPU's tier, and the entry
points that pick it for a target (its phase configs, one compiled phase, the runner's kernel
factory). The tier modules (:mod:`.moe_decode`, the base and SM90 tier, and
:mod:`.moe_decode_sm120`) know nothing of each other beyond the subclass relation."""

from __future__ import annotations

import logging

import torch

from ..arch import Target, UnsupportedArchError, current_target
from .cache import KernelCache
from .moe_decode import FusedDecode, GemvConfig, compile_gemv
from .moe_decode import phase_configs as _phase_configs
from .moe_decode_sm120 import FusedDecodeSm120

log = logging.getLogger("trtllm_b12x")

TIERS: dict[str, type[FusedDecode]] = {FusedDecode.tier: FusedDecode, FusedDecodeSm120.tier: FusedDecodeSm120}


def fused_decode_class(tier: str) -> type[FusedDecode]:
    """The host class of the decode kernel for a tier."""
    try:
        return TIERS[tier]
    except KeyError:
        raise UnsupportedArchError(f"no fused decode kernel for tier {tier}; supported tiers: "
                                   f"{', '.join(sorted(TIERS))}") from None


def phase_configs(hidden: int, intermediate: int, experts: int, activation, top_k: int, dtype: str,
                  target: Target, expert_offset: int = 0) -> tuple[GemvConfig, GemvConfig]:
    """The (FC1, FC2) configs of a layer on ``target``, for that target's tier."""
    mma = fused_decode_class(target.tier).kernel_cls.mma
    return _phase_configs(hidden, intermediate, experts, activation, top_k, dtype, target, expert_offset, mma=mma)


def compile_phase(cfg: GemvConfig, target: Target, *, cache: KernelCache | None = None, tvm_ffi: bool | None = None):
    """One decode phase compiled for ``target`` with its tier's kernel (or loaded from the cache)."""
    return compile_gemv(fused_decode_class(target.tier).kernel_cls(cfg), target, cache=cache, tvm_ffi=tvm_ffi)


def device_reason(device: torch.device) -> str | None:
    """Why the fused decode cannot run on ``device``, or None."""
    if device.type != "cuda":
        return f"{device} is not a CUDA device; the fused decode runs on CUDA GPUs"
    try:
        fused_decode_class(current_target(device).tier)
    except UnsupportedArchError as err:
        return str(err)
    return None


def unsupported_reason(runner) -> str | None:
    """Why the fused decode cannot serve this runner here, or None."""
    w = runner.weights
    return device_reason(w.device) or fused_decode_class(current_target(w.device).tier).shape_reason(w)


def decode_kernel_factory(runner) -> FusedDecode | None:
    """``MoERunner(..., decode_kernel=decode_kernel_factory)``: the fused decode for this GPU,
    or None (the runner then uses its fallback) with one log line saying why."""
    why = unsupported_reason(runner)
    if why is not None:
        log.info("trtllm-b12x: fused decode not used: %s", why)
        return None
    return fused_decode_class(current_target(runner.weights.device).tier)(runner)
