"""Read-only ceiling of a decode MoE: stream exactly the NVFP4 bytes of the touched experts.

No math, no output: what a bandwidth-bound fused MoE kernel could reach at best with the
same two dependent phases (FC1 bytes, then FC2 bytes). The first (token, slot) pair of
each expert in routing order ("leader") streams that expert's bytes, so each touched
expert is read once; a CTA finds out whether it leads by scanning the earlier pairs'
ids, so there is no sort launch and no host sync (graph-capturable).
"""

from __future__ import annotations

from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
import torch
from cutlass import Int32, Uint32
from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

from ..arch import Target, current_target
from .cache import CompileKey, KernelCache, compile_options, default_cache, have_tvm_ffi, launch
from .intrinsics import block_any


@dataclass(frozen=True)
class StreamConfig:
    words_a: int  # int32 words per expert of the data tensor
    words_b: int  # int32 words per expert of the scale tensor
    threads: int = 256
    unroll: int = 8  # 16-byte loads in flight per thread

    @property
    def chunk_words(self) -> int:
        return self.threads * self.unroll * 4

    @property
    def chunks(self) -> tuple[int, int]:
        c = self.chunk_words
        return -(-self.words_a // c), -(-self.words_b // c)


class StreamExperts:
    family = "read_ceiling"

    def __init__(self, config: StreamConfig):
        self.cfg = config

    def compile(self, target: Target, *, tvm_ffi: bool):
        cfg = self.cfg
        p = cute.sym_int32()
        e = cute.sym_int32()
        args = (
            make_fake_compact_tensor(Int32, (p,), assumed_align=4),
            make_fake_compact_tensor(Int32, (e, cfg.words_a), stride_order=(1, 0), assumed_align=16),
            make_fake_compact_tensor(Int32, (e, cfg.words_b), stride_order=(1, 0), assumed_align=16),
            make_fake_compact_tensor(Int32, (cfg.threads,), assumed_align=16),
            make_fake_stream(),
        )
        return cute.compile(self, *args, options=compile_options(target, tvm_ffi))

    @cute.jit
    def __call__(self, mIds: cute.Tensor, mA: cute.Tensor, mB: cute.Tensor, mSink: cute.Tensor, stream):
        ca, cb = self.cfg.chunks
        self.kernel(mIds, mA, mB, mSink).launch(
            grid=[mIds.shape[0], ca + cb, 1], block=[self.cfg.threads, 1, 1], stream=stream
        )

    @cute.kernel
    def kernel(self, mIds: cute.Tensor, mA: cute.Tensor, mB: cute.Tensor, mSink: cute.Tensor):
        cfg = self.cfg
        tidx, _, _ = cute.arch.thread_idx()
        pair, chunk, _ = cute.arch.block_idx()
        e = mIds[pair]
        seen = Uint32(0)
        for q in cutlass.range(tidx, pair, cfg.threads):
            if mIds[q] == e:
                seen = Uint32(1)
        earlier = block_any(seen)  # every thread reaches this barrier
        if earlier == Uint32(0) and e >= 0 and e < mA.shape[0]:
            ca, _ = cfg.chunks
            acc = Int32(0)
            if chunk < ca:
                acc = self.stream(mA, e, chunk, cfg.words_a, tidx)
            else:
                acc = self.stream(mB, e, chunk - ca, cfg.words_b, tidx)
            if acc == Int32(0x5A5A5A5A):  # practically never: keeps the loads alive
                mSink[tidx] = acc

    @cute.jit
    def stream(self, mT: cute.Tensor, e: Int32, chunk: Int32, words: int, tidx: Int32) -> Int32:
        cfg = self.cfg
        vecs = cute.zipped_divide(mT, (1, 4))
        acc = Int32(0)
        for u in cutlass.range_constexpr(cfg.unroll):
            v = (chunk * cfg.unroll + u) * cfg.threads + tidx
            if v * 4 < words:
                g = vecs[(None, (e, v))]
                r = cute.make_rmem_tensor_like(g)
                cute.autovec_copy(g, r)
                for i in cutlass.range_constexpr(4):
                    acc = acc ^ r[i]
        return acc


def read_ceiling_fn(w13: torch.Tensor, w13_scale: torch.Tensor, w2: torch.Tensor, w2_scale: torch.Tensor,
                    num_experts: int, cache: KernelCache | None = None):
    """``fn(topk_ids)``: two dependent launches streaming the touched experts' FC1 then FC2 bytes."""
    target = current_target(w13.device)
    tvm_ffi = have_tvm_ffi()
    cache = cache or default_cache()
    views, kernels = [], []
    for data, scale in ((w13, w13_scale), (w2, w2_scale)):
        a = data.view(num_experts, -1).view(torch.int32)
        b = scale.view(torch.uint8).view(num_experts, -1)
        pad = (-b.shape[1]) % 16  # scale rows may not be a multiple of 16 bytes: stream a padded copy
        b = torch.nn.functional.pad(b, (0, pad)).contiguous().view(torch.int32) if pad else b.view(torch.int32)
        cfg = StreamConfig(a.shape[1], b.shape[1])
        k = StreamExperts(cfg)
        kernels.append(cache.get(CompileKey(k.family, target.name, cfg, tvm_ffi), lambda k=k: k.compile(target, tvm_ffi=tvm_ffi)))
        views.append((a, b))
    sink = torch.zeros(256, dtype=torch.int32, device=w13.device)

    def run(topk_ids: torch.Tensor) -> None:
        flat = topk_ids.reshape(-1)
        for ck, (a, b) in zip(kernels, views):
            launch(ck, flat, a, b, sink)

    return run
