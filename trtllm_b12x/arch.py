"""The one place that probes a GPU or names a compile target.

Architectures are matched against explicit sets: SM120/SM121 (consumer Blackwell) are not
supersets of SM100, and SM90 kernels use sm_90a-only instructions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ._env import settings


@dataclass(frozen=True)
class Target:
    """A compile target and the kernel tier that runs on it."""

    name: str  # the ptxas/cute-dsl target, e.g. "sm_120a"
    capability: tuple[int, int]
    tier: str  # "sm90" (W4A16, BF16 tensor cores) | "sm120" (W4A4, block-scaled FP4 MMA)
    parts: str  # GPUs of this architecture
    smem_per_block: int  # opt-in shared memory per CTA, bytes
    smem_per_sm: int  # shared memory of one SM, bytes (1 KiB of it is reserved per resident CTA)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("sm_90a", (9, 0), "sm90", "H100, H200, H20, GH200", 232448, 233472),
        Target("sm_120a", (12, 0), "sm120", "RTX PRO 6000 Blackwell, RTX 5090", 101376, 102400),
        Target("sm_121a", (12, 1), "sm120", "DGX Spark (GB10)", 101376, 102400),
    )
}
_BY_CAPABILITY = {t.capability: t for t in TARGETS.values()}


class UnsupportedArchError(RuntimeError):
    pass


def supported_targets() -> str:
    return ", ".join(f"{t.name} ({t.parts})" for t in TARGETS.values())


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UnsupportedArchError(f"compile target {name!r} is not supported; supported: {supported_targets()}") from None


def device_capability(device: int | torch.device | None = None) -> tuple[int, int] | None:
    """Compute capability of a CUDA device, or None without one."""
    if not torch.cuda.is_available():
        return None
    return tuple(torch.cuda.get_device_capability(device))


def target_for_capability(cc: tuple[int, int]) -> Target:
    t = _BY_CAPABILITY.get(tuple(cc))
    if t is None:
        raise UnsupportedArchError(
            f"GPU architecture sm_{cc[0]}{cc[1]} is not supported; supported: {supported_targets()}"
        )
    return t


def current_target(device: int | torch.device | None = None, forced: str | None = None) -> Target:
    """Target to compile for: ``forced`` (or TRTLLM_B12X_ARCH), else the GPU's."""
    forced = forced or settings().forced_arch
    if forced:
        return get_target(forced)
    cc = device_capability(device)
    if cc is None:
        raise UnsupportedArchError(
            "no CUDA GPU found and no target forced; pass an explicit arch (e.g. --arch sm_120a) "
            f"to compile ahead of time. Supported: {supported_targets()}"
        )
    return target_for_capability(cc)


def describe_device(device: int | torch.device | None = None) -> str:
    cc = device_capability(device)
    if cc is None:
        return "no CUDA GPU"
    return f"{torch.cuda.get_device_name(device)} (sm_{cc[0]}{cc[1]})"


def sm_count(device: int | torch.device | None = None) -> int:
    """Streaming multiprocessors of a CUDA device (persistent kernels size their grids by it)."""
    return torch.cuda.get_device_properties(device).multi_processor_count
