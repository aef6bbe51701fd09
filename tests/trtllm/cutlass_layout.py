"""Test-side model of TensorRT-LLM's CUTLASS NVFP4 MoE weights, written independently of
trtllm_b12x: its own 128x4 swizzle (the byte-offset formula), E2M1 table, gate/up order,
padding and global-scale bookkeeping (fc31_input_scale = 1 / max input_scale,
alpha = weight_scale_2 / fc31_input_scale, larger weight_scale_2 of w1/w3 kept).

``checkpoint_from_bundle`` writes a ModelOpt-style checkpoint of a synthetic bundle;
``cutlass_tensors`` loads it the way ``NVFP4CutlassFusedMoEMethod`` does;
``dequant_cutlass`` and ``moe_math`` are the math those tensors stand for.
"""

import torch

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def round_up(x, m):
    return (x + m - 1) // m * m


def sf_offsets(rows, cols):
    """Byte offset of scale (r, c) in a swizzled [rows, cols] buffer (rows % 128 == cols % 4 == 0)."""
    r = torch.arange(rows)[:, None]
    c = torch.arange(cols)[None, :]
    return (r // 128) * (cols // 4) * 512 + (c // 4) * 512 + (r % 32) * 16 + ((r % 128) // 32) * 4 + (c % 4)


def swizzle(sf):
    rows, cols = sf.shape
    flat = torch.zeros(rows * cols, dtype=torch.uint8)
    flat[sf_offsets(rows, cols).reshape(-1)] = sf.reshape(-1)
    return flat.view(rows, cols)


def unswizzle(sf):
    rows, cols = sf.shape
    return sf.reshape(-1)[sf_offsets(rows, cols)]


def pad2(t, rows, cols):
    out = t.new_zeros(rows, cols)
    out[: t.shape[0], : t.shape[1]] = t
    return out


def checkpoint_from_bundle(w):
    """ModelOpt tensors per expert: ``{e}.{w1|w3|w2}.{weight|weight_scale|weight_scale_2|input_scale}``."""
    ck = {}
    for e in range(w.num_experts):
        for half, proj in enumerate(w.fc1_projections):  # the bundle's logical view: w1 (gate), w3 (up)
            data, scale = w.fc1_half(proj, [e])
            ck[f"{e}.{proj}.weight"] = data[0].clone()
            ck[f"{e}.{proj}.weight_scale"] = scale[0].clone()
            ck[f"{e}.{proj}.weight_scale_2"] = w.w13_global[e, half].clone()
            ck[f"{e}.{proj}.input_scale"] = w.fc1_input_scale[e].clone()
        data, scale = w.fc2([e])
        ck[f"{e}.w2.weight"] = data[0].clone()
        ck[f"{e}.w2.weight_scale"] = scale[0].clone()
        ck[f"{e}.w2.weight_scale_2"] = w.w2_global[e].clone()
        ck[f"{e}.w2.input_scale"] = w.fc2_input_scale[e].clone()
    return ck


def cutlass_tensors(ck, *, num_experts, experts, hidden, intermediate, gated, tp_size=1, tp_rank=0, swizzled=True):
    """The module tensors after TensorRT-LLM's CUTLASS NVFP4 loading, for local ``experts``."""
    i_pp = intermediate // tp_size
    lo, hi = tp_rank * i_pp, (tp_rank + 1) * i_pp
    n1 = round_up((2 if gated else 1) * i_pp, 128)
    c2 = n1 // (2 if gated else 1)
    fc1 = ("w3", "w1") if gated else ("w1",)  # up rows first
    sf = swizzle if swizzled else (lambda t: t)
    w31, w31_sf, w2, w2_sf = [], [], [], []
    for e in experts:
        data = torch.cat([ck[f"{e}.{p}.weight"][lo:hi] for p in fc1])
        scale = torch.cat([ck[f"{e}.{p}.weight_scale"].view(torch.uint8)[lo:hi] for p in fc1])
        w31.append(pad2(data, n1, hidden // 2))
        w31_sf.append(sf(pad2(scale, n1, hidden // 16)))
        w2.append(pad2(ck[f"{e}.w2.weight"][:, lo // 2 : hi // 2], hidden, c2 // 2))
        w2_sf.append(sf(pad2(ck[f"{e}.w2.weight_scale"].view(torch.uint8)[:, lo // 16 : hi // 16], hidden, c2 // 16)))
    # activation scales: one per layer, from every expert of the checkpoint
    in1 = torch.stack([ck[f"{e}.w1.input_scale"] for e in range(num_experts)]).max()
    in2 = torch.stack([ck[f"{e}.w2.input_scale"] for e in range(num_experts)]).max()
    fc31_input_scale, fc2_input_scale = in1.reciprocal(), in2.reciprocal()
    ws2_fc1 = torch.stack([
        torch.maximum(ck[f"{e}.w1.weight_scale_2"], ck[f"{e}.w3.weight_scale_2"]) if gated else ck[f"{e}.w1.weight_scale_2"]
        for e in experts
    ])
    ws2_fc2 = torch.stack([ck[f"{e}.w2.weight_scale_2"] for e in experts])
    return {
        "w3_w1_weight": torch.stack(w31).view(torch.int64),
        "w3_w1_weight_scale": torch.stack(w31_sf).view(torch.int32),
        "w2_weight": torch.stack(w2).view(torch.int64),
        "w2_weight_scale": torch.stack(w2_sf).view(torch.int32),
        "fc31_input_scale": fc31_input_scale,
        "fc2_input_scale": fc2_input_scale,
        "fc31_alpha": 1.0 / (fc31_input_scale * (1.0 / ws2_fc1)),
        "fc2_alpha": 1.0 / (fc2_input_scale * (1.0 / ws2_fc2)),
    }


def _dequant(data_i64, sf_i32, global_scale, swizzled):
    data = data_i64.view(torch.uint8)
    codes = torch.stack((data & 15, data >> 4), dim=-1).reshape(*data.shape[:-1], -1)
    vals = E2M1[codes.long()]
    sf = sf_i32.view(torch.uint8)
    if swizzled:
        sf = torch.stack([unswizzle(s) for s in sf])
    scale = sf.view(torch.float8_e4m3fn).float().repeat_interleave(16, dim=-1)
    return vals * scale * global_scale[:, None, None]


def dequant_cutlass(t, *, intermediate, gated, swizzled=True):
    """``(w13 [E, g*I, H] gate rows first, w2 [E, H, I])`` float32 from CUTLASS tensors."""
    i = intermediate
    fc1 = _dequant(t["w3_w1_weight"], t["w3_w1_weight_scale"], t["fc31_alpha"] * t["fc31_input_scale"], swizzled)
    fc2 = _dequant(t["w2_weight"], t["w2_weight_scale"], t["fc2_alpha"] * t["fc2_input_scale"], swizzled)
    w13 = torch.cat([fc1[:, i : 2 * i], fc1[:, :i]], dim=1) if gated else fc1[:, :i]
    return w13, fc2[:, :, :i]


def moe_math(x, ids, scales, w13, w2, *, expert_offset, gated):
    """Float32 routed MoE over dequantized weights (SwiGLU = silu(gate) * up, or ReLU^2)."""
    e_local, inter = w13.shape[0], w2.shape[2]
    out = torch.zeros(x.shape[0], w2.shape[1])
    for t in range(x.shape[0]):
        for k in range(ids.shape[1]):
            e = int(ids[t, k]) - expert_offset
            if not 0 <= e < e_local:
                continue
            h = w13[e] @ x[t].float()
            a = torch.nn.functional.silu(h[:inter]) * h[inter:] if gated else torch.relu(h).square()
            out[t] += scales[t, k] * (w2[e] @ a)
    return out
