"""TensorRT-LLM adapter: a ``CutlassFusedMoE`` subclass whose decode batches (fewer than
``trtllm_b12x.moe.DECODE_MAX_TOKENS`` tokens) run the b12x kernels, selected automatically
under ``moe_backend: CUTLASS`` when its ``can_implement`` passes.

Three ways to switch it on; all call :func:`enable`, which is idempotent:

* the startup hook ``trtllm_b12x_hook.pth`` (every interpreter, worker processes included);
* ``--custom_module_dirs <custom_module_dir()>`` for ``trtllm-serve`` / ``trtllm-bench``;
* ``trtllm_b12x.trtllm.enable()`` in Python before the ``LLM`` is built.

``TRTLLM_B12X_DISABLE=1`` turns all three off. Importing this package imports neither torch
nor TensorRT-LLM (the startup hook imports it in every interpreter).
"""

from __future__ import annotations

import os

from ._hook import ENV_DISABLE, disabled

__all__ = [
    "ENV_DISABLE",
    "bundle_from_cutlass_tensors",
    "custom_module_dir",
    "decide",
    "disable",
    "disabled",
    "doctor_report",
    "enable",
    "set_decode_kernel_factory",
    "status",
]


def enable(package: str | None = None):
    """Promote the b12x backend under ``moe_backend: CUTLASS``; see :func:`.promote.enable`."""
    from .promote import enable as _enable

    return _enable(package=package)


def disable():
    """Undo every patch :func:`enable` applied and remove the startup finder."""
    from .promote import disable as _disable

    return _disable()


def status():
    """Where the integration stands (a :class:`.promote.Status`)."""
    from .promote import status as _status

    return _status()


def custom_module_dir() -> str:
    """The directory to pass to ``--custom_module_dirs``. Its parent holds nothing else,
    because TensorRT-LLM puts that parent first on ``sys.path``."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugin", "trtllm_b12x_enable")


def hook_file() -> str:
    """The ``.pth`` startup hook to place in site-packages."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "trtllm_b12x_hook.pth")


_LAZY = {
    "doctor_report": ".doctor",
    "bundle_from_cutlass_tensors": ".weights",
    "set_decode_kernel_factory": ".backend",
    "decide": ".decision",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
