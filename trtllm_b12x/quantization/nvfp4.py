"""NVFP4 quantize / dequantize with ModelOpt checkpoint semantics.

A tensor ``x [..., K]`` is stored as

* ``data``   uint8 ``[..., K/2]``: E2M1 codes, two per byte (see :mod:`.codecs`);
* ``scale``  float8_e4m3fn ``[..., K/16]``: one block scale per 16 elements along K,
  linear layout (ModelOpt ``weight_scale``);
* ``global_scale`` float32: the per-tensor scale in the *dequant* direction
  (ModelOpt ``weight_scale_2`` for weights, ``input_scale`` for activations),
  ``amax / (6 * 448)`` when calibrated from the data.

so that ``x ~= e2m1(data) * e4m3(scale) * global_scale``.

The recipe, in float32 arithmetic, one block ``b`` of 16 elements at a time::

    s_b = e4m3(amax_b / (6 * g))                 # RNE, saturating at 448
    r_b = 1 / (float(s_b) * g)   (0 if s_b == 0)  # one correctly rounded division per block
    q_i = e2m1(x_i * r_b)                        # RNE, saturating at +-6

The activation-quantize kernels reproduce these operations bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .codecs import (
    E2M1_MAX,
    E4M3_MAX,
    _reject_nan,
    e2m1_decode,
    e2m1_encode,
    e4m3_decode,
    e4m3_encode,
    pack_e2m1,
    unpack_e2m1,
)

BLOCK = 16  # elements per E4M3 block scale, along K


@dataclass(frozen=True)
class NVFP4Tensor:
    """Packed NVFP4 tensor: ``data`` [..., K/2] uint8, ``scale`` [..., K/16] e4m3, ``global_scale``."""

    data: torch.Tensor
    scale: torch.Tensor
    global_scale: torch.Tensor

    @property
    def k(self) -> int:
        return self.data.shape[-1] * 2

    def dequantize(self) -> torch.Tensor:
        return dequantize_nvfp4(self.data, self.scale, self.global_scale)


def _check_k(k: int, what: str) -> None:
    if k % BLOCK:
        raise ValueError(
            f"{what}: the last dimension K={k} must be a multiple of {BLOCK} "
            f"(one E4M3 scale per {BLOCK} elements); pad K to {-(-k // BLOCK) * BLOCK}"
        )


def _broadcast_global(global_scale, x: torch.Tensor, what: str) -> torch.Tensor:
    """Global scale as float32 shaped to broadcast over the leading dims of ``x``."""
    g = torch.as_tensor(global_scale, dtype=torch.float32, device=x.device)
    if g.dim() > x.dim() - 1 or tuple(g.shape) != tuple(x.shape[: g.dim()]):
        if g.numel() != 1:
            raise ValueError(
                f"{what}: global scale of shape {tuple(g.shape)} does not match the leading "
                f"dimensions of the tensor {tuple(x.shape)}; supported: a scalar or a tensor "
                "equal to a prefix of the tensor's shape (e.g. one scale per expert)"
            )
        g = g.reshape(())
    if bool((g <= 0).any()) or not bool(torch.isfinite(g).all()):
        raise ValueError(f"{what}: global scales must be finite and > 0, got {g.flatten()[:4].tolist()}...")
    return g.reshape(tuple(g.shape) + (1,) * (x.dim() - g.dim()))


def global_scale_from_amax(amax: torch.Tensor | float) -> torch.Tensor:
    """ModelOpt's calibrated global scale ``amax / (6 * 448)`` (1.0 for an all-zero tensor)."""
    amax = torch.as_tensor(amax, dtype=torch.float32)
    g = amax / (E2M1_MAX * E4M3_MAX)
    return torch.where(amax > 0, g, torch.ones_like(g))


