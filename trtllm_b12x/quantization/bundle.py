"""The weight bundle: one MoE layer's routed experts in TensorRT-LLM's CUTLASS NVFP4 layout."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Mapping, Sequence

import torch

from .layouts import round_up, swizzle_128x4, unswizzle_128x4
from .nvfp4 import BLOCK, dequantize_nvfp4

# Bytes of one weight element in NVFP4: half a byte of E2M1 plus one E4M3 byte per 16.
NVFP4_BYTES_PER_ELEMENT = 0.5 + 1.0 / BLOCK
# W4A4: the FC2 input (the activated intermediate) gets dynamic per-block scales; its global
# only places them in E4M3's range. A calibrated global puts the calibrated amax at the top
# of that range, so any block above it would clip; this factor leaves room for blocks up to
# 16x the calibrated amax and costs nothing for blocks down to ~1/1800 of it (E4M3 normals).
FC2_INPUT_HEADROOM = 16.0


def expert_bytes(hidden: int, intermediate: int, gated: bool) -> float:
    """NVFP4 bytes of one expert's FC1 + FC2 (data + block scales): 0.5625 * (g+1) * H * I."""
    return ((2 if gated else 1) + 1) * hidden * intermediate * NVFP4_BYTES_PER_ELEMENT


SCALE_LAYOUTS = ("swizzled", "linear")


def stored_fc1_rows(intermediate: int, gated: bool) -> int:
    """``N1``: FC1 rows as TensorRT-LLM stores them, ``g * I`` padded to a multiple of 128
    (FC2's stored K is ``C = N1 / g``)."""
    return round_up((2 if gated else 1) * intermediate, 128)


