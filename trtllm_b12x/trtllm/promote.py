"""Auto-promotion: make ``moe_backend: CUTLASS`` select the b12x backend when it can serve.

G1: ``get_moe_cls`` is wrapped in every module namespace holding it (``create_moe``, the
package, model files that imported it): it returns our class where it would return
``CutlassFusedMoE`` and the decision says yes. G2: our class joins
``BACKEND_FAMILY["CUTLASS"]`` and sits just ahead of ``CutlassFusedMoE`` in
``IMPL_PRIORITY``, so resolution asks our ``can_implement`` first and falls back to stock
CUTLASS on a "no". Both: ``create_moe_backend`` (which dispatches on class identity and so
rejects subclasses) constructs our class with the keywords its signature and our constructor
share. Every patch is recorded and :func:`disable` restores the originals.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import sys
import types
from dataclasses import dataclass, field

from . import _hook, _log
from .backend import NAME, build_backend, runtime_facts
from .decision import Facts, decide, dtype_name, quant_name
from .generation import Generation, detect
from .quant_method import build_quant_methods


@dataclass(frozen=True)
class Status:
    state: str  # "active" | "pending" | "disabled" | "absent" | "unsupported" | "failed" | "off"
    reason: str = ""
    generation: str | None = None
    package: str | None = None
    backend: type | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = f" ({self.generation}, {self.package})" if self.generation else ""
        return f"{self.state}{where}" + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class Patch:
    owner: object  # a module, or a dict for table entries
    key: str
    original: object
    replacement: object

    def _set(self, value) -> None:
        if isinstance(self.owner, dict):
            self.owner[self.key] = value
        else:
            setattr(self.owner, self.key, value)

    def current(self):
        return self.owner.get(self.key) if isinstance(self.owner, dict) else getattr(self.owner, self.key, None)

    def apply(self) -> None:
        self._set(self.replacement)

    def undo(self) -> None:
        if self.current() is self.replacement:  # leave someone else's later patch alone
            self._set(self.original)


_state: Status = Status("off")
_patches: list[Patch] = []
_package = None  # the module object the patches were made against


def status() -> Status:
    return _state


def enable(package: str | None = None) -> Status:
    """Patch TensorRT-LLM's MoE selection (idempotent). With TensorRT-LLM installed but its
    MoE package not imported yet, installs the import hook and applies on import. Changes
    nothing, and says why, when opted out, when the generation is unknown, or when reading
    it raises (state ``failed``, one log line: the same for this call and the startup hook)."""
    global _state, _package
    if _hook.disabled():
        _state = Status("disabled", f"{_hook.ENV_DISABLE} is set")
        _log.once("disabled", "info", f"not enabled: {_state.reason}; TensorRT-LLM runs stock CUTLASS")
        return _state
    names = [package] if package else [p for p in _hook.PACKAGES if p in sys.modules]
    if not names:
        if importlib.util.find_spec("tensorrt_llm") is None:
            _state = Status("absent", "TensorRT-LLM is not installed")
            return _state
        _hook.install()
        _state = Status("pending", "applies when TensorRT-LLM's fused-MoE package is imported")
        return _state
    name = names[0]
    if _state.state == "active" and _package is not None and sys.modules.get(name) is _package:
        return _state
    _undo_patches()
    try:
        gen = detect(name)
        if isinstance(gen, str):
            _state = Status("unsupported", gen, package=name)
            _log.once(("unsupported", gen), "warning", f"TensorRT-LLM left untouched: {gen}")
            return _state
        runtime_facts()  # probe our kernel's availability once, before any selection
        backend = build_backend(gen, build_quant_methods(gen))
        patches = _g1_patches(gen, backend) if gen.name == "G1" else _g2_patches(gen, backend)
        for p in patches:
            p.apply()
            _patches.append(p)
    except Exception as exc:  # a TensorRT-LLM we cannot read (or our bug): stock TensorRT-LLM, never a crash
        _undo_patches()
        why = f"{type(exc).__name__}: {exc}"
        _state = Status("failed", why, package=name)
        _log.once(("failed", why), "warning", f"TensorRT-LLM integration not enabled ({why}); "
                                              "running stock TensorRT-LLM")
        return _state
    _state, _package = Status("active", "", gen.name, name, backend), gen.package
    _log.once(("enabled", name), "info", f"{NAME} promoted under moe_backend CUTLASS ({gen.name}, {name})")
    return _state


def disable() -> Status:
    """Restore every patched name and table entry; remove the startup finder."""
    global _state
    _undo_patches()
    _hook.uninstall()
    _log.forget()
    _state = Status("off")
    return _state


def _undo_patches() -> None:
    global _package
    while _patches:
        _patches.pop().undo()
    _package = None


# -- patches -----------------------------------------------------------------------------------
def _everywhere(name: str, original, replacement) -> list[Patch]:
    """A patch for every loaded module whose namespace binds ``original`` under ``name``."""
    out = []
    for mod in list(sys.modules.values()):
        if isinstance(mod, types.ModuleType) and vars(mod).get(name) is original:
            out.append(Patch(mod, name, original, replacement))
    return out


def _g1_patches(gen: Generation, backend: type) -> list[Patch]:
    get_cls = gen.create_moe.get_moe_cls
    create = gen.create_moe.create_moe_backend
    return (_everywhere("get_moe_cls", get_cls, _promoting_get_moe_cls(get_cls, gen, backend))
            + _everywhere("create_moe_backend", create, _constructing(create, gen, backend)))


def _g2_patches(gen: Generation, backend: type) -> list[Patch]:
    res = gen.resolution
    prio = list(res.IMPL_PRIORITY)
    family = res.BACKEND_FAMILY
    ours = [backend]
    patches = [Patch(family, "CUTLASS", family["CUTLASS"], frozenset(family["CUTLASS"]) | {backend})]
    at = prio.index(gen.cutlass)
    cutedsl = next((c for c in prio if c.__name__ == UPSTREAM_B12X), None)
    if cutedsl is not None and "CUTEDSL" in family:
        # CUTEDSL: upstream's b12x backend first; where it cannot take the layer (FlashInfer
        # missing, EP > 1) ours is the next candidate of that family, ahead of the fallback
        patches.append(Patch(family, "CUTEDSL", family["CUTEDSL"], frozenset(family["CUTEDSL"]) | {backend}))
        at = min(at, prio.index(cutedsl) + 1)
    prio.insert(at, backend)
    if gen.marlin is not None:
        # MARLIN (SM90): our decode ahead of Marlin, whose prefill it inherits
        marlin = build_backend(gen, build_quant_methods(gen), family="MARLIN")
        prio.insert(prio.index(gen.marlin), marlin)
        patches.append(Patch(family, "MARLIN", family["MARLIN"], frozenset(family["MARLIN"]) | {marlin}))
        ours.append(marlin)
    create = gen.create_moe.create_moe_backend
    resolve = res.resolve_moe_impl
    return ([Patch(res, "IMPL_PRIORITY", res.IMPL_PRIORITY, tuple(prio))] + patches
            + _everywhere("create_moe_backend", create, _constructing(create, gen, tuple(ours)))
            + _everywhere("resolve_moe_impl", resolve, _logging_resolution(resolve, tuple(ours))))


UPSTREAM_B12X = "CuteDslB12xFusedMoE"  # TensorRT-LLM's own b12x backend (moe_backend CUTEDSL, needs FlashInfer)


def _requested_cutlass(model_config) -> bool:
    return str(getattr(model_config, "moe_backend", "CUTLASS")).upper() in ("CUTLASS", "AUTO")


def _model_facts(model_config, override_quant_config) -> Facts:
    """What G1 selection knows: no activation (decided again when the layer is built)."""
    from .backend import _sm

    qc = override_quant_config if override_quant_config is not None else getattr(model_config, "quant_config", None)
    mapping = getattr(model_config, "mapping", None)
    pretrained = getattr(model_config, "pretrained_config", None)
    dp = getattr(mapping, "enable_attention_dp", None)
    return Facts(
        sm=_sm(), quant=quant_name(getattr(qc, "quant_algo", None)),
        dtype=dtype_name(getattr(pretrained, "torch_dtype", None)),
        ep_size=getattr(mapping, "moe_ep_size", None),
        attention_dp=None if dp is None else bool(dp) and getattr(mapping, "tp_size", 1) > 1,
        cluster_size=getattr(mapping, "moe_cluster_size", None),
    )


def _promoting_get_moe_cls(original, gen: Generation, backend: type):
    @functools.wraps(original)
    def get_moe_cls(model_config, override_quant_config=None, *args, **kwargs):
        cls = original(model_config, override_quant_config, *args, **kwargs)
        if cls is not gen.cutlass or not _requested_cutlass(model_config):
            return cls
        verdict = decide(_model_facts(model_config, override_quant_config), runtime_facts())
        if verdict.ok:
            _log.once("promoted", "info", f"moe_backend CUTLASS -> {NAME} (b12x decode, CUTLASS prefill)")
            return backend
        _log.once(("rejected", str(verdict)), "warning", f"moe_backend CUTLASS runs stock CutlassFusedMoE: {verdict}")
        return cls

    return get_moe_cls


def _logging_resolution(original, backends: tuple):
    @functools.wraps(original)
    def resolve_moe_impl(*args, **kwargs):
        report = original(*args, **kwargs)
        if getattr(report, "winner", None) in {b.__name__ for b in backends}:
            requested = str(getattr(report, "requested", None) or "CUTLASS").upper()
            ahead = [r for r in getattr(report, "rejected", ()) if getattr(r, "legacy_backend", None) == UPSTREAM_B12X]
            why = f" ({UPSTREAM_B12X} cannot take it: {ahead[0].detail})" if requested == "CUTEDSL" and ahead else ""
            prefill = "Marlin" if requested == "MARLIN" else "CUTLASS"
            _log.once(("promoted", requested), "info",
                      f"moe_backend {requested} -> {report.winner} (b12x decode, {prefill} prefill){why}")
        for r in getattr(report, "rejected", ()):
            if getattr(r, "legacy_backend", None) in {b.__name__ for b in backends}:
                _log.once(("rejected", r.detail), "warning",
                          f"moe_backend CUTLASS runs {report.winner}: {r.detail}")
        return report

    return resolve_moe_impl


_SHAPES = {
    "num_experts": ("num_experts", "n_routed_experts", "num_local_experts"),
    "hidden_size": ("hidden_size",),
    "intermediate_size": ("moe_intermediate_size", "intermediate_size"),
    "dtype": ("torch_dtype",),
}


def _constructing(original, gen: Generation, backends):
    """``create_moe_backend`` that builds our class (a subclass, which the original rejects)
    with every argument it received that ``CutlassFusedMoE.__init__`` accepts."""
    sig = inspect.signature(original)
    first = next(iter(sig.parameters))
    init = inspect.signature(gen.cutlass.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in init.values())

    @functools.wraps(original)
    def create_moe_backend(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        moe_cls = bound.arguments[first]
        if not (isinstance(moe_cls, type) and issubclass(moe_cls, backends)):
            return original(*args, **kwargs)
        bound.apply_defaults()
        kw = {k: v for k, v in bound.arguments.items() if k != first and (takes_any or k in init)}
        pretrained = getattr(kw.get("model_config"), "pretrained_config", None)
        for key, attrs in _SHAPES.items():
            if key in kw and kw[key] is None:
                kw[key] = next((getattr(pretrained, a) for a in attrs if getattr(pretrained, a, None) is not None), None)
                if kw[key] is None and key != "dtype":
                    raise ValueError(f"create_moe_backend({moe_cls.__name__}): {key} is None and "
                                     f"model_config.pretrained_config has none of {attrs}")
        return moe_cls(**kw)

    return create_moe_backend