def quantize_nvfp4(x: torch.Tensor, global_scale) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize ``x [..., K]`` with a given dequant-direction global scale.

    Returns ``(data uint8 [..., K/2], scale float8_e4m3fn [..., K/16])``. ``global_scale``
    is a scalar or a tensor matching a prefix of ``x.shape`` (e.g. ``[E]`` for ``[E, N, K]``).
    NaN is rejected; +-inf saturates to +-6 times the block scale (448).
    """
    if not x.is_floating_point():
        raise TypeError(f"quantize_nvfp4: expected a floating tensor, got {x.dtype}")
    _check_k(x.shape[-1], "quantize_nvfp4")
    _reject_nan(x, "quantize_nvfp4")
    g = _broadcast_global(global_scale, x, "quantize_nvfp4")
    xb = x.float().reshape(*x.shape[:-1], x.shape[-1] // BLOCK, BLOCK)
    g = g.unsqueeze(-1)  # broadcast over the block dimension too
    amax = xb.abs().amax(-1, keepdim=True)
    # inf in a block saturates that block's scale at 448 (its other elements round to 0).
    s = e4m3_encode((amax / (g * E2M1_MAX)).nan_to_num(posinf=E4M3_MAX))
    sf = s.float()
    r = torch.where(sf > 0, 1.0 / (sf * g), torch.zeros_like(sf))
    q = e2m1_encode(torch.where(r > 0, xb * r, torch.zeros_like(xb)))
    return pack_e2m1(q.reshape(x.shape)), s.squeeze(-1)


def dequantize_nvfp4(data: torch.Tensor, scale: torch.Tensor, global_scale=1.0) -> torch.Tensor:
    """Inverse of :func:`quantize_nvfp4` (up to rounding): float32 ``[..., K]``."""
    k = data.shape[-1] * 2
    if scale.shape[-1] * BLOCK != k or scale.shape[:-1] != data.shape[:-1]:
        raise ValueError(
            f"dequantize_nvfp4: scale shape {tuple(scale.shape)} does not match data shape "
            f"{tuple(data.shape)}; expected {tuple(data.shape[:-1]) + (k // BLOCK,)} (linear layout)"
        )
    vals = e2m1_decode(unpack_e2m1(data)).reshape(*data.shape[:-1], k // BLOCK, BLOCK)
    out = vals * e4m3_decode(scale).unsqueeze(-1)
    g = _broadcast_global(global_scale, data, "dequantize_nvfp4").unsqueeze(-1)
    return (out * g).reshape(*data.shape[:-1], k)


def quantize_weight(w: torch.Tensor, per: int = 0) -> NVFP4Tensor:
    """ModelOpt weight recipe: global scale from the amax of each tensor.

    ``per`` leading dimensions get their own global scale (``per=1`` on ``[E, N, K]``
    gives one ``weight_scale_2`` per expert, as separate per-expert checkpoint tensors do).
    """
    dims = tuple(range(per, w.dim()))
    _check_k(w.shape[-1], "quantize_weight")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("quantize_weight: weights must be finite (NaN/inf found)")
    g = global_scale_from_amax(w.float().abs().amax(dim=dims).cpu()).to(w.device)
    data, scale = quantize_nvfp4(w, g)
    return NVFP4Tensor(data, scale, g)


def quantize_activation(x: torch.Tensor, input_scale) -> NVFP4Tensor:
    """Quantize activations with the checkpoint's calibrated ``input_scale`` (dequant direction)."""
    data, scale = quantize_nvfp4(x, input_scale)
    g = torch.as_tensor(input_scale, dtype=torch.float32, device=x.device)
    return NVFP4Tensor(data, scale, g)


def record_bytes(k: int) -> int:
    """Bytes of one NVFP4 row record of ``k`` elements: ``[k/2 code bytes | k/16 linear scales]``
    (the SM120 decode kernel's intermediate)."""
    _check_k(k, "record_bytes")
    return k // 2 + k // BLOCK


def fake_quantize(x: torch.Tensor, global_scale) -> torch.Tensor:
    """Quantize then dequantize (float32): the value an NVFP4 consumer sees."""
    data, scale = quantize_nvfp4(x, global_scale)
    return dequantize_nvfp4(data, scale, global_scale)