@dataclass(frozen=True)
class MoEWeights:
    """Routed-expert weights of one MoE layer (E local experts, hidden H, intermediate I),
    stored exactly as TensorRT-LLM's NVFP4 CUTLASS MoE method leaves them on its module, so a
    bundle of a TensorRT-LLM layer is views of the module's tensors (see docs/formats.md).

    ================ ================================= ==============================================
    field            shape / dtype                     meaning
    ================ ================================= ==============================================
    w13              [E, N1, H/2] uint8                FC1 E2M1; gated: rows ``[w3 (up); w1 (gate)]``,
                                                       ReLU^2: ``w1``; zero rows up to ``N1 = pad128(g*I)``
    w13_scale        [E, N1, pad4(H/16)] e4m3          FC1 block scales over the padded shape, 128x4
                                                       swizzled per expert (``scale_layout``)
    w13_global       [E, g] float32                    FC1 ``weight_scale_2`` per half, (gate, up)
    w2               [E, H, C/2] uint8                 FC2 (down) E2M1, ``C = N1 / g >= I``, zero columns
                                                       beyond I
    w2_scale         [E, pad128(H), pad4(C/16)] e4m3   FC2 block scales, like ``w13_scale``
    w2_global        [E] float32                       FC2 ``weight_scale_2``
    intermediate     int                               I (per tensor-parallel rank)
    fc1_input_scale  [E] float32 or None               FC1 activation global (ModelOpt ``input_scale``)
    fc2_input_scale  [E] float32 or None               FC2 activation global
    scale_layout     "swizzled" | "linear"             block-scale layout (``linear``: TensorRT-LLM's
                                                       W4A16 method, over the same padded shape)
    ================ ================================= ==============================================

    ``g`` is 2 for gated activations (SwiGLU) and 1 for ReLU^2 (``w13_global.shape[1]``). The
    globals are derived scalars (TensorRT-LLM stores ``alpha = weight_scale_2 / input_scale``
    and ``1 / input_scale``; see :mod:`trtllm_b12x.trtllm.weights`), in the dequant direction:
    ``w = e2m1 * e4m3 * global``. One FC1 global per half keeps checkpoints whose w1 and w3
    were calibrated separately exact. The logical accessors (:meth:`fc1_half`, :meth:`fc2`,
    :meth:`dequant_w13`, :meth:`dequant_w2`) undo the layout per expert.
    """

    w13: torch.Tensor
    w13_scale: torch.Tensor
    w13_global: torch.Tensor
    w2: torch.Tensor
    w2_scale: torch.Tensor
    w2_global: torch.Tensor
    intermediate: int
    fc1_input_scale: torch.Tensor | None = None
    fc2_input_scale: torch.Tensor | None = None
    scale_layout: str = "swizzled"

    def __post_init__(self):
        e, n1, h2 = _shape3(self.w13, "w13")
        _, hidden, c2 = _shape3(self.w2, "w2")
        if self.scale_layout not in SCALE_LAYOUTS:
            raise ValueError(f"MoEWeights.scale_layout={self.scale_layout!r}; supported: {SCALE_LAYOUTS}")
        if not isinstance(self.w13_global, torch.Tensor) or self.w13_global.dim() != 2 or \
                self.w13_global.shape[1] not in (1, 2):
            raise ValueError(f"MoEWeights.w13_global: got shape {tuple(getattr(self.w13_global, 'shape', ()))}; "
                             "expected [E, 2] (gated: gate, up) or [E, 1] (ReLU^2)")
        g, inter = self.w13_global.shape[1], self.intermediate
        if not isinstance(inter, int) or inter <= 0 or inter % BLOCK or hidden % BLOCK:
            raise ValueError(f"MoEWeights: H={hidden} and intermediate={inter!r} must be positive multiples of {BLOCK}")
        want = stored_fc1_rows(inter, g == 2)
        if n1 != want or c2 * 2 != n1 // g:
            raise ValueError(
                f"MoEWeights: w13 has {n1} rows and w2 {c2 * 2} columns; for intermediate={inter} "
                f"({'gated' if g == 2 else 'ReLU^2'}) TensorRT-LLM's layout has N1 = pad128({g}*I) = "
                f"{want} rows and C = N1/{g} = {want // g} columns"
            )
        expect = {
            "w13": ((e, n1, h2), torch.uint8),
            "w13_scale": ((e, n1, round_up(h2 * 2 // BLOCK, 4)), torch.float8_e4m3fn),
            "w13_global": ((e, g), torch.float32),
            "w2": ((e, h2 * 2, c2), torch.uint8),
            "w2_scale": ((e, round_up(hidden, 128), round_up(c2 * 2 // BLOCK, 4)), torch.float8_e4m3fn),
            "w2_global": ((e,), torch.float32),
        }
        for name in ("fc1_input_scale", "fc2_input_scale"):
            if getattr(self, name) is not None:
                expect[name] = ((e,), torch.float32)
        for name, (shape, dtype) in expect.items():
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
                raise ValueError(
                    f"MoEWeights.{name}: got shape {tuple(getattr(t, 'shape', ()))} dtype {getattr(t, 'dtype', None)}; "
                    f"expected shape {shape} dtype {dtype} (E={e}, H={hidden}, I={inter}, {self.scale_layout} scales)"
                )
            if t.device != self.w13.device:
                raise ValueError(f"MoEWeights.{name} is on {t.device}, w13 on {self.w13.device}: keep one device")
        for name in ("w13_global", "w2_global", "fc1_input_scale", "fc2_input_scale"):
            if getattr(self, name) is not None:
                check_positive(getattr(self, name), f"MoEWeights.{name}")

    # -- shape ---------------------------------------------------------------------------
    @property
    def num_experts(self) -> int:
        return self.w13.shape[0]

    @property
    def hidden_size(self) -> int:
        return self.w2.shape[1]

    @property
    def intermediate_size(self) -> int:
        return self.intermediate

    @property
    def gated(self) -> bool:
        return self.w13_global.shape[1] == 2

    @property
    def fc1_rows(self) -> int:
        """``N1``: stored FC1 rows (``[w3; w1]`` and the zero rows up to a multiple of 128)."""
        return self.w13.shape[1]

    @property
    def fc2_cols(self) -> int:
        """``C``: stored FC2 columns (``>= I``; zero beyond I)."""
        return self.w2.shape[2] * 2

    @property
    def bytes_per_expert(self) -> float:
        """NVFP4 bytes of one expert's FC1 + FC2 (data + block scales), without padding."""
        return expert_bytes(self.hidden_size, self.intermediate_size, self.gated)

    @property
    def stored_bytes_per_expert(self) -> int:
        """Bytes one expert holds in this layout (padding rows, columns and scale tiles included)."""
        return sum(t[0].numel() for t in (self.w13, self.w13_scale, self.w2, self.w2_scale))

    @property
    def device(self) -> torch.device:
        return self.w13.device

    def tensors(self) -> dict[str, torch.Tensor]:
        """The tensor fields (None ones left out)."""
        return {f.name: t for f in fields(self) if isinstance(t := getattr(self, f.name), torch.Tensor)}

    # -- transforms ----------------------------------------------------------------------
    def to(self, device) -> "MoEWeights":
        return replace(self, **{k: t.to(device) for k, t in self.tensors().items()})

    def experts(self, index: torch.Tensor | slice) -> "MoEWeights":
        """A bundle of the selected experts (e.g. the local range of an EP rank; a slice gives views)."""
        return replace(self, **{k: t[index] for k, t in self.tensors().items()})

    def tp_shard(self, tp_size: int, tp_rank: int) -> "MoEWeights":
        """The intermediate-dimension shard of one tensor-parallel rank (new tensors in the same
        layout, re-padded for the shard, as TensorRT-LLM loads a rank's shard)."""
        inter = self.intermediate_size
        if not 0 <= tp_rank < tp_size:
            raise ValueError(f"tp_shard: tp_rank={tp_rank} outside [0, {tp_size})")
        if inter % (tp_size * BLOCK):
            raise ValueError(
                f"tp_shard: intermediate {inter} is not divisible by tp_size*{BLOCK}={tp_size * BLOCK}; "
                "each shard must hold whole 16-element scale blocks"
            )
        n = inter // tp_size
        lo, hi = tp_rank * n, (tp_rank + 1) * n
        halves = [tuple(t[:, lo:hi] for t in self.fc1_half(p)) for p in self.fc1_projections]
        d2, s2 = self.fc2()
        return MoEWeights.from_linear(
            halves, self.w13_global, (d2[:, :, lo // 2 : hi // 2], s2[:, :, lo // BLOCK : hi // BLOCK]), self.w2_global,
            fc1_input_scale=self.fc1_input_scale, fc2_input_scale=self.fc2_input_scale,
        )

    # -- logical views (linear layout, no padding) ------------------------------------------
    @property
    def fc1_projections(self) -> tuple[str, ...]:
        """ModelOpt names of the FC1 halves in logical order: gate (``w1``), then up (``w3``)."""
        return ("w1", "w3") if self.gated else ("w1",)

    def linear_scales(self, which: str, experts: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """``w13_scale`` / ``w2_scale`` of the selected experts in linear layout over the padded
        shape (a new tensor when swizzled: per expert, one expert's scales at a time)."""
        sf = getattr(self, which)[experts]
        return sf if self.scale_layout == "linear" else unswizzle_128x4(sf, *sf.shape[-2:])

    def fc1_half(self, proj: str, experts: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """``(data [e, I, H/2] uint8, scale [e, I, H/16] e4m3)`` of FC1 projection ``w1`` (gate,
        or the single FC1) or ``w3`` (up); data is a view, scales linear."""
        if proj not in self.fc1_projections:
            raise ValueError(f"fc1_half: {proj!r}; this layer's FC1 has {self.fc1_projections}")
        inter, h16 = self.intermediate_size, self.hidden_size // BLOCK
        lo = inter if (self.gated and proj == "w1") else 0  # [w3; w1]: up rows first
        sf = self.linear_scales("w13_scale", experts)
        return self.w13[experts][:, lo : lo + inter], sf[:, lo : lo + inter, :h16]

    def fc2(self, experts: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """``(data [e, H, I/2] uint8, scale [e, H, I/16] e4m3)`` of FC2 (data a view, scales linear)."""
        inter, hidden = self.intermediate_size, self.hidden_size
        sf = self.linear_scales("w2_scale", experts)
        return self.w2[experts][:, :, : inter // 2], sf[:, :hidden, : inter // BLOCK]

    # -- dequantization (float32; for the oracle and fallbacks) ----------------------------
    def fc2_quant_global(self) -> torch.Tensor:
        """``[E]`` float32: the global of the W4A4 FC2-input quantization (dequant direction):
        the calibrated ``fc2_input_scale`` times :data:`FC2_INPUT_HEADROOM`, or 1.0 (block
        scales then clip above an amax of 2688) when the bundle has none."""
        if self.fc2_input_scale is None:
            return torch.ones_like(self.w2_global)
        return self.fc2_input_scale * FC2_INPUT_HEADROOM

    def dequant_w13(self, experts: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """FC1 weights ``[e, g*I, H]`` float32, rows ``[gate; up]``, each half times its global."""
        glob = self.w13_global[experts]
        return torch.cat([dequantize_nvfp4(*self.fc1_half(p, experts), glob[:, h])
                          for h, p in enumerate(self.fc1_projections)], dim=1)

    def dequant_w2(self, experts: torch.Tensor | slice = slice(None)) -> torch.Tensor:
        """FC2 weights ``[e, H, I]`` float32."""
        d, s = self.fc2(experts)
        return dequantize_nvfp4(d, s, self.w2_global[experts])

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_modelopt(cls, experts: Sequence[Mapping[str, Mapping[str, torch.Tensor]]],
                      where: Callable[[int, str, str], str] | None = None) -> "MoEWeights":
        """Build from ModelOpt per-expert tensors.

        ``experts[e]`` maps projection names to ModelOpt tensors ``{"weight": uint8 [N, K/2],
        "weight_scale": e4m3 [N, K/16], "weight_scale_2": fp32 scalar, "input_scale": fp32
        scalar (optional)}``. Projections: ``w1`` (gate), ``w3`` (up) and ``w2`` (down) for
        gated experts; ``w1`` (the single FC1, e.g. Nemotron's ``up_proj``) and ``w2`` for ReLU^2.

        Refused, with the tensor named (``where(expert, proj, key)``, e.g. the checkpoint file and
        tensor name): missing tensors, experts of different shapes, non-float, per-channel,
        non-finite or non-positive scalars, NaN or negative block scales, input scales on some
        experts only.
        """
        if not experts:
            raise ValueError("from_modelopt: no experts given")
        where = where or (lambda e, p, key: f"expert {e} {p}.{key}")
        gated = "w3" in experts[0]
        fc1 = ("w1", "w3") if gated else ("w1",)
        projs = fc1 + ("w2",)
        shapes = {}  # (proj, key) -> shape of expert 0
        for e, ex in enumerate(experts):
            missing = [p for p in projs if p not in ex]
            if missing or (("w3" in ex) != gated):
                raise ValueError(
                    f"from_modelopt: expert {e} has projections {sorted(ex)}; every expert needs "
                    f"{list(projs)} (gated: w1, w3, w2; ReLU^2: w1, w2)"
                )
            for p in projs:
                for key, dtype in (("weight", torch.uint8), ("weight_scale", torch.float8_e4m3fn)):
                    t = ex[p].get(key)
                    if t is None:
                        _fail(where(e, p, key), "missing")
                    if t.dtype != dtype or t.dim() != 2:
                        _fail(where(e, p, key), f"dtype {t.dtype}, shape {tuple(t.shape)}; expected a 2-D {dtype} tensor")
                    want = shapes.setdefault((p, key), tuple(t.shape))
                    if tuple(t.shape) != want:
                        _fail(where(e, p, key), f"shape {tuple(t.shape)}; expert 0 has {want} (all experts of a layer "
                                                "have one shape)")
                if ex[p]["weight_scale"].shape != (ex[p]["weight"].shape[0], ex[p]["weight"].shape[1] * 2 // BLOCK):
                    _fail(where(e, p, "weight_scale"), f"shape {tuple(ex[p]['weight_scale'].shape)}; expected one scale "
                          f"per {BLOCK} elements of weight {tuple(ex[p]['weight'].shape)}: "
                          f"{(ex[p]['weight'].shape[0], ex[p]['weight'].shape[1] * 2 // BLOCK)}")
                _block_scales(ex[p]["weight_scale"], where(e, p, "weight_scale"))
                if "weight_scale_2" not in ex[p]:
                    _fail(where(e, p, "weight_scale_2"), "missing (NVFP4 needs the per-tensor global scale)")
        (n1, h2), (h, i2) = shapes[("w1", "weight")], shapes[("w2", "weight")]
        if (gated and shapes[("w3", "weight")] != (n1, h2)) or h != 2 * h2 or n1 != 2 * i2:
            raise ValueError(
                f"from_modelopt: projection shapes do not form one MoE layer: w1 weight {(n1, h2)}"
                + (f", w3 weight {shapes[('w3', 'weight')]}" if gated else "") + f", w2 weight {(h, i2)}; expected "
                f"w1/w3 [I, H/2] and w2 [H, I/2]"
            )
        has_input = {(e, p): "input_scale" in ex[p] for e, ex in enumerate(experts) for p in projs}
        if any(has_input.values()) and not all(has_input.values()):
            e, p = next(k for k, v in has_input.items() if not v)
            _fail(where(e, p, "input_scale"), "missing while other experts have one (a checkpoint has input scales "
                                              "for every expert or for none)")

        def stack(p, key):
            return torch.stack([ex[p][key] for ex in experts])

        def stack_scalar(p, key):
            return torch.stack([_scalar(ex[p][key], where(e, p, key)) for e, ex in enumerate(experts)])

        def input_scale(ps):
            if not all(has_input.values()):
                return None
            # w1 and w3 see the same input: one scale (their max, as TensorRT-LLM does).
            return torch.stack([torch.stack([_scalar(ex[p]["input_scale"], where(e, p, "input_scale"))
                                             for p in ps]).amax() for e, ex in enumerate(experts)])

        return cls.from_linear(
            [(stack(p, "weight"), stack(p, "weight_scale")) for p in fc1],
            torch.stack([stack_scalar(p, "weight_scale_2") for p in fc1], dim=1),
            (stack("w2", "weight"), stack("w2", "weight_scale")),
            stack_scalar("w2", "weight_scale_2"),
            fc1_input_scale=input_scale(fc1),
            fc2_input_scale=input_scale(("w2",)),
        )

    @classmethod
    def from_linear(cls, fc1_halves, w13_global: torch.Tensor, fc2, w2_global: torch.Tensor, *,
                    fc1_input_scale: torch.Tensor | None = None, fc2_input_scale: torch.Tensor | None = None,
                    scale_layout: str = "swizzled") -> "MoEWeights":
        """The layout from logical per-projection tensors: ``fc1_halves`` = ``[(data [E, I, H/2],
        linear scale [E, I, H/16])]`` for gate (``w1``) then up (``w3``), or the single FC1;
        ``fc2`` = ``(data [E, H, I/2], scale [E, H, I/16])``. Fills the padded tensors one expert
        at a time (no transient beyond one expert)."""
        if len(fc1_halves) not in (1, 2):
            raise ValueError(f"from_linear: {len(fc1_halves)} FC1 halves; expected 2 (gate, up) or 1 (ReLU^2)")
        (d0, _), (d2, _) = fc1_halves[0], fc2
        e, inter, h2 = d0.shape
        hidden, g = h2 * 2, len(fc1_halves)
        n1 = stored_fc1_rows(inter, g == 2)
        dev = d0.device
        w13 = torch.zeros(e, n1, h2, dtype=torch.uint8, device=dev)
        w13_sf = torch.zeros(e, n1, round_up(hidden // BLOCK, 4), dtype=torch.uint8, device=dev)
        w2 = torch.zeros(e, hidden, n1 // g // 2, dtype=torch.uint8, device=dev)
        w2_sf = torch.zeros(e, round_up(hidden, 128), round_up(n1 // g // BLOCK, 4), dtype=torch.uint8, device=dev)
        order = fc1_halves[::-1]  # stored [w3; w1]: up rows first
        for x in range(e):
            for h, (d, sf) in enumerate(order):
                w13[x, h * inter : (h + 1) * inter] = d[x]
                w13_sf[x, h * inter : (h + 1) * inter, : hidden // BLOCK] = sf[x].view(torch.uint8)
            w2[x, :, : inter // 2] = fc2[0][x]
            w2_sf[x, :hidden, : inter // BLOCK] = fc2[1][x].view(torch.uint8)
            if scale_layout == "swizzled":
                w13_sf[x] = swizzle_128x4(w13_sf[x])
                w2_sf[x] = swizzle_128x4(w2_sf[x])
        return cls(
            w13=w13, w13_scale=w13_sf.view(torch.float8_e4m3fn), w13_global=w13_global.float().contiguous(),
            w2=w2, w2_scale=w2_sf.view(torch.float8_e4m3fn), w2_global=w2_global.float().contiguous(),
            intermediate=inter, fc1_input_scale=fc1_input_scale, fc2_input_scale=fc2_input_scale,
            scale_layout=scale_layout,
        )


def nbytes(*tensors: torch.Tensor) -> int:
    """Bytes the tensors' elements take (what a layer holds)."""
    return sum(t.numel() * t.element_size() for t in tensors)


def check_positive(t: torch.Tensor, name: str) -> None:
    """Global and input scales: finite and > 0 (a zero, negative, NaN or inf global turns every
    output of its expert into zeros, flipped signs or NaN). Names the first bad element."""
    bad = ~(torch.isfinite(t) & (t > 0))
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        where = f"expert {idx[0]}" + (f", half {idx[1]}" if len(idx) > 1 else "") if idx else "value"
        raise ValueError(f"{name}: {where} is {float(t[idx])}; global and input scales must be finite and > 0")


def _fail(where: str, rule: str):
    raise ValueError(f"from_modelopt: {where}: {rule}")


def _scalar(t, where: str) -> torch.Tensor:
    """A per-tensor scale: floating point, one element, finite, > 0 -> float32 0-d."""
    if not isinstance(t, torch.Tensor):
        _fail(where, f"expected a tensor, got {type(t).__name__}")
    if not t.dtype.is_floating_point or t.element_size() < 2:
        _fail(where, f"dtype {t.dtype}; a per-tensor scale must be float32 (or float16/bfloat16/float64)")
    if t.numel() != 1:
        _fail(where, f"shape {tuple(t.shape)}; a per-tensor scale has one element (per-channel scales are not "
                     "NVFP4 ModelOpt's format)")
    v = t.detach().float().reshape(())
    if not bool(torch.isfinite(v)) or not bool(v > 0):
        _fail(where, f"value {float(v)}; global and input scales must be finite and > 0")
    return v


def _block_scales(t: torch.Tensor, where: str) -> None:
    """E4M3 block scales: no NaN, no sign bit (the SM120 MMA reads them as unsigned UE4M3)."""
    u = t.view(torch.uint8)
    bad = (u & 0x80) != 0
    bad |= (u & 0x7F) == 0x7F
    if bool(bad.any()):
        r, c = (int(i) for i in bad.nonzero()[0])
        _fail(where, f"row {r}, block {c} holds 0x{int(u[r, c]):02x} ({float(t.view(torch.float8_e4m3fn)[r, c])}); "
                     "block scales must be finite and non-negative E4M3")


def _shape3(t: torch.Tensor, name: str) -> tuple[int, int, int]:
    if not isinstance(t, torch.Tensor) or t.dim() != 3:
        raise ValueError(f"MoEWeights.{name}: expected a 3-D tensor [E, rows, cols], got {getattr(t, 'shape', t)}")
    return tuple(t.shape)
