"""The backend: a ``CutlassFusedMoE`` subclass built at :func:`enable` time against the
installed generation's class (TensorRT-LLM is not importable when this module is).

Decode batches (fewer than ``DECODE_MAX_TOKENS`` tokens, unquantized bf16/fp16 input) go to
our :class:`MoERunner`, which quantizes activations inside its kernel, so ``quantize_input``
passes them through with ``x_sf=None``. Everything else, prefill included, is the inherited
CUTLASS path, unchanged.

Where the checks run:

* ``can_implement``: the shared :func:`decide` on what that generation's signature carries.
  G2's form is pure: SM from ``d.env.sm``, our kernel's availability from
  :func:`runtime_facts`, probed once at ``enable()`` and frozen (TensorRT-LLM's
  ``d.env.has_dep`` only knows TensorRT-LLM's own dependencies).
* construction (``create_weights``): the same decision on the layer's real activation, bias,
  SwiGLU constants, topology and quant method; a "no" leaves this layer pure CUTLASS.
* after loading (the quant method hook): the bundle is built and the decode kernel compiled
  for this GPU and these shapes; any failure leaves the layer pure CUTLASS with the reason.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
import types

import torch

from .. import ops
from ..moe import DECODE_MAX_TOKENS, MoERunner
from . import _log
from .decision import Facts, RuntimeFacts, decide, dtype_name, quant_name

NAME = "B12xCutlassFusedMoE"
MARLIN_NAME = "B12xMarlinFusedMoE"
_HP = (torch.bfloat16, torch.float16)

# -- the decode kernel factory ---------------------------------------------------------------
_factory_override = None
_factory_error: str | None = None
_runtime: RuntimeFacts | None = None


def set_decode_kernel_factory(factory) -> None:
    """Plug in ``factory(runner) -> kernel | None`` (``kernel(x, ids, weights, out[, workspace])``)
    instead of ``trtllm_b12x.kernels.decode.decode_kernel_factory``; None restores that."""
    global _factory_override, _runtime
    _factory_override, _runtime = factory, None


def _decode_kernel_factory():
    """The registered factory, else ours if it imports, else None (reason in ``_factory_error``)."""
    global _factory_error
    if _factory_override is not None:
        return _factory_override
    try:
        from trtllm_b12x.kernels.decode import decode_kernel_factory
    except Exception as exc:  # any import failure means no kernel; TensorRT-LLM must keep running
        _factory_error = f"trtllm_b12x.kernels.decode is not importable ({type(exc).__name__}: {exc})"
        return None
    return decode_kernel_factory


def runtime_facts() -> RuntimeFacts:
    """Probed on first use (``enable()`` calls it), then frozen for the process."""
    global _runtime
    if _runtime is None:
        _runtime = RuntimeFacts(kernel_missing=_probe())
    return _runtime


def _probe() -> str | None:
    if _factory_override is not None:
        return None  # a plugged-in factory brings its own kernel
    try:
        importlib.import_module("cutlass")  # our kernels are CuTe DSL
    except Exception as exc:  # any failure to import means the DSL cannot compile here
        return f"nvidia-cutlass-dsl is not importable ({type(exc).__name__}: {exc})"
    return _factory_error if _decode_kernel_factory() is None else None


# -- facts of a constructed layer ------------------------------------------------------------
def _sm() -> int | None:
    try:
        return int(importlib.import_module("tensorrt_llm._utils").get_sm_version())
    except Exception:  # no GPU or no TensorRT-LLM: the SM stays unknown
        return None


def activation_name(value) -> str | None:
    """TensorRT-LLM's ActivationType (member or int) -> its member name."""
    if value is None:
        return None
    if hasattr(value, "name"):
        return value.name
    enum = getattr(sys.modules.get("tensorrt_llm._torch.utils"), "ActivationType", None)
    try:
        return enum(value).name if enum is not None else None
    except ValueError:
        return f"ActivationType({value})"


def _activation_of(value) -> str | None:
    """An activation as the problem or the layer carries it (a name, an ActivationType, or G2c's
    ``MoEActivation``) -> its name, or None."""
    if value is None or isinstance(value, str):
        return value
    kind = getattr(value, "activation_type", None) or getattr(value, "kind", None)
    return activation_name(kind if kind is not None else value)


# SwiGLU constant -> where each API stage keeps it on the layer (G2c: act_* buffers, per local
# expert; earlier: swiglu_* attributes)
_CONSTANTS = {"alpha": ("act_alpha", "swiglu_alpha"), "beta": ("act_beta", "swiglu_beta"),
              "limit": ("act_clamp", "swiglu_limit")}


def layer_activation(m) -> str:
    """The layer's activation name: G2c's ``MoEActivation`` carrier, else its ActivationType."""
    return _activation_of(getattr(m, "activation", None)) or activation_name(getattr(m, "activation_type", None)) \
        or "Swiglu"


