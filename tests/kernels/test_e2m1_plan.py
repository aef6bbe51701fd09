"""The SM90 dequant's bit plan, run on the host: every nibble pair of every position gives the
exact E2M1 value (times the operand pre-scale) in both halves, and nothing else."""

import pytest
import torch

from trtllm_b12x.kernels.intrinsics import e2m1_pair_plan

E2M1 = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
PRESCALE = {"bfloat16": 2.0**-126, "float16": 2.0**-14}


def _shift(x, d):
    return (x << d) & 0xFFFFFFFF if d >= 0 else x >> -d


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_pair_plan_is_exact(dtype):
    d, plan = e2m1_pair_plan(dtype)
    gen = torch.Generator().manual_seed(0)
    fill = torch.randint(0, 1 << 32, (256,), generator=gen, dtype=torch.int64).tolist()
    for p, (wm, side, vm, sh) in enumerate(plan):
        for lo in range(16):
            for hi in range(16):
                other = fill[16 * lo + hi] & ~((0xF << 4 * p) | (0xF << 4 * (p + 4))) & 0xFFFFFFFF
                w = other | (lo << 4 * p) | (hi << 4 * (p + 4))
                v = _shift(w, d if side > 0 else -d)
                out = _shift((w & wm) | (v & vm), sh)
                halves = torch.tensor([out & 0xFFFF, out >> 16], dtype=torch.int32).to(torch.int16)
                got = halves.view(getattr(torch, dtype)).float().tolist()
                want = [(-1 if n & 8 else 1) * E2M1[n & 7] * PRESCALE[dtype] for n in (lo, hi)]
                assert got == want, (dtype, p, lo, hi, got, want)
