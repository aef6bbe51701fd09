"""Routed-MoE shapes of real NVFP4 checkpoints, and synthetic NVFP4 weights of those shapes."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .activation import SUPPORTED as ACTIVATION_KINDS
from .activation import Activation
from .quantization.bundle import MoEWeights, expert_bytes
from .quantization.nvfp4 import quantize_weight


@dataclass(frozen=True)
class MoEShape:
    """Shape of one routed-expert MoE layer (the expert input dimension is ``hidden_size``)."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_experts: int
    top_k: int
    activation: str  # "swiglu" | "relu2"
    checkpoint: str  # a public checkpoint with this shape

    @property
    def gated(self) -> bool:
        return self.activation == "swiglu"

    @property
    def bytes_per_expert(self) -> float:
        return expert_bytes(self.hidden_size, self.intermediate_size, self.gated)

    def default_activation(self) -> Activation:
        return Activation(self.activation)


PRESETS: dict[str, MoEShape] = {
    s.name: s
    for s in (
        MoEShape("qwen3-30b-a3b", 2048, 768, 128, 8, "swiglu", "nvidia/Qwen3-30B-A3B-NVFP4"),
        MoEShape("qwen3-235b-a22b", 4096, 1536, 128, 8, "swiglu", "nvidia/Qwen3-235B-A22B-NVFP4"),
        # Nemotron-3-Super runs its routed experts in the 1024-wide latent space.
        MoEShape("nemotron-3-super", 1024, 2688, 512, 22, "relu2", "nvidia/NVIDIA-Nemotron-3-Super-120B-A12B-NVFP4"),
        MoEShape("nemotron-3-nano", 2688, 1856, 128, 6, "relu2", "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4"),
        MoEShape("deepseek-v3", 7168, 2048, 256, 8, "swiglu", "nvidia/DeepSeek-V3-0324-NVFP4"),
        MoEShape("qwen3.5-397b", 4096, 1024, 512, 10, "swiglu", "nvidia/Qwen3.5-397B-A17B-NVFP4"),
    )
}
DEFAULT_PRESET = "qwen3-30b-a3b"


def get_preset(name: str) -> MoEShape:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


SHAPE_FORMAT = "H,I,E,K,ACT (hidden, intermediate, experts, top-k, swiglu|relu2; e.g. 4096,14336,8,2,swiglu)"


def parse_shape(text: str) -> MoEShape:
    """A layer shape no preset has, from ``H,I,E,K,ACT`` (:data:`SHAPE_FORMAT`); a clear error otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 5:
        raise ValueError(f"shape {text!r}: expected {SHAPE_FORMAT}")
    try:
        h, i, e, k = (int(p) for p in parts[:4])
    except ValueError:
        raise ValueError(f"shape {text!r}: H, I, E and K must be integers; expected {SHAPE_FORMAT}") from None
    if parts[4] not in ACTIVATION_KINDS:
        raise ValueError(f"shape {text!r}: activation {parts[4]!r}; supported: {', '.join(ACTIVATION_KINDS)}")
    for name, v in (("H", h), ("I", i)):
        if v <= 0 or v % 16:
            raise ValueError(f"shape {text!r}: {name}={v} must be a positive multiple of 16 (one NVFP4 scale block)")
    if not 0 < k <= e:
        raise ValueError(f"shape {text!r}: top-k K={k} and experts E={e} need 1 <= K <= E")
    return MoEShape(f"shape-{h}x{i}-e{e}-k{k}-{parts[4]}", h, i, e, k, parts[4], checkpoint="")


# Synthetic activations are N(0, 1); their calibrated amax is about this.
_ACT_AMAX = 6.0


def make_moe_weights(
    shape: MoEShape,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    num_experts: int | None = None,
    chunk: int = 8,
) -> MoEWeights:
    """Random bf16 expert weights quantized with the ModelOpt recipe (seeded).

    Each projection of each expert gets its own ``weight_scale_2`` (w1 and w3 differ, as in
    checkpoints calibrated per projection) and per-expert input scales. The bundle is in
    TensorRT-LLM's CUTLASS layout (:class:`MoEWeights`), as a checkpoint reader builds it. ``num_experts``
    limits the number of experts generated (for small test layers). Experts are generated
    ``chunk`` at a time to bound memory.
    """
    e_total = shape.num_experts if num_experts is None else num_experts
    h, inter = shape.hidden_size, shape.intermediate_size
    gen = torch.Generator(device=device).manual_seed(seed)
    fc1 = ("w1", "w3") if shape.gated else ("w1",)
    halves: list[list] = [[] for _ in fc1]  # per projection: NVFP4Tensor per chunk of experts
    down: list = []
    for lo in range(0, e_total, chunk):
        n = min(chunk, e_total - lo)
        for half in halves:
            # fan-in scaled so FC1 outputs are O(1); a per-expert spread exercises the globals
            spread = 0.5 + torch.rand(n, 1, 1, generator=gen, device=device)
            w = torch.randn(n, inter, h, generator=gen, device=device) * (spread / h**0.5)
            half.append(quantize_weight(w.to(torch.bfloat16), per=1))
        w = torch.randn(n, h, inter, generator=gen, device=device) * (1.0 / inter**0.5)
        down.append(quantize_weight(w.to(torch.bfloat16), per=1))
    jitter = 0.9 + 0.2 * torch.rand(2, e_total, generator=gen, device=device)
    g = _ACT_AMAX / (6.0 * 448.0)

    def cat(qs, field):
        return torch.cat([getattr(q, field) for q in qs])

    return MoEWeights.from_linear(
        [(cat(qs, "data"), cat(qs, "scale")) for qs in halves],
        torch.stack([cat(qs, "global_scale") for qs in halves], dim=1),
        (cat(down, "data"), cat(down, "scale")), cat(down, "global_scale"),
        fc1_input_scale=(g * jitter[0]).float(), fc2_input_scale=(g * jitter[1]).float(),
    )


def make_hidden_states(m: int, shape: MoEShape, *, seed: int = 0, dtype=torch.bfloat16, device="cpu") -> torch.Tensor:
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    return torch.randn(m, shape.hidden_size, generator=gen, device=device).to(dtype)


def make_routing(
    m: int,
    num_experts: int,
    top_k: int,
    *,
    seed: int = 0,
    skew: float = 0.0,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k routing: ``(ids int32 [m, k], weights float32 [m, k])``, weights renormalized.

    ``skew = 0`` routes uniformly; ``skew > 0`` adds ``skew * log`` of a Zipf popularity, so
    a few hot experts receive most tokens (as real routers do under load imbalance).
    """
    if not 0 < top_k <= num_experts:
        raise ValueError(f"top_k={top_k} must be in [1, num_experts={num_experts}]")
    gen = torch.Generator(device=device).manual_seed(seed + 2)
    logits = torch.randn(m, num_experts, generator=gen, device=device)
    if skew > 0:
        rank = torch.randperm(num_experts, generator=gen, device=device).float() + 1.0
        logits = logits - skew * rank.log()
    vals, ids = logits.topk(top_k, dim=-1)
    return ids.to(torch.int32), torch.softmax(vals, dim=-1).float()
