"""Read one MoE layer of a ModelOpt NVFP4 safetensors checkpoint into a :class:`MoEWeights`.

Recognised per-expert tensor names (any prefix before ``layers.{N}.``)::

    ...layers.{N}.<block>.experts.{e}.{proj}.{weight|weight_scale|weight_scale_2|input_scale}

with ``proj`` one of ``gate_proj``/``w1`` (gate), ``up_proj``/``w3`` (up), ``down_proj``/``w2``.
Experts without a gate (Nemotron-H latent experts: ``up_proj`` + ``down_proj``, ReLU^2) load
their single FC1 as ``w1``. Shared experts (``shared_experts.*``) are not routed and are skipped.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import torch

from .bundle import MoEWeights

_NAME = re.compile(
    r"(?:^|\.)layers\.(?P<layer>\d+)\.(?:[A-Za-z_]+\.)*?experts\.(?P<expert>\d+)\."
    r"(?P<proj>gate_proj|up_proj|down_proj|w1|w2|w3)\."
    r"(?P<key>weight|weight_scale|weight_scale_2|input_scale)$"
)
_CANON = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up", "down_proj": "down", "w2": "down"}


def _shard_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    index = path / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [path / n for n in names]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors files (or model.safetensors.index.json) in {path}")
    return files


def _open(f: Path, device="cpu"):
    """``safe_open`` with the file named when it is missing or not a readable safetensors file."""
    from safetensors import safe_open

    if not f.is_file():
        raise FileNotFoundError(f"{f}: no such checkpoint file")
    try:
        return safe_open(str(f), framework="pt", device=str(device))
    except Exception as exc:  # truncated header, not safetensors, unreadable
        raise ValueError(f"{f}: not a readable safetensors file ({type(exc).__name__}: {exc})") from None


def _read(sf, f: Path, key: str) -> torch.Tensor:
    try:
        return sf.get_tensor(key)
    except Exception as exc:  # a truncated data section fails only here
        raise ValueError(f"{f}: tensor {key} cannot be read ({type(exc).__name__}: {exc}); the file is damaged "
                         "or truncated") from None


def moe_layers(path: str | Path) -> list[int]:
    """Layer indices that hold routed NVFP4 experts."""
    layers = set()
    for f in _shard_files(Path(path)):
        with _open(f) as sf:
            for k in sf.keys():
                if (m := _NAME.search(k)) is not None:
                    layers.add(int(m["layer"]))
    return sorted(layers)


def load_moe_layer(path: str | Path, layer: int, device: str | torch.device = "cpu") -> MoEWeights:
    """Load the routed experts of MoE layer ``layer`` from a checkpoint file or directory.
    Damaged files and bad tensors are refused with the file and tensor named (see
    :meth:`MoEWeights.from_modelopt` for the rules)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such checkpoint file or directory")
    found: dict[int, dict[str, dict[str, torch.Tensor]]] = defaultdict(lambda: defaultdict(dict))
    names: dict[tuple[int, str, str], str] = {}
    for f in _shard_files(path):
        with _open(f, device) as sf:
            for k in sf.keys():
                m = _NAME.search(k)
                if m is None or int(m["layer"]) != layer:
                    continue
                found[int(m["expert"])][_CANON[m["proj"]]][m["key"]] = _read(sf, f, k)
                names[(int(m["expert"]), _CANON[m["proj"]], m["key"])] = f"{f}: tensor {k}"
    if not found:
        have = moe_layers(path)
        raise ValueError(f"layer {layer}: no routed NVFP4 experts in {path}; MoE layers present: {have}")
    ids = sorted(found)
    if ids != list(range(len(ids))):
        raise ValueError(f"layer {layer}: expert ids are not contiguous from 0 (found {ids[:8]}...)")
    experts = []
    for e in ids:
        p = found[e]
        if "gate" in p:
            experts.append({"w1": p["gate"], "w3": p["up"], "w2": p["down"]} if "up" in p else None)
        else:  # non-gated latent experts: the single FC1 is stored as up_proj
            experts.append({"w1": p.get("up"), "w2": p.get("down")})
        if experts[-1] is None or any(v is None for v in experts[-1].values()):
            raise ValueError(f"layer {layer}, expert {e}: incomplete projections {sorted(p)}")
    canon = {"w1": "gate", "w3": "up", "w2": "down"}
    gated = "gate" in found[ids[0]]

    def where(e, proj, key):
        c = canon[proj] if gated or proj != "w1" else "up"  # ReLU^2: the single FC1 is up_proj
        return names.get((e, c, key), f"{path}: layer {layer} expert {e} {c} projection, {key} (absent)")

    return MoEWeights.from_modelopt(experts, where)
