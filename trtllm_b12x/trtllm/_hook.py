"""Startup hook: enable the integration right after TensorRT-LLM's MoE package is imported.

``trtllm_b12x_hook.pth`` runs :func:`install` in every interpreter that starts, MPI and
spawned workers included, so this module imports only ``os`` and ``sys``: with TensorRT-LLM
absent the whole cost is one meta-path finder that answers ``None`` to every import but two.
The heavy part (torch, the backend classes, the patches) loads only when TensorRT-LLM's
fused-MoE package finishes importing.
"""

from __future__ import annotations

import os
import sys

ENV_DISABLE = "TRTLLM_B12X_DISABLE"

# Where each TensorRT-LLM API generation keeps its fused-MoE package (newest first).
PACKAGES = ("tensorrt_llm._torch.moe.fused_moe", "tensorrt_llm._torch.modules.fused_moe")

_FALSE = ("", "0", "false", "no", "off")


def disabled() -> bool:
    """``TRTLLM_B12X_DISABLE`` is set to a true value: leave TensorRT-LLM untouched."""
    return os.environ.get(ENV_DISABLE, "").strip().lower() not in _FALSE


class _EnableAfterExec:
    """Loader proxy: runs the real loader, then enables the integration."""

    def __init__(self, loader, name: str):
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        create = getattr(self._loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _enable(self._name)

    def __getattr__(self, attr):  # get_source, get_resource_reader, ... of the real loader
        return getattr(self._loader, attr)


class MoEImportHook:
    """Meta-path finder that wraps the loader of TensorRT-LLM's fused-MoE package."""

    def __init__(self):
        self._resolving: set = set()  # a finder below may ask sys.meta_path again for the same name

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in PACKAGES or fullname in self._resolving:
            return None
        self._resolving.add(fullname)
        try:
            spec = self._find_below(fullname, path, target)
        finally:
            self._resolving.discard(fullname)
        if spec is None:
            return None
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _EnableAfterExec(spec.loader, fullname)
        return spec

    def _find_below(self, fullname, path, target):
        for finder in sys.meta_path:
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    return spec
        return None


def installed() -> MoEImportHook | None:
    return next((f for f in sys.meta_path if isinstance(f, MoEImportHook)), None)


def install() -> bool:
    """Put the finder first on ``sys.meta_path`` (once). False when opted out."""
    if disabled():
        return False
    if installed() is None:
        sys.meta_path.insert(0, MoEImportHook())
    return True


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, MoEImportHook)]


def _enable(package: str) -> None:
    # The finder has done its job once either package loaded; enable() is idempotent and
    # never raises for a TensorRT-LLM it cannot read (it logs and leaves it stock).
    uninstall()
    try:
        from . import promote
    except Exception as exc:  # our package itself is broken: TensorRT-LLM's import must still succeed
        import logging

        logging.getLogger("trtllm_b12x.trtllm").warning(
            "trtllm-b12x: TensorRT-LLM integration not enabled (%s: %s); running stock TensorRT-LLM",
            type(exc).__name__, exc,
        )
        return
    promote.enable(package=package)
