"""The one promotion decision: may the b12x backend serve this MoE layer?

Every entry point asks :func:`decide` with the facts it has: TensorRT-LLM's ``can_implement``
in either API generation, the G1 selection wrapper (model config), the constructed layer
(its real activation, bias and topology) and the doctor (a config file or preset). A fact
that is ``None`` is unknown there and abstains instead of rejecting, as TensorRT-LLM's own
gates do; a later entry point that knows it decides.

=========================  ===================================================================
fact                       supported
=========================  ===================================================================
sm + quant                 SM120/SM121 with NVFP4 (W4A4 decode); SM90 with W4A16_NVFP4
                           (W4A16 decode; TensorRT-LLM's CUTLASS MoE, which runs prefill, has
                           no NVFP4 path on SM90); SM90 with NVFP4 too under moe_backend MARLIN
                           (Marlin prefill; costs a copy of the expert weights, see the quant method)
activation dtype           bfloat16, float16
activation                 Swiglu, Relu2; no gpt-oss style, no expert bias; SwiGLU
                           alpha/beta/limit constants where each is one value per layer
topology                   any EP size (global expert ids) and MoE TP; no attention DP (its
                           alltoall / allgather mixes per-rank quantization choices), no MoE
                           clusters, no router weight applied on the input
EPLB, MoE LoRA             not supported
decode kernel              importable (nvidia-cutlass-dsl and trtllm_b12x.kernels.decode)
=========================  ===================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# quant algo each SM tier decodes (QuantAlgo values)
SM_QUANT = {120: "NVFP4", 121: "NVFP4", 90: "W4A16_NVFP4"}
MARLIN_QUANT = {"NVFP4", "W4A16_NVFP4"}  # under moe_backend MARLIN on SM90
DTYPES = ("bfloat16", "float16")
ACTIVATIONS = ("Swiglu", "Relu2")

# reason codes; named like TensorRT-LLM's MoERejectReason members
SM, QUANT, DTYPE, ACTIVATION, TOPOLOGY, EPLB, LORA, DEP = (
    "SM_UNSUPPORTED", "QUANT_UNSUPPORTED", "DTYPE_UNSUPPORTED", "ACTIVATION_UNSUPPORTED",
    "TOPOLOGY_UNSUPPORTED", "EPLB_UNSUPPORTED", "LORA_UNSUPPORTED", "DEP_MISSING",
)


@dataclass(frozen=True)
class Facts:
    """What is known about one MoE layer and where it runs; ``None`` = unknown here."""

    sm: int | None = None  # 120 for sm_120
    quant: str | None = None  # QuantAlgo value ("NVFP4", "W4A16_NVFP4", ...); "none" = unquantized
    dtype: str | None = None  # activation dtype name ("bfloat16")
    activation: str | None = None  # ActivationType name ("Swiglu", "Relu2", ...)
    gptoss_style: bool | None = None
    bias: bool | None = None
    activation_constants: bool | None = None  # SwiGLU alpha/beta/limit supplied (values decided on the layer)
    constants_per_layer: bool | None = None  # each supplied constant is one finite value for all experts
    ep_size: int | None = None
    attention_dp: bool | None = None  # attention DP over more than one rank
    cluster_size: int | None = None
    router_weight_on_input: bool | None = None
    eplb: bool | None = None
    lora: bool | None = None
    family: str | None = None  # the moe_backend family the layer is served in: CUTLASS, CUTEDSL, MARLIN


@dataclass(frozen=True)
class RuntimeFacts:
    """Probed once per process (at :func:`enable`), then frozen: why no decode kernel can be
    had here, or None when one can."""

    kernel_missing: str | None = None


@dataclass(frozen=True)
class Verdict:
    ok: bool
    code: str | None = None  # one of the reason codes above when not ok
    detail: str = ""
    unknown: tuple[str, ...] = ()  # facts that abstained

    def __str__(self) -> str:
        return "eligible" if self.ok else f"{self.code}: {self.detail}"


def _supported_tiers() -> str:
    return "SM120/SM121 with NVFP4, SM90 with W4A16_NVFP4"


def _check(f: Facts) -> tuple[str, str] | None:
    if f.sm is not None and f.sm not in SM_QUANT:
        return SM, f"SM{f.sm} is not supported; supported: {_supported_tiers()}"
    if f.quant is not None:
        allowed = {SM_QUANT[f.sm]} if f.sm is not None else set(SM_QUANT.values())
        if f.family == "MARLIN":  # Marlin runs prefill: it takes NVFP4 checkpoints on SM90 as well
            allowed = MARLIN_QUANT if f.sm in (None, 90) else set()
        if f.family == "MARLIN" and f.sm is not None and f.sm != 90:
            return SM, f"SM{f.sm} under moe_backend MARLIN is not supported; supported: SM90 (Marlin: SM89-99)"
        if f.quant not in allowed:
            why = ""
            if f.sm == 90 and f.quant == "NVFP4":
                why = (" (TensorRT-LLM's CUTLASS MoE, which runs prefill, has no NVFP4 path on SM90; "
                       "the same checkpoint runs as W4A16_NVFP4)")
            elif f.sm in (120, 121) and f.quant == "W4A16_NVFP4":
                why = " (the SM120 decode kernel quantizes activations: W4A4)"
            where = f" on SM{f.sm}" if f.sm is not None else ""
            return QUANT, f"quant_algo {f.quant}{where} is not supported{why}; supported: {_supported_tiers()}"
    if f.dtype is not None and f.dtype not in DTYPES:
        return DTYPE, f"activation dtype {f.dtype} is not supported; supported: {', '.join(DTYPES)}"
    if f.activation is not None and f.activation not in ACTIVATIONS:
        return ACTIVATION, f"activation {f.activation} is not supported; supported: {', '.join(ACTIVATIONS)}"
    for flag, what in ((f.gptoss_style, "gpt-oss style SwiGLU is"), (f.bias, "an expert bias is")):
        if flag:
            return ACTIVATION, (f"{what} not supported; supported: SwiGLU (with per-layer alpha/beta/limit) or "
                                "ReLU^2, without bias")
    if f.activation_constants and f.constants_per_layer is False:
        return ACTIVATION, ("SwiGLU alpha/beta/limit that differ across experts (or are not finite) are not "
                            "supported; supported: one finite value per layer")
    if f.attention_dp:
        return TOPOLOGY, ("attention DP over several ranks is not supported (its allgather/alltoall mixes "
                          "per-rank decode/prefill choices); supported: TP and EP without attention DP")
    if f.cluster_size is not None and f.cluster_size > 1:
        return TOPOLOGY, f"MoE cluster size {f.cluster_size} is not supported; supported: 1"
    if f.router_weight_on_input:
        return TOPOLOGY, "apply_router_weight_on_input is not supported; supported: router weights in the combine"
    if f.ep_size is not None and f.ep_size < 1:
        return TOPOLOGY, f"ep_size {f.ep_size} is not valid; supported: any size >= 1"
    if f.eplb:
        return EPLB, "the MoE load balancer (EPLB) is not supported; supported: static expert placement"
    if f.lora:
        return LORA, "routed-expert LoRA is not supported"
    return None


def decide(facts: Facts, runtime: RuntimeFacts | None = None) -> Verdict:
    """The verdict for ``facts``; ``runtime=None`` leaves the kernel availability unknown."""
    unknown = tuple(fl.name for fl in fields(facts) if getattr(facts, fl.name) is None)
    rejected = _check(facts)
    if rejected is None and runtime is not None and runtime.kernel_missing is not None:
        rejected = DEP, f"no b12x decode kernel here: {runtime.kernel_missing}"
    if runtime is None:
        unknown += ("decode kernel",)
    if rejected is not None:
        return Verdict(False, rejected[0], rejected[1], unknown)
    return Verdict(True, None, "", unknown)


def dtype_name(dtype) -> str | None:
    """``torch.bfloat16`` / ``"bfloat16"`` / ``"torch.bfloat16"`` -> ``"bfloat16"``."""
    if dtype is None:
        return None
    return str(dtype).removeprefix("torch.")


def quant_name(algo) -> str:
    """A QuantAlgo member, its value, or None (unquantized) -> the value string or "none"."""
    if algo is None:
        return "none"
    value = getattr(algo, "value", algo)
    return str(value) if value is not None else "none"
