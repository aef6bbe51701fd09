"""Logging for the adapter: through TensorRT-LLM's logger once it is loaded (so its log level
applies), else the ``trtllm_b12x.trtllm`` Python logger. Selection outcomes are logged once
per process, not once per layer."""

from __future__ import annotations

import logging
import sys

_PY_LOGGER = logging.getLogger("trtllm_b12x.trtllm")
_seen: set = set()


def log(level: str, msg: str) -> None:
    trt = getattr(sys.modules.get("tensorrt_llm.logger"), "logger", None)
    if trt is not None and callable(getattr(trt, level, None)):
        getattr(trt, level)(f"[trtllm-b12x] {msg}")
    else:
        getattr(_PY_LOGGER, level)("trtllm-b12x: %s", msg)


def once(key, level: str, msg: str) -> None:
    if key in _seen:
        return
    _seen.add(key)
    log(level, msg)


def forget() -> None:
    """Let every message be logged again (after :func:`disable`, and in tests)."""
    _seen.clear()
