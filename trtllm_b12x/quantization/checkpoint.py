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


def moe_layers(path: str | Path) -> list[int]:
    """Layer indices that hold routed NVFP4 experts."""
    from safetensors import safe_open

    layers = set()
    for f in _shard_files(Path(path)):
        with safe_open(str(f), framework="pt") as sf:
            for k in sf.keys():
                if (m := _NAME.search(k)) is not None:
                    layers.add(int(m["layer"]))
    return sorted(layers)


def load_moe_layer(path: str | Path, layer: int, device: str | torch.device = "cpu") -> MoEWeights:
    """Load the routed experts of MoE layer ``layer`` from a checkpoint file or directory."""
    from safetensors import safe_open

    path = Path(path)
    found: dict[int, dict[str, dict[str, torch.Tensor]]] = defaultdict(lambda: defaultdict(dict))
    for f in _shard_files(path):
        with safe_open(str(f), framework="pt", device=str(device)) as sf:
            for k in sf.keys():
                m = _NAME.search(k)
                if m is None or int(m["layer"]) != layer:
                    continue
                found[int(m["expert"])][_CANON[m["proj"]]][m["key"]] = sf.get_tensor(k)
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
    return MoEWeights.from_modelopt(experts)