def activation_constants(m) -> dict | None:
    """The layer's SwiGLU constants as ``{"alpha" | "beta" | "limit": float}`` (only those it
    supplies; ``{}`` for none), or None when one differs across experts or is not finite."""
    out = {}
    for key, names in _CONSTANTS.items():
        v = next((getattr(m, n) for n in names if getattr(m, n, None) is not None), None)
        if v is None:
            continue
        flat = v.detach().float().flatten() if isinstance(v, torch.Tensor) else torch.tensor([float(v)])
        if flat.numel() == 0 or not bool(torch.isfinite(flat).all()) or not bool((flat == flat[0]).all()):
            return None
        out[key] = float(flat[0])
    return out


def _layer_facts(m) -> Facts:
    constants = activation_constants(m)
    method = getattr(m, "quant_method", None)
    quant = getattr(method, "_b12x_quant", None)
    if quant is None:
        quant = quant_name(getattr(getattr(m, "quant_config", None), "quant_algo", None))
    lb = getattr(m, "layer_load_balancer", None)
    return Facts(
        sm=_sm(), quant=quant, dtype=dtype_name(getattr(m, "dtype", None)),
        activation=layer_activation(m),
        bias=bool(getattr(m, "bias", False)),
        activation_constants=constants != {},
        constants_per_layer=constants is not None,
        ep_size=getattr(m, "ep_size", None),
        attention_dp=bool(getattr(m, "use_dp", False)) and getattr(m, "parallel_size", 1) > 1,
        cluster_size=getattr(m, "cluster_size", None),
        router_weight_on_input=bool(getattr(m, "apply_router_weight_on_input", False)),
        eplb=lb is not None or getattr(m, "num_slots", m.num_experts) != m.num_experts,
        lora=bool(getattr(m, "_moe_lora_enabled", False)), family=getattr(m, "_b12x_family", "CUTLASS"),
    )


# -- the class ---------------------------------------------------------------------------------
class B12xMoEMixin:
    """Generation-neutral part of the backend, mixed in ahead of ``CutlassFusedMoE``."""

    b12x_reason: str | None = "weights not created yet"  # why decode stays on CUTLASS; None: b12x decodes
    _b12x_family = "CUTLASS"  # the moe_backend family this class joins (MARLIN: prefill is Marlin's)
    _b12x_runner: MoERunner | None = None
    _b12x_quant_methods: dict = {}

    def create_weights(self):
        created = getattr(self, "_weights_created", False)
        super().create_weights()
        if not created:  # the layer's own facts are final once its quant method exists
            verdict = decide(_layer_facts(self), runtime_facts())
            self._b12x_off(None if verdict.ok else str(verdict))

    def _get_quant_method(self):
        method = super()._get_quant_method()
        ours = self._b12x_quant_methods.get(type(method))
        return ours() if ours is not None else method

    def post_load_weights(self):
        self._b12x_runner = None
        super().post_load_weights()  # runs the quant method's hook, which builds the runner
        method = getattr(self, "quant_method", None)
        if self._b12x_runner is None and self.b12x_reason is None and hasattr(method, "build_b12x"):
            method.build_b12x(self)  # generations whose CUTLASS post_load skips the quant method

    def _b12x_off(self, reason: str | None) -> None:
        self.b12x_reason = reason
        if reason is not None:
            self._b12x_runner = None
            _log.once(("layer", reason), "warning", f"{NAME} layer {getattr(self, 'layer_idx', '?')} (and any "
                      f"other with the same reason): decode stays on CUTLASS: {reason}")

    def _b12x_decodes(self, x, x_sf=None) -> bool:
        """The decision of both ``quantize_input`` and ``run_moe``, so they always agree."""
        return (self._b12x_runner is not None and x_sf is None and isinstance(x, torch.Tensor)
                and x.dtype in _HP and x.dim() == 2 and x.shape[0] < DECODE_MAX_TOKENS)

    def quantize_input(self, x, post_quant_comm: bool = True, **kwargs):
        if self._b12x_decodes(x):
            return x, None  # our kernel quantizes the activations itself
        return super().quantize_input(x, post_quant_comm=post_quant_comm, **kwargs)

    def _b12x_run(self, x, ids, scales, out, output_dtype, alltoall) -> torch.Tensor:
        if alltoall:
            raise RuntimeError(
                f"{NAME}: MoE alltoall reached the b12x decode path (enable_alltoall=True), which needs global "
                "expert ids; supported: no alltoall (promotion excludes attention DP, which alltoall requires). "
                "Set TRTLLM_B12X_DISABLE=1 to run stock CUTLASS."
            )
        x = x.contiguous()
        runner = self._b12x_runner
        if out is not None and out.dtype == x.dtype and out.is_contiguous():
            return ops.moe_decode(x, ids, scales, out, runner)  # one custom-op node under torch.compile
        y = ops.moe_decode(x, ids, scales, x.new_empty(x.shape[0], runner.weights.hidden_size), runner)
        if out is not None:
            return out.copy_(y)
        return y if output_dtype in (None, y.dtype) else y.to(output_dtype)


