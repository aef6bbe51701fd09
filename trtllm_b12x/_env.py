"""The one place that reads the environment, once, into a frozen object.

TRTLLM_B12X_CACHE_DIR   compiled-kernel cache directory (default: ~/.cache/trtllm_b12x)
TRTLLM_B12X_ARCH        force a compile target (sm_90a, sm_120a, sm_121a) instead of probing the GPU
TRTLLM_B12X_LOCK_TIMEOUT  seconds to wait for another process's compile of the same kernel (default 900)
TRTLLM_B12X_MARLIN_COPY   "auto" (default) or "off": may a layer under moe_backend MARLIN keep a copy
                          of its expert weights for b12x decode (Marlin repacks its own)
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    cache_dir: Path
    forced_arch: str | None
    lock_timeout_s: float = 900.0
    marlin_copy: str = "auto"


@functools.lru_cache(maxsize=1)
def settings() -> Settings:
    env = os.environ
    cache = env.get("TRTLLM_B12X_CACHE_DIR") or str(Path(env.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "trtllm_b12x")
    raw = env.get("TRTLLM_B12X_LOCK_TIMEOUT") or "900"
    try:
        timeout = float(raw)
    except ValueError:
        timeout = float("nan")
    if not timeout > 0:  # NaN fails too
        raise ValueError(f"TRTLLM_B12X_LOCK_TIMEOUT={raw!r}: expected a positive number of seconds")
    marlin = (env.get("TRTLLM_B12X_MARLIN_COPY") or "auto").strip().lower()
    if marlin not in ("auto", "off"):
        raise ValueError(f"TRTLLM_B12X_MARLIN_COPY={marlin!r}: expected 'auto' or 'off'")
    return Settings(cache_dir=Path(cache), forced_arch=env.get("TRTLLM_B12X_ARCH") or None, lock_timeout_s=timeout,
                    marlin_copy=marlin)


def package_version(dist: str) -> str:
    """Installed version of a distribution, or "not installed"."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