class G1Entry:
    """``can_implement`` / ``run_moe`` in the G1 form."""

    @classmethod
    def can_implement(cls, quant_algo, dtype_activation=torch.bfloat16, swiglu_gptoss_style=False, **kwargs):
        facts = Facts(sm=_sm(), quant=quant_name(quant_algo), dtype=dtype_name(dtype_activation),
                      gptoss_style=bool(swiglu_gptoss_style))
        verdict = decide(facts, runtime_facts())
        return (True, None) if verdict.ok else (False, f"{cls.__name__}: {verdict}")

    def run_moe(self, x, token_selected_experts, token_final_scales, x_sf=None, **kwargs):
        if not self._b12x_decodes(x, x_sf):
            return super().run_moe(x, token_selected_experts, token_final_scales, x_sf=x_sf, **kwargs)
        # the legacy forward path (where G1 runs a subclass) passes no enable_alltoall: the module knows
        alltoall = kwargs.get("enable_alltoall")
        if alltoall is None:
            alltoall = getattr(self, "enable_alltoall", False)
        return self._b12x_run(x, token_selected_experts, token_final_scales, kwargs.get("moe_output"),
                              kwargs.get("output_dtype"), alltoall)


class G2Entry:
    """``can_implement`` / ``run_moe`` in the G2 form."""

    _b12x_contract = None  # the generation's impl_contract module

    @classmethod
    def can_implement(cls, p, d):
        # stages differ in what MoEProblem carries (G2a: no bias, no activation_constants): an
        # absent fact abstains here and is decided on the constructed layer
        constants = getattr(p, "activation_constants", None)
        quant = p.quant if hasattr(p, "quant") else getattr(p, "quant_algo", None)  # None: unquantized
        facts = Facts(
            sm=d.env.sm, quant=quant_name(quant), dtype=dtype_name(getattr(p, "dtype_act", None)),
            activation=_activation_of(getattr(p, "activation", None)),
            gptoss_style=getattr(p, "swiglu_gptoss_style", None), bias=getattr(p, "bias", None),
            activation_constants=None if constants is None else bool(constants),
            ep_size=d.ep_size, attention_dp=bool(d.use_dp) and d.parallel_size > 1,
            cluster_size=getattr(d, "cluster_size", None), eplb=getattr(d, "eplb_enabled", None),
            lora=getattr(d, "moe_lora_enabled", None), family=cls._b12x_family,
        )
        verdict = decide(facts, runtime_facts())
        contract = cls._b12x_contract
        if verdict.ok:
            # the prefill is the parent's (CUTLASS or Marlin): it must take the layer too
            return super(G2Entry, cls).can_implement(p, d)
        reasons = contract.MoERejectReason
        reason = getattr(reasons, verdict.code, None) or reasons.TOPOLOGY_UNSUPPORTED
        return contract.MoEEligibility.no(reason, f"{cls.__name__}: {verdict.detail}")

    def run_moe(self, ctx, *, workspace=None):
        if not self._b12x_decodes(ctx.x, ctx.x_sf):
            return super().run_moe(ctx, workspace=workspace)
        plan = getattr(ctx, "comm_plan", None)
        return self._b12x_run(ctx.x, ctx.token_selected_experts, ctx.token_final_scales,
                              getattr(plan, "moe_output", None), ctx.output_dtype,
                              getattr(plan, "enable_alltoall", False))


def build_backend(gen, quant_methods: dict, family: str = "CUTLASS") -> type:
    """The backend class for generation ``gen``; ``quant_methods`` maps each CUTLASS NVFP4
    quant method class to our subclass of it. ``family="MARLIN"`` builds it on the
    generation's ``MarlinFusedMoE`` (b12x decode, Marlin prefill) instead of ``CutlassFusedMoE``."""
    entry = G1Entry if gen.name == "G1" else G2Entry
    base = gen.marlin if family == "MARLIN" else gen.cutlass
    name = MARLIN_NAME if family == "MARLIN" else NAME
    ns = {"__module__": __name__, "__doc__": f"{base.__name__} with b12x decode (TensorRT-LLM {gen.name}).",
          "_b12x_quant_methods": dict(quant_methods), "_b12x_family": family}
    if gen.name == "G2":
        ns["_b12x_contract"] = gen.contract
        caps = getattr(base, "capabilities", None)
        if dataclasses.is_dataclass(caps) and hasattr(caps, "supports_moe_lora"):
            ns["capabilities"] = dataclasses.replace(caps, supports_moe_lora=False)  # LoRA is fused in CUTLASS only
    return types.new_class(name, (entry, B12xMoEMixin, base), exec_body=lambda body: body.update(ns))
