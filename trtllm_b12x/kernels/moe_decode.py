"""Fused NVFP4 MoE decode (fewer than 64 tokens): weights stay NVFP4, tokens stay BF16/FP16.

Three dependent launches (programmatic dependent launches: each one's prologue overlaps the
previous one's tail), no host sync, no sort launch (CUDA-graph capturable):

1. **FC1 + activation**, 2. **FC2** — persistent grids sized to stay resident. Every CTA
   counts the pairs per local expert and builds the work list: per present expert, ascending,
   one entry per 8 of its pairs (one ballot per 32 experts). A work item is (entry, unit of 32
   weight rows; gated FC1: 16 gate + the matching 16 up rows), entry-major, and each CTA takes
   one contiguous range of items: every item has at most 8 pairs (equal ranges are equal
   work), each touched expert's bytes are read once per 8 of its pairs, and consecutive items
   mostly share the entry (its pairs and its token registers). The items' weights stream
   through a shared-memory ring (``cp.async``, ``stages`` slots of one item each, or of one of
   its ``parts`` K pieces where a whole item does not fit twice) while the warps compute
   earlier ones.
   FC1 writes the activated intermediate per pair, FC2 the FP32 rows ``router_weight * W2 a``.
3. **Slot sum** — ``out[t] = sum_k fc2[t, k]`` over the local slots (quarters of the slots,
   each in slot order, then the quarters in order).

Every sum has a fixed order (K split over the CTA's warps, summed warp 0..n-1; the slots as
above), so results are bitwise reproducible run to run.

Math: weights are MMA operand A (16 rows x 16 K), up to 8 pairs operand B (swap-AB,
``mma.sync.m16n8k16``, FP32 accumulate), read in place from TensorRT-LLM's CUTLASS layout
(:mod:`trtllm_b12x.quantization.fragments`): a tile's rows are 4 runs of 4 a quarter
128-row block apart (their 128x4 scale units copied whole), a lane takes 16 code bytes of
rows g and g + 8 per two chunks, tokens are permuted along K to match; each code pair
becomes a half2 with a masked join of the word and one shared shifted copy, at most one
shift, and one multiply by the block scale
(exact: E2M1 x E4M3 has at most 5 significant bits), the global scale is applied in the
epilogue. The tier-specific part is the operand preparation (the ``# -- tier`` methods).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import cutlass
import cutlass.cute as cute
import torch
from cutlass import Float32, Int16, Int32, Uint32
from cutlass.cute.nvgpu import cpasync
from cutlass.cute.runtime import make_fake_compact_tensor, make_fake_stream

from ..arch import Target, current_target, sm_count
from ..quantization.bundle import SCALE_LAYOUTS, nbytes, stored_fc1_rows
from ..quantization.fragments import CHUNK_K, MMAS, TILE_ROWS, ring_slot, scale_slot, tile_column
from ..quantization.layouts import SF_TILE_ROWS, round_up, scale_word, swizzled_shape
from .cache import CompileKey, KernelCache, compile_options, default_cache, have_tvm_ffi, launch
from .intrinsics import EPILOGUE_SCALE, TOKEN_DTYPES, e2m1_pair_plan, mma_m16n8k16, mul_half2, prmt, scale_pair

log = logging.getLogger("trtllm_b12x")

TOKENS_BOUND = 64  # the kernels take batches of fewer tokens than this (pair lists, workspace)
PHASES = ("fc1", "fc2")
ACTIVATIONS = ("swiglu", "relu2", "none")
TILES_PER_UNIT = 2  # 16-row tiles a work item computes (gated FC1: one gate + one up tile)
PAIRS_PER_PASS = 8  # MMA N
CHUNKS_PER_WARP = 4  # target K chunks per warp: more warps share an item's math, fewer token registers
MAX_EXPERTS = 1024  # local experts: one presence bit each, one 32-bit word per lane of a warp
WARPS_PER_SM = 16  # resident warps a phase aims for (so at most 128 registers per thread)
MAX_WARPS = 8  # warps of one CTA
MAX_TOKEN_REGS = 48  # registers that may hold an expert's token operands across its items
MAX_STAGES = 4  # ring slots per CTA (shared-memory ring)
MAX_PARTS = 8  # ring slots one work item may take (its K slice split where a whole one does not fit twice)
RESERVED_SMEM = 1024  # shared memory the hardware reserves per resident CTA


@cute.jit
def warp_append(hit, value, lane, dst, count):
    """Warp-wide ordered append: the lanes with ``hit`` write ``value`` to ``dst[count + rank]``
    in lane order (one ballot); returns the new count."""
    bits = Uint32(cute.arch.vote_ballot_sync(hit))
    if hit:
        dst[count + Int32(cute.arch.popc(bits & ((Uint32(1) << Uint32(lane)) - Uint32(1))))] = value
    return count + Int32(cute.arch.popc(bits))


def split_k(chunks: int) -> tuple[int, int]:
    """(warps sharing the K loop, chunks per warp) for ``chunks`` 64-wide K chunks: up to
    ``MAX_WARPS`` warps so each has about ``CHUNKS_PER_WARP``, splitting evenly where that
    leaves each warp at most twice that, else (a prime count such as 29) unevenly — every warp
    but the last takes ``per`` chunks."""

    def score(w):
        per = -(-chunks // w)
        return max(0, per - CHUNKS_PER_WARP), abs(per - CHUNKS_PER_WARP), w

    warps = min((w for w in range(1, MAX_WARPS + 1) if chunks % w == 0), key=score)
    if chunks // warps > 2 * CHUNKS_PER_WARP:
        warps = min((w for w in range(1, MAX_WARPS + 1) if (w - 1) * -(-chunks // w) < chunks), key=score)
    return warps, -(-chunks // warps)


def valid_parts(per_warp: int, parts: int) -> bool:
    """Whether a warp's K slice of ``per_warp`` chunks splits into ``parts`` ring slots of
    ``ceil(per_warp / parts)`` chunks with none empty."""
    return 1 <= parts <= per_warp and (parts - 1) * -(-per_warp // parts) < per_warp


def copy_groups(per_warp: int) -> list[tuple[int, int]]:
    """A warp's K slice split for its code copies: (first chunk, chunks) groups of 4, then 2, then 1."""
    out, c = [], 0
    for g in (4, 2, 1):
        while per_warp - c >= g:
            out.append((c, g))
            c += g
    return out


def occupancy(warps: int, stage_bytes: int, fixed_bytes: int, smem_per_sm: int) -> tuple[int, int]:
    """(resident CTAs per SM, ring stages per CTA): about ``WARPS_PER_SM`` warps per SM, then
    as many stages as the SM's shared memory holds (up to ``MAX_STAGES``); fewer CTAs
    rather than fewer than two stages, so every CTA overlaps its next item's loads. 0 stages:
    one item's weights do not fit the SM's shared memory (the warps read them from global memory)."""
    ctas = max(1, WARPS_PER_SM // warps)
    while True:
        stages = min(MAX_STAGES, (smem_per_sm // ctas - RESERVED_SMEM - fixed_bytes) // stage_bytes)
        if stages >= 2 or ctas == 1:
            break
        ctas -= 1
    return ctas, max(0, stages)


@dataclass(frozen=True)
class GemvConfig:
    """One grouped-GEMV phase of the decode kernel (all fields compile-time). The weights are
    read as TensorRT-LLM's CUTLASS method stores them (:class:`~trtllm_b12x.quantization.bundle.MoEWeights`):
    ``rows`` rows of ``k`` E2M1 codes, row-major, and E4M3 block scales in ``scale_layout``."""

    phase: str
    dtype: str
    k: int  # reduction length as stored: H (FC1) or C (FC2), a multiple of 64
    rows: int  # stored weight rows per expert: N1 (FC1) or H (FC2)
    out_cols: int  # columns of the output row per pair: C (FC1, the intermediate's stride) or H (FC2)
    intermediate: int  # I: FC1's units and gate rows; FC2's token columns at or beyond it are zero
    experts: int  # local experts
    expert_offset: int  # global id of local expert 0
    top_k: int
    max_pairs: int  # capacity of one expert's pair list
    activation: str = "none"
    alpha: float = 1.0
    beta: float = 0.0
    limit: float | None = None
    mma: str = "m16n8k16"  # the tier's MMA: m16n8k16 (SM90) | m16n8k64 (SM120)
    scale_layout: str = "swizzled"  # block scales: 128x4 "swizzled" or "linear" (W4A16 method)
    stages: int = 2  # ring slots per CTA: item parts whose weights are in flight (shared-memory ring)
    parts: int = 1  # ring slots one item's K slice takes (more where a whole slice's stage would not fit twice)
    ctas_per_sm: int = 1  # resident CTAs per SM the grid and the register budget assume
    red_buffers: int = 2  # split-K sum buffers: 2 = one barrier per item, 1 = two (less shared memory)

    def __post_init__(self):
        if self.phase not in PHASES or self.dtype not in TOKEN_DTYPES or self.activation not in ACTIVATIONS:
            raise ValueError(f"GemvConfig: phase/dtype/activation {self.phase}/{self.dtype}/{self.activation} unsupported")
        if (self.phase == "fc2") != (self.activation == "none"):
            raise ValueError("GemvConfig: FC1 takes swiglu or relu2, FC2 takes 'none'")
        if self.mma not in MMAS or self.scale_layout not in SCALE_LAYOUTS:
            raise ValueError(f"GemvConfig: mma={self.mma!r} / scale_layout={self.scale_layout!r}; "
                             f"supported: {MMAS} / {SCALE_LAYOUTS}")
        if self.k % CHUNK_K or self.k <= 0:
            raise ValueError(f"GemvConfig: k={self.k} must be a positive multiple of {CHUNK_K}")
        if self.rows % (TILE_ROWS * TILES_PER_UNIT) or self.intermediate % TILE_ROWS:
            raise ValueError(f"GemvConfig: rows={self.rows} must be a multiple of {TILE_ROWS * TILES_PER_UNIT} "
                             f"and intermediate={self.intermediate} of {TILE_ROWS}")
        if TILE_ROWS * TILES_PER_UNIT * self.units > self.rows or self.k_valid > self.k:
            raise ValueError(f"GemvConfig: {self.units} units of {self.rows} rows / I={self.intermediate} > k={self.k}")
        if not 0 < self.experts <= MAX_EXPERTS:
            raise ValueError(f"GemvConfig: {self.experts} local experts; supported: 1..{MAX_EXPERTS}")
        if not 0 < self.max_pairs < 1 << 15:
            raise ValueError(f"GemvConfig: max_pairs={self.max_pairs}; supported: 1..32767 (int16 pair indices)")
        if not valid_parts(self.per_warp, self.parts):
            raise ValueError(f"GemvConfig: parts={self.parts} for {self.per_warp} chunks per warp; "
                             "supported: 1..per_warp, every part non-empty")
        if self.red_buffers not in (1, 2):
            raise ValueError(f"GemvConfig: red_buffers={self.red_buffers}; supported: 1, 2")

    @property
    def chunks(self) -> int:
        return self.k // CHUNK_K

    @property
    def warps(self) -> int:
        return split_k(self.chunks)[0]

    @property
    def per_warp(self) -> int:
        return split_k(self.chunks)[1]

    @property
    def part_chunks(self) -> int:
        """Chunks of a warp's K slice per ring slot (the last part may have fewer)."""
        return -(-self.per_warp // self.parts)

    def part_size(self, q: int) -> int:
        """Chunks of part ``q`` of a warp's K slice."""
        return min(self.part_chunks, self.per_warp - q * self.part_chunks)

    @property
    def uneven(self) -> bool:
        """Whether the last warp has fewer chunks than the others (its missing ones are skipped)."""
        return self.warps * self.per_warp != self.chunks

    @property
    def units(self) -> int:
        """Work items per entry: gated FC1 one per 16 intermediate columns (16 gate + 16 up rows),
        ReLU^2 FC1 one per 32 (rows beyond I are TensorRT-LLM's zero rows), FC2 one per 32 rows."""
        if self.activation == "swiglu":
            return self.intermediate // TILE_ROWS
        if self.phase == "fc1":
            return -(-self.intermediate // (TILE_ROWS * TILES_PER_UNIT))
        return self.rows // (TILE_ROWS * TILES_PER_UNIT)

    @property
    def k_valid(self) -> int:
        """K columns of the token operand that hold data (FC2: the intermediate's I)."""
        return self.intermediate if self.phase == "fc2" else self.k

    @property
    def code_words(self) -> int:
        """int32 words of one expert's codes (``rows x k/2`` bytes, row-major)."""
        return self.rows * self.k // 8

    @property
    def scale_words(self) -> int:
        """int32 words of one expert's block scales: one per (row, chunk), rows padded to 128 when swizzled."""
        rows = swizzled_shape(self.rows, 4)[0] if self.scale_layout == "swizzled" else self.rows
        return rows * self.chunks

    @property
    def stage_bytes(self) -> int:
        """One ring slot (a part of a work item's weights) in shared memory, per 16-row tile: 64
        code bytes per row and chunk pair (a lone last chunk takes a pair's room), one 4-byte
        scale word per row and chunk."""
        pc = self.part_chunks
        return self.warps * TILES_PER_UNIT * TILE_ROWS * (round_up(pc, 2) * CHUNK_K // 2 + 4 * pc)

    @property
    def list_capacity(self) -> int:
        """Work-list entries at most: one per present expert, one more per further 8 pairs."""
        return min(self.experts, self.max_pairs) + self.max_pairs // PAIRS_PER_PASS

    @property
    def pass_bits(self) -> int:
        """Bits of an expert's pass count (at most all pairs on one expert)."""
        return max(1, (-(-self.max_pairs // PAIRS_PER_PASS)).bit_length())

    @property
    def fixed_smem(self) -> int:
        """Shared memory besides the ring: local ids and the pair list (int16), pair counts, work
        list, info, split-K sums (``red_buffers``)."""
        return (2 * round_up(2 * self.max_pairs, 16) + round_up(4 * self.experts, 16)
                + round_up(4 * self.list_capacity, 16) + 32
                + self.red_buffers * 4 * 4 * TILES_PER_UNIT * 32 * self.warps + 128)

    @property
    def smem_bytes(self) -> int:
        return self.fixed_smem + self.stages * self.stage_bytes


EXPERT_SCALARS = 4  # per local expert, FP32: output multiplier of tile 0, of tile 1, input-quant and output-quant globals
ENTRY_PASS_SHIFT = 16  # a work-list entry: local expert | pass << 16 (pass p: the expert's pairs 8p .. 8p+7)
ENTRY_EXPERT = (1 << ENTRY_PASS_SHIFT) - 1


class DecodeGemvSm90:
    """FC1+activation or FC2 of the decode kernel; Hopper operand preparation.

    Tier variants override the ``# -- tier`` methods and ``store_intermediate`` only: the token
    operand, one tile's MMAs for a K chunk, the operand pre-scale, the FC1 output store and
    their tensor types.
    """

    family = "moe_decode_gemv"
    tier = "sm90"
    mma = "m16n8k16"

    def __init__(self, config: GemvConfig):
        if config.mma != self.mma:
            raise ValueError(f"{type(self).__name__}: config is for {config.mma}; this kernel issues {self.mma}")
        self.cfg = config

    # -- compile (tensor-free) ----------------------------------------------------------------
    def fake_arguments(self) -> tuple:
        cfg = self.cfg
        p, r = cute.sym_int32(), cute.sym_int32()
        fc2 = cfg.phase == "fc2"
        return (
            make_fake_compact_tensor(Int32, (p,), assumed_align=4),  # expert id per pair
            make_fake_compact_tensor(Float32, (p,), assumed_align=4),  # router weight per pair
            self.token_tensor(r),  # FC1: the tokens; FC2: the intermediate per pair
            # the layer's codes and block scales as stored, int32 words per expert
            make_fake_compact_tensor(Int32, (cfg.experts, cfg.code_words), stride_order=(1, 0), assumed_align=16),
            make_fake_compact_tensor(Int32, (cfg.experts, cfg.scale_words), stride_order=(1, 0), assumed_align=16),
            make_fake_compact_tensor(Float32, (cfg.experts, EXPERT_SCALARS), stride_order=(1, 0), assumed_align=16),
            # FC1: the activated intermediate per pair; FC2: FP32 rows per pair
            make_fake_compact_tensor(Float32, (p, cfg.out_cols), stride_order=(1, 0), assumed_align=16) if fc2
            else self.intermediate_tensor(p),
            Int32(1),  # CTAs of the persistent grid
            make_fake_stream(),
        )

    def compile(self, target: Target, *, tvm_ffi: bool):
        return cute.compile(self, *self.fake_arguments(), options=compile_options(target, tvm_ffi))

    @cute.jit
    def __call__(self, mIds, mW, mX, mCodes, mScales, mGlobal, mPart, ctas: Int32, stream):
        # FC2 is a programmatic dependent launch: its prologue (ids, expert list, the first
        # items' weights) overlaps FC1's tail; it waits for FC1 only before reading the intermediate
        self.kernel(mIds, mW, mX, mCodes, mScales, mGlobal, mPart).launch(
            grid=[ctas, 1, 1], block=[32 * self.cfg.warps, 1, 1], stream=stream, use_pdl=self.cfg.phase == "fc2",
            min_blocks_per_mp=self.cfg.ctas_per_sm, preferred_smem_carveout=100,
        )

    # -- device --------------------------------------------------------------------------------
    @cute.kernel
    def kernel(self, mIds, mW, mX, mCodes, mScales, mGlobal, mPart):
        cfg = self.cfg
        threads = 32 * cfg.warps
        tidx, _, _ = cute.arch.thread_idx()
        cta, _, _ = cute.arch.block_idx()
        ctas, _, _ = cute.arch.grid_dim()
        warp = tidx // 32
        lane = tidx % 32

        smem = cutlass.memory.SmemAllocator()
        sIds = smem.allocate_tensor(Int16, cute.make_layout(cfg.max_pairs), 16)  # local expert per pair, or -1
        sPairs = smem.allocate_tensor(Int16, cute.make_layout(cfg.max_pairs), 16)  # the current expert's pairs
        sCount = smem.allocate_tensor(Int32, cute.make_layout(cfg.experts), 16)  # pairs per local expert
        sList = smem.allocate_tensor(Int32, cute.make_layout(cfg.list_capacity), 16)  # work entries, see list_entries
        sInfo = smem.allocate_tensor(Int32, cute.make_layout(8), 16)  # 0: pairs of the current expert, 3: entries
        sRed = smem.allocate_tensor(Float32, cute.make_layout((4 * TILES_PER_UNIT, 32, cfg.warps, cfg.red_buffers)), 16)
        sA, sA4, sS = self.ring(smem) if cfg.stages > 0 else (None, None, None)

        cute.arch.griddepcontrol_launch_dependents()  # the next launch's prologue may start
        npairs = mIds.shape[0]
        for e in cutlass.range(tidx, cfg.experts, threads):
            sCount[e] = Int32(0)
        cute.arch.sync_threads()
        for q in cutlass.range(tidx, npairs, threads):  # one round of independent loads
            le = mIds[q] - cfg.expert_offset
            mine = le >= 0 and le < cfg.experts
            sIds[q] = Int16(le if mine else -1)
            if mine:
                cute.arch.atomic_add(sCount.iterator + le, Int32(1), scope="cta")
        cute.arch.sync_threads()
        if warp == 0:
            self.list_entries(sCount, lane, sList, sInfo)
        cute.arch.sync_threads()

        # work item = (entry, unit), entry-major; each CTA takes one contiguous range, so
        # consecutive items mostly share the entry (its pairs and token registers). Every item
        # has at most 8 pairs: an expert with more has one entry per 8, so equal ranges are equal work
        items = cfg.units * sInfo[3]
        start = cta * items // ctas
        end = (cta + 1) * items // ctas
        # the ring's first slots (slot u % stages takes part u % parts of item start + u // parts):
        # weights need no pair list
        for u in cutlass.range_constexpr(cfg.stages):
            if start + u // cfg.parts < end:
                self.issue(mCodes, mScales, sA4, sS, sList, start + u // cfg.parts, u % cfg.parts, u, warp, lane)
            cute.arch.cp_async_commit_group()
        if cutlass.const_expr(cfg.phase == "fc2"):
            cute.arch.griddepcontrol_wait()  # FC1's intermediate is complete and visible

        rTok = cute.make_rmem_tensor(cute.make_layout(cfg.per_warp * self.token_words), Uint32)
        rScal = cute.make_rmem_tensor(cute.make_layout(EXPERT_SCALARS), Float32)  # the expert's globals
        rPair = cute.make_rmem_tensor(cute.make_layout(2), Int32)  # epilogue: pairs 2t, 2t+1 of the entry
        rWt = cute.make_rmem_tensor(cute.make_layout(2), Float32)  # ... and their router weights (FC2)
        cur = Int32(-1)
        n = Int32(0)
        base = Int32(0)
        row = Int32(0)
        for it in cutlass.range(start, end):
            slot = it // cfg.units
            unit = it - slot * cfg.units
            entry = sList[slot]
            local = entry & ENTRY_EXPERT
            if entry != cur:  # uniform over the CTA
                if local != (cur & ENTRY_EXPERT):
                    if warp == 0:
                        self.gather(sIds, local, npairs, lane, sPairs, sInfo)
                    cute.arch.sync_threads()
                    for c in cutlass.range_constexpr(EXPERT_SCALARS):
                        rScal[c] = mGlobal[local, c]
                n = sInfo[0]
                base = (entry >> ENTRY_PASS_SHIFT) * PAIRS_PER_PASS
                # everything the entry's items need from the pair list, read once: sPairs is only
                # rewritten after a reduction barrier that every warp has passed
                row = self.token_row(Int32(sPairs[cutlass.min(base + lane // 4, n - 1)]))  # padding repeats a real row
                for p in cutlass.range_constexpr(2):
                    rPair[p] = Int32(sPairs[cutlass.min(base + 2 * (lane % 4) + p, n - 1)])
                    if cutlass.const_expr(cfg.phase == "fc2"):
                        rWt[p] = mW[rPair[p]]
                if cutlass.const_expr(self.keeps_tokens):
                    self.load_tokens(rTok, mX, rScal[2], warp, lane, row)
                cur = entry
            acc = cute.make_rmem_tensor(cute.make_layout(4 * TILES_PER_UNIT), Float32)
            for v in cutlass.range_constexpr(4 * TILES_PER_UNIT):
                acc[v] = Float32(0.0)
            st = Int32(0)
            w_args = (mCodes, mScales, local, unit)  # no ring: the weights from global memory
            for q in cutlass.range_constexpr(cfg.parts):
                if cutlass.const_expr(cfg.stages > 0):
                    st = ((it - start) * cfg.parts + q) % cfg.stages
                    cute.arch.cp_async_wait_group(cfg.stages - 1)  # this thread's copies of this part landed
                    cute.arch.sync_warp()  # ... and its warp's (a warp reads only the slice it copied)
                    w_args = (sA, sA4, sS, st)
                self.mainloop(acc, mX, rScal[2], rTok if self.keeps_tokens else None, w_args, q, warp, lane, row)
                if cutlass.const_expr(cfg.stages > 0 and q < cfg.parts - 1):
                    cute.arch.sync_warp()  # the warp has read its slice of the slot: refill it now
                    self.refill(mCodes, mScales, sA4, sS, sList, it, q, st, end, warp, lane)
            self.reduce_store(acc, (it - start) % cfg.red_buffers, warp, lane, sRed, rScal, rPair, rWt, mPart, unit,
                              base, n)
            if cutlass.const_expr(cfg.stages > 0):  # the last part's slot was read before the reduction's barrier
                self.refill(mCodes, mScales, sA4, sS, sList, it, cfg.parts - 1, st, end, warp, lane)

    @cute.jit
    def refill(self, mCodes, mScales, sA4, sS, sList, it, q, st, end, warp, lane):
        """Slot ``st``, just read as part ``q`` of item ``it``, takes the part ``stages`` slots later."""
        cfg = self.cfg
        nxt = it + (q + cfg.stages) // cfg.parts
        if nxt < end:
            self.issue(mCodes, mScales, sA4, sS, sList, nxt, (q + cfg.stages) % cfg.parts, st, warp, lane)
        cute.arch.cp_async_commit_group()

    def ring(self, smem):
        """The stages of weights in shared memory (layout: :mod:`trtllm_b12x.quantization.fragments`).
        ``sA4``: per (stage, warp, chunk pair, tile) 16 rows of 64 code bytes, indexed (word,
        slot, row) (:func:`~trtllm_b12x.quantization.fragments.ring_slot`); ``sA`` the same bytes
        indexed (word, pair of words, slot, row); ``sS`` per (stage, warp, chunk, tile) the scale words ``[rh, a, g']`` (:func:`~trtllm_b12x.quantization.fragments.scale_slot`)."""
        cfg = self.cfg
        shape = (TILE_ROWS, TILES_PER_UNIT, -(-cfg.part_chunks // 2), cfg.warps, cfg.stages)
        sA4 = smem.allocate_tensor(Int32, cute.make_layout((4, 4, *shape)), 16)
        sA = cute.make_tensor(sA4.iterator, cute.make_layout((2, 2, 4, *shape)))
        sS = smem.allocate_tensor(Int32, cute.make_layout((2, 2, 4, TILES_PER_UNIT, cfg.part_chunks, cfg.warps,
                                                           cfg.stages)), 16)
        return sA, sA4, sS

    @cute.jit
    def list_entries(self, sCount, lane, sList, sInfo):
        """Warp 0: the work list. Per present local expert, ascending, one entry per 8 of its
        pairs: ``expert | pass << ENTRY_PASS_SHIFT`` (one ballot per 32 experts; an exclusive
        prefix sum of the pass counts, a few ballots more, where an expert has more than 8)."""
        cfg = self.cfg
        count = Int32(0)
        below = (Uint32(1) << Uint32(lane)) - Uint32(1)
        for i in cutlass.range_constexpr((cfg.experts + 31) // 32):
            e = 32 * i + lane
            c = sCount[cutlass.min(e, cfg.experts - 1)]
            if e >= cfg.experts:
                c = Int32(0)
            passes = (c + PAIRS_PER_PASS - 1) // PAIRS_PER_PASS
            if Uint32(cute.arch.vote_ballot_sync(passes > 1)) != Uint32(0):
                first = Int32(0)
                total = Int32(0)
                for b in cutlass.range_constexpr(cfg.pass_bits):
                    bits = Uint32(cute.arch.vote_ballot_sync(((passes >> b) & 1) != 0))
                    first = first + (Int32(cute.arch.popc(bits & below)) << b)
                    total = total + (Int32(cute.arch.popc(bits)) << b)
                for p in cutlass.range(passes):
                    sList[count + first + p] = e | (p << ENTRY_PASS_SHIFT)
                count = count + total
            else:
                count = warp_append(passes > 0, e, lane, sList, count)
        if lane == 0:
            sInfo[3] = count

    @cute.jit
    def gather(self, sIds, local, npairs, lane, sPairs, sInfo):
        """Warp 0 lists, in routing order, every pair of local expert ``local``."""
        count = Int32(0)
        for base in cutlass.range(0, npairs, 32):
            q = base + lane
            hit = (q < npairs) & (Int32(sIds[cutlass.min(q, npairs - 1)]) == local)
            count = warp_append(hit, Int16(q), lane, sPairs, count)
        if lane == 0:
            sInfo[0] = count

    # -- which stored rows a work item's MMA rows are ---------------------------------------------
    @property
    def interleaved(self) -> bool:
        """Whether a tile's 16 MMA rows are 4 runs of 4 consecutive rows a quarter of their
        128-row block apart (:func:`~trtllm_b12x.quantization.fragments.tile_column`), so that
        each row of a run shares its 128x4 scale unit (16 bytes) with the other runs."""
        return True

    @property
    def column_span(self) -> int:
        """The output columns the items cover (FC1: intermediate columns, FC2: hidden)."""
        cfg = self.cfg
        return cfg.intermediate if cfg.activation == "swiglu" else TILE_ROWS * TILES_PER_UNIT * cfg.units

    @cute.jit
    def tile_index(self, unit, j):
        """The output block (16 columns) of the unit's j-th tile (gated FC1: both tiles share it)."""
        if cutlass.const_expr(self.cfg.activation == "swiglu"):
            return unit
        return TILES_PER_UNIT * unit + j

    @cute.jit
    def column(self, blk, m):
        """Output column of MMA row ``m`` of output block ``blk`` (ints or kernel integers)."""
        if cutlass.const_expr(not self.interleaved):
            return TILE_ROWS * blk + m
        return tile_column(blk, m, self.column_span, cutlass.min)

    @cute.jit
    def weight_row(self, unit, j, m):
        """Stored weight row of MMA row ``m`` of the unit's j-th tile (gated: gate rows ``[I, 2I)``
        for tile 0, up rows ``[0, I)`` for tile 1)."""
        col = self.column(self.tile_index(unit, j), m)
        if cutlass.const_expr(self.cfg.activation == "swiglu"):
            return col + (1 - j) * self.cfg.intermediate
        return col

    def vector_scales(self, j: int) -> bool:
        """Whether tile j's scale words come as 16-byte 128x4 units (4 runs x one row each) in
        a full 128-row block: interleaved rows, swizzled scales, the block aligned (gated
        FC1's gate rows start at I)."""
        cfg = self.cfg
        aligned = cfg.activation != "swiglu" or j == 1 or cfg.intermediate % SF_TILE_ROWS == 0
        return self.interleaved and cfg.scale_layout == "swizzled" and aligned

    @cute.jit
    def token_row(self, q):
        if cutlass.const_expr(self.cfg.phase == "fc1"):
            return q // self.cfg.top_k
        return q

    @cute.jit
    def issue(self, mCodes, mScales, sA4, sS, sList, it, q, st, warp, lane):
        """Start the cp.async copies of part ``q`` of item ``it``'s weights (of this warp's K
        slice) into ring slot ``st``: 16-byte code vectors (a row's half chunk each), and the
        scale words (:meth:`copy_scales`: 16-byte 128x4 units where the rows are interleaved, else words)."""
        cfg = self.cfg
        first = warp * cfg.per_warp + q * cfg.part_chunks  # the part's first chunk
        slot = it // cfg.units
        unit = it - slot * cfg.units
        local = sList[slot] & ENTRY_EXPERT
        vec = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=cpasync.LoadCacheMode.GLOBAL), Int32,
                                  num_bits_per_copy=128)
        gA = cute.zipped_divide(mCodes, (1, 4))
        # codes: per group of G chunks, G copies per tile of 16 / G rows x G chunks (G = 4: whole
        # 128-byte lines of global memory); each 8 lanes fill 128 contiguous ring bytes
        for c0, grp in copy_groups(cfg.part_size(q)):
            h = lane & 1
            if cutlass.const_expr(grp == 4):  # lane bits: half, chunk parity, row, chunk pair, row
                i, r0 = c0 + 2 * ((lane >> 3) & 1) + ((lane >> 1) & 1), ((lane >> 2) & 1) + 2 * (lane >> 4)
            elif cutlass.const_expr(grp == 2):
                i, r0 = c0 + ((lane >> 1) & 1), lane >> 2
            else:
                i, r0 = c0, lane >> 1
            c = first + i
            for n in cutlass.range_constexpr(grp):
                r = n * (TILE_ROWS // grp) + r0
                if not cfg.uneven or c < cfg.chunks:
                    for j in cutlass.range_constexpr(TILES_PER_UNIT):
                        v = self.weight_row(unit, j, r) * (cfg.k // 32) + 2 * c + h
                        cute.copy(vec, _vec(gA[(None, (local, v))]),
                                  _vec(sA4[None, ring_slot(r, i, h, grp == 1), r, j, i >> 1, warp, st]))
        tiles = list(range(TILES_PER_UNIT))
        vec_tiles = [j for j in tiles if self.vector_scales(j)]
        span = (first, cfg.part_size(q))  # the part's chunks
        if cutlass.const_expr(not vec_tiles):
            self.copy_scales(mScales, sS, local, unit, st, warp, span, lane, tiles, False)
        elif cutlass.const_expr(self.column_span % SF_TILE_ROWS == 0):  # every block is full
            self.copy_unit_scales(mScales, sS, local, unit, st, warp, span, lane, vec_tiles)
        elif (self.tile_index(unit, 0) // 8 + 1) * SF_TILE_ROWS <= self.column_span:  # uniform over the warp
            self.copy_unit_scales(mScales, sS, local, unit, st, warp, span, lane, vec_tiles)
        else:  # the last, partial block: its runs are closer than 32 rows
            self.copy_scales(mScales, sS, local, unit, st, warp, span, lane, tiles, False)

    @cute.jit
    def copy_unit_scales(self, mScales, sS, local, unit, st, warp, span, lane, vec_tiles):
        """A full block's scales: 16-byte units for ``vec_tiles``, words for the other tiles."""
        self.copy_scales(mScales, sS, local, unit, st, warp, span, lane, vec_tiles, True)
        word_tiles = [j for j in range(TILES_PER_UNIT) if j not in vec_tiles]
        if cutlass.const_expr(word_tiles):
            self.copy_scales(mScales, sS, local, unit, st, warp, span, lane, word_tiles, False)

    @cute.jit
    def copy_scales(self, mScales, sS, local, unit, st, warp, span, lane, tiles, vector):
        """The scale words of ``tiles`` over ``span`` = (first chunk, chunks) of this warp's K
        slice into ring slot ``st``, lanes spread over (chunk, tile, copy): ``vector``, one
        16-byte 128x4 unit per run offset ``g'`` (the 4 runs' rows); else one word per row."""
        cfg = self.cfg
        first, count = span
        per_tile = 4 if vector else TILE_ROWS
        per = per_tile * len(tiles)  # copies per chunk (a power of two)
        mode = cpasync.LoadCacheMode.GLOBAL if vector else cpasync.LoadCacheMode.ALWAYS  # .cg takes 16 bytes only
        atom = cute.make_copy_atom(cpasync.CopyG2SOp(cache_mode=mode), Int32, num_bits_per_copy=128 if vector else 32)
        for rnd in cutlass.range_constexpr(-(-count * per // 32)):
            f = 32 * rnd + lane
            i = f // per
            j = tiles[0] + (f % per) // per_tile if len(tiles) > 1 else tiles[0]
            m = f % per_tile
            c = first + i
            if (32 * (rnd + 1) <= count * per or i < count) and (not cfg.uneven or c < cfg.chunks):
                word = scale_word(self.weight_row(unit, j, m), c, cfg.chunks, cfg.scale_layout)
                if cutlass.const_expr(vector):  # run 0's row: the unit's first word
                    cute.copy(atom, _vec(cute.zipped_divide(mScales, (1, 4))[(None, (local, word >> 2))]),
                              _vec(sS[None, None, m, j, i, warp, st]))
                else:
                    rh, a, g4 = scale_slot(m)
                    cute.copy(atom, cute.make_tensor(mScales.iterator + mScales.layout((local, word)), cute.make_layout(1)),
                              cute.make_tensor(sS.iterator + sS.layout((rh, a, g4, j, i, warp, st)),
                                               cute.make_layout(1)))

    step_chunks = 2  # chunks of one K step: a lane's 128-bit load of a row spans two (SM90)

    def k_steps(self, q: int) -> list[tuple[int, int]]:
        """Part ``q`` of the warp's K slice as (first chunk, chunks) steps of ``step_chunks``
        (the last may be short), chunks counted from the part's first."""
        per = self.cfg.part_size(q)
        return [(i, min(self.step_chunks, per - i)) for i in range(0, per, self.step_chunks)]

    @cute.jit
    def step_chunk(self, c, n, lane):
        """The chunk lane ``4 g + t`` reads in the K step of ``n`` chunks at ``c``: ``c + t // 2``
        for two (a missing second chunk of the last warp's step clamped: read, its scales zeroed)."""
        if cutlass.const_expr(n == 1):
            return c
        cl = c + ((lane % 4) >> 1)
        if cutlass.const_expr(self.cfg.uneven):
            cl = cutlass.min(cl, self.cfg.chunks - 1)
        return cl

    @property
    def token_words(self) -> int:
        """32-bit registers of one chunk's token operand."""
        return 8

    @property
    def keeps_tokens(self) -> bool:
        """Whether the first pass's token operands stay in registers across the expert's items
        (a long K slice would need too many: then each item loads them)."""
        return self.cfg.stages > 0 and self.cfg.per_warp * self.token_words <= MAX_TOKEN_REGS

    @cute.jit
    def load_tokens(self, rTok, mX, xg, warp, lane, row):
        """The entry's token operands of this warp's K slice, kept while the entry is."""
        cfg = self.cfg
        for q in cutlass.range_constexpr(cfg.parts):  # in each part's steps (what the mainloop takes)
            for i, n in self.k_steps(q):
                k = q * cfg.part_chunks + i  # chunk of the warp's slice
                c = warp * cfg.per_warp + k
                if cutlass.const_expr(cfg.uneven):  # the last warp's missing chunks: loaded, never used
                    c = cutlass.min(c, cfg.chunks - 1)
                tok = self.token_operand(mX, xg, row, c, n, lane)
                for w in cutlass.range_constexpr(n * self.token_words):
                    rTok[k * self.token_words + w] = Uint32(tok[w])

    @cute.jit
    def mainloop(self, acc, mX, xg, rTok, w_args, q, warp, lane, row):
        """Part ``q`` of this warp's K slice of the item's two 16-row tiles (weights from a ring
        slot, or from global memory without a ring) times up to 8 pairs (tokens from ``rTok``,
        or loaded now when the slice is too long to keep them), accumulated into ``acc``."""
        cfg = self.cfg
        cnt = cfg.part_size(q)
        for i, n in self.k_steps(q):
            k = q * cfg.part_chunks + i  # chunk of the warp's slice; i: of the ring slot
            c = warp * cfg.per_warp + k
            if not cfg.uneven or c < cfg.chunks:
                if cutlass.const_expr(rTok is None):
                    fresh = self.token_operand(mX, xg, row, c, n, lane)
                    tok = [Uint32(fresh[w]) for w in range(n * self.token_words)]
                else:
                    tok = [rTok[k * self.token_words + w] for w in range(n * self.token_words)]
                if cutlass.const_expr(cfg.stages > 0):  # a lone chunk: the last of an odd count in the slot
                    rA, rS = self.fragment(*w_args, i, n, cnt % 2 == 1 and i == cnt - 1, warp, lane)
                else:
                    rA, rS = self.fragment_global(*w_args, c, n, lane)
                if cutlass.const_expr(cfg.uneven and n > 1):  # the last warp may have the step's first chunk only:
                    keep = (c + 1 < cfg.chunks) | (lane % 4 < 2)  # zero scales for the other (unwritten ring)
                    rS = [[cutlass.select_(keep, w, Uint32(0)) for w in ws] for ws in rS]
                for j in cutlass.range_constexpr(TILES_PER_UNIT):
                    self.tile_mma(acc, j, rA[j], rS[j], tok, n, lane)

    # -- tier: operands and MMA ----------------------------------------------------------------
    def token_tensor(self, rows):
        """Kernel argument of the token operand: FC1 the tokens, FC2 the intermediate
        (SM90: both as int32 words of bf16/fp16 pairs)."""
        return make_fake_compact_tensor(Int32, (rows, self.cfg.k // 2), stride_order=(1, 0), assumed_align=16)

    def intermediate_tensor(self, pairs):
        """FC1's output argument: the activated intermediate per pair, in the token dtype."""
        return make_fake_compact_tensor(TOKEN_DTYPES[self.cfg.dtype][0], (pairs, self.cfg.out_cols),
                                        stride_order=(1, 0), assumed_align=16)

    @staticmethod
    def operand_scale(dtype: str) -> float:
        """What the epilogue multiplies back (the dequantized weights carry a pre-scale)."""
        return EPILOGUE_SCALE[dtype]

    @cute.jit
    def token_operand(self, mX, xg, row, c, n, lane):
        """The lane's tokens of the K step at chunk ``c`` as the B words of its ``4 n`` k16 steps,
        in the weights' K order (halves of words ``i``, ``i + 2``, ``i = 4 (s // 2) + s % 2``):
        one chunk, K ``[16 t, 16 t + 16)``; two, K ``[32 (t % 2), + 32)`` of chunk ``c + t // 2``.
        Zero where K is at or beyond ``k_valid`` (FC2: TensorRT-LLM's padding columns)."""
        cfg = self.cfg
        t = lane % 4
        if cutlass.const_expr(n == 2):
            cl = self.step_chunk(c, n, lane)
            src = cute.zipped_divide(mX, (1, 16))[(None, (row, 2 * cl + (t & 1)))]
            k0 = CHUNK_K * cl + 32 * (t & 1)
        else:
            src = cute.zipped_divide(mX, (1, 8))[(None, (row, 4 * c + t))]
            k0 = CHUNK_K * c + 16 * t
        rX = cute.make_rmem_tensor_like(src)
        cute.autovec_copy(src, rX)
        x = cute.recast_tensor(rX, Uint32)
        words = []
        for s in cutlass.range_constexpr(4 * n):
            i = 4 * (s // 2) + s % 2
            for sel in (0x5410, 0x7632):  # low halves of words i, i + 2; then their high halves
                words.append(prmt(Uint32(x[i]), Uint32(x[i + 2]), Uint32(sel)))
        if cutlass.const_expr(cfg.k_valid < cfg.k):  # per 16-K block of the lane (8 words each)
            live = [k0 + 16 * b < cfg.k_valid for b in range(n)]
            words = [cutlass.select_(live[w // 8], v, Uint32(0)) for w, v in enumerate(words)]
        return words

    @cute.jit
    def fragment_global(self, mCodes, mScales, local, unit, c, n, lane):
        """:meth:`fragment`'s registers read from global memory (no ring)."""
        cfg = self.cfg
        g, t = lane // 4, lane % 4
        cl = self.step_chunk(c, n, lane)
        gA = cute.zipped_divide(mCodes, (1, 2 * n))
        codes, scales = [], []
        for j in cutlass.range_constexpr(TILES_PER_UNIT):
            words, sw = [], []
            for rh in cutlass.range_constexpr(2):
                row = self.weight_row(unit, j, g + 8 * rh)
                v = row * (cfg.k // 16) + 4 * c + t
                if cutlass.const_expr(n == 2):
                    v = row * (cfg.k // 32) + 2 * cl + (t & 1)
                src = gA[(None, (local, v))]
                r = cute.make_rmem_tensor_like(src)
                cute.autovec_copy(src, r)
                words += [Uint32(r[w]) for w in range(2 * n)]
                sw.append(Uint32(mScales[local, scale_word(row, cl, cfg.chunks, cfg.scale_layout)]))
            codes.append(words)
            scales.append(sw)
        return codes, scales

    @cute.jit
    def fragment(self, sA, sA4, sS, st, i, n, lone, warp, lane):
        """Per tile, the lane's code words of the K step at chunk ``i`` from ring slot ``st`` —
        two chunks: bytes ``[16 (t % 2), + 16)`` of chunk ``i + t // 2`` of rows ``g`` and
        ``g + 8`` (two 128-bit loads); one: bytes ``[8 t, 8 t + 8)`` (two 64-bit loads) — and the
        two rows' scale words of the lane's chunk (one 64-bit load)."""
        g, t = lane // 4, lane % 4
        codes, scales = [], []
        for j in cutlass.range_constexpr(TILES_PER_UNIT):
            words = []
            for rh in cutlass.range_constexpr(2):
                row = g + 8 * rh
                if cutlass.const_expr(n == 2):  # chunk parity t // 2, half t % 2: slot t ^ (row // 2) % 4
                    src = sA4[None, ring_slot(row, t >> 1, t & 1), row, j, i >> 1, warp, st]
                else:
                    src = sA[None, t % 2, ring_slot(row, i, t >> 1, lone), row, j, i >> 1, warp, st]
                r = cute.make_rmem_tensor_like(src)
                cute.autovec_copy(src, r)
                words += [Uint32(r[w]) for w in range(2 * n)]
            codes.append(words)
            ic = i  # the lane's chunk in the ring (a missing second one: unwritten, its scales zeroed)
            if cutlass.const_expr(n == 2):
                ic = i + (t >> 1)
            src = sS[None, g >> 2, g & 3, j, ic, warp, st]  # rows g, g + 8
            rs = cute.make_rmem_tensor_like(src)
            cute.autovec_copy(src, rs)
            scales.append([Uint32(rs[0]), Uint32(rs[1])])
        return codes, scales

    @cute.jit
    def tile_mma(self, acc, j, rA, rS, tok, n, lane):
        """Tile ``j`` x one K step of ``n`` chunks: the lane's scales are bytes of its rows'
        words (one chunk: byte ``t``; two: bytes ``2 (t % 2)`` and ``2 (t % 2) + 1``, one per
        16-K block); code word ``s // 2`` of each row gives step ``s``'s nibble pairs
        ``(p, p + 4)``, ``p = 2 (s % 2) + (0, 1)``; ``4 n`` MMAs."""
        t = Uint32(lane % 4)
        blocks = [t] if n == 1 else [(t & Uint32(1)) * Uint32(2) + Uint32(b) for b in range(2)]
        scales = [scale_pair(prmt(rS[0], rS[1], b | ((b + Uint32(4)) << Uint32(4))), self.cfg.dtype) for b in blocks]
        halves = [self.dequant(w) for w in rA]  # rows g: words 0 .. 2n-1; g + 8: the next 2n
        for s in cutlass.range_constexpr(4 * n):
            wg, wg8, p = halves[s // 2], halves[2 * n + s // 2], 2 * (s % 2)
            a = [wg[p], wg8[p], wg[p + 1], wg8[p + 1]]
            a = [mul_half2(a[r], scales[s // 4][r % 2], self.cfg.dtype) for r in range(4)]
            c4 = mma_m16n8k16(a, [tok[2 * s], tok[2 * s + 1]], [acc[4 * j + v] for v in range(4)], self.cfg.dtype)
            for v in cutlass.range_constexpr(4):
                acc[4 * j + v] = c4[v]

    @cute.jit
    def dequant(self, w):
        """A code word -> the 4 half2 of its nibble pairs ``(p, p + 4)``, p = 0..3 (E2M1 bits in
        the half's exponent/mantissa, sign at bit 15; see the intrinsics' operand pre-scale):
        one LOP3 and at most one shift each, plus one shared shift (:func:`e2m1_pair_plan`)."""
        d, plan = e2m1_pair_plan(self.cfg.dtype)
        side = {1: w << Uint32(d), -1: w >> Uint32(d)}
        return [_shifted((w & Uint32(wm)) | (side[sd] & Uint32(vm)), sh) for wm, sd, vm, sh in plan]

    # -- reduction over the K split and epilogue ----------------------------------------------
    def epilogue_parts(self) -> list:
        """The epilogue split into independent parts, each one (output block, pair parity): its
        accumulator indices (gated: gate rows g, g+8, then the matching up rows)."""
        if self.cfg.activation == "swiglu":
            return [(0, p, (p, 2 + p, 4 + p, 6 + p)) for p in range(2)]
        return [(j, p, (4 * j + p, 4 * j + 2 + p)) for j in range(TILES_PER_UNIT) for p in range(2)]

    @cute.jit
    def reduce_store(self, acc, buf, warp, lane, sRed, rScal, rPair, rWt, mOut, unit, base, n):
        """Sum the K split over the warps (in warp order) and store: the epilogue's parts are
        spread over the warps. With ``sRed`` double-buffered one barrier per item suffices; a
        single buffer is rewritten only after every warp has read the previous item's sums."""
        cfg = self.cfg
        if cutlass.const_expr(cfg.warps > 1):
            if cutlass.const_expr(cfg.red_buffers == 1):
                cute.arch.sync_threads()
            for v in cutlass.range_constexpr(4 * TILES_PER_UNIT):
                sRed[v, lane, warp, buf] = acc[v]
            cute.arch.sync_threads()
        else:
            cute.arch.sync_warp()
        pre = Float32(self.operand_scale(cfg.dtype))
        for q, (j, p, idx) in enumerate(self.epilogue_parts()):
            if warp == q % cfg.warps:
                tot = []
                for v in idx:
                    if cutlass.const_expr(cfg.warps == 1):
                        tot.append(acc[v])
                    else:
                        x = sRed[v, lane, 0, buf]
                        for w in cutlass.range_constexpr(1, cfg.warps):
                            x = x + sRed[v, lane, w, buf]
                        tot.append(x)
                valid = base + 2 * (lane % 4) + p < n
                self.epilogue(tot, j, p, pre, rScal, rWt, mOut, unit, rPair[p], valid, lane)

    @cute.jit
    def epilogue(self, tot, j, p, pre, rScal, rWt, mOut, unit, pair, valid, lane):
        """One part: global scales, activation (FC1) or router weight (FC2), then rows g and g+8
        (lane ``4 g + t``) of pair ``2 t + p`` of one 16-column output block are stored."""
        cfg = self.cfg
        if cutlass.const_expr(cfg.activation == "swiglu"):
            g0, g1 = rScal[0] * pre, rScal[1] * pre
            vals = [self.swiglu(tot[h] * g0, tot[2 + h] * g1) for h in range(2)]
            self.store(mOut, rScal, unit, vals, pair, valid, lane)
        else:
            vals = []
            for h in cutlass.range_constexpr(2):
                x = tot[h] * (rScal[j] * pre)
                if cutlass.const_expr(cfg.activation == "relu2"):
                    x = cute.arch.fmax(x, Float32(0.0))
                    x = x * x
                elif cutlass.const_expr(cfg.phase == "fc2"):
                    x = x * rWt[p]
                vals.append(x)
            self.store(mOut, rScal, unit * TILES_PER_UNIT + j, vals, pair, valid, lane)

    @property
    def store(self):
        """Where the epilogue puts a block: FC2's FP32 rows (every tier) or the tier's intermediate."""
        return self.store_block if self.cfg.phase == "fc2" else self.store_intermediate

    @cute.jit
    def store_intermediate(self, mOut, rScal, blk, vals, pair, valid, lane):
        """FC1 (SM90): the activated intermediate in the token dtype."""
        self.store_block(mOut, rScal, blk, vals, pair, valid, lane)

    @cute.jit
    def store_block(self, mOut, rScal, blk, vals, pair, valid, lane):
        """Output block ``blk`` of ``pair`` (:meth:`column`): ``vals`` are MMA rows g and g + 8,
        in FP32 (FC2) or the token dtype (FC1)."""
        out_t = Float32 if self.cfg.phase == "fc2" else TOKEN_DTYPES[self.cfg.dtype][0]
        if valid:
            for h in cutlass.range_constexpr(2):
                mOut[pair, self.column(blk, lane // 4 + 8 * h)] = out_t(vals[h])

    @cute.jit
    def swiglu(self, gate, up):
        cfg = self.cfg
        if cutlass.const_expr(cfg.limit is not None):
            gate = cute.arch.fmin(gate, Float32(cfg.limit))
            up = cute.arch.fmax(cute.arch.fmin(up, Float32(cfg.limit)), Float32(-cfg.limit))
        sig = Float32(1.0) / (Float32(1.0) + cute.math.exp(-Float32(cfg.alpha) * gate))
        return gate * sig * (up + Float32(cfg.beta))


class SlotSum:
    """The layer output: ``out[t] = sum_k fc2[t k]`` over the token's local slots (ids outside
    the rank's experts are skipped, so a token with none gets 0). A programmatic dependent launch
    after FC2. Four lanes share 4 columns: each sums a contiguous quarter of the slots (all its
    rows loaded at once), then the quarters are added in order — a fixed order, so results are
    bitwise reproducible."""

    family = "moe_decode_slot_sum"
    threads = 256
    groups = 4  # lanes per 4 columns (a power of two)

    def __init__(self, config: GemvConfig):
        self.cfg = config  # the FC2 config: hidden size, top-k, local experts, dtype

    def compile(self, target: Target, *, tvm_ffi: bool):
        cfg = self.cfg
        p, m = cute.sym_int32(), cute.sym_int32()
        args = (
            make_fake_compact_tensor(Int32, (p,), assumed_align=4),
            make_fake_compact_tensor(Float32, (p, cfg.out_cols), stride_order=(1, 0), assumed_align=16),
            make_fake_compact_tensor(TOKEN_DTYPES[cfg.dtype][0], (m, cfg.out_cols), stride_order=(1, 0),
                                     assumed_align=8),
            make_fake_stream(),
        )
        return cute.compile(self, *args, options=compile_options(target, tvm_ffi))

    @cute.jit
    def __call__(self, mIds, mPart, mOut, stream):
        per_cta = self.threads // self.groups
        vecs = mOut.shape[0] * (self.cfg.out_cols // 4)
        self.kernel(mIds, mPart, mOut).launch(grid=[(vecs + per_cta - 1) // per_cta, 1, 1],
                                              block=[self.threads, 1, 1], stream=stream, use_pdl=True)

    @cute.kernel
    def kernel(self, mIds, mPart, mOut):
        cfg = self.cfg
        tidx, _, _ = cute.arch.thread_idx()
        bidx, _, _ = cute.arch.block_idx()
        per_row = cfg.out_cols // 4
        per_group = -(-cfg.top_k // self.groups)
        v = bidx * (self.threads // self.groups) + tidx // self.groups
        g = tidx % self.groups
        live = v < mOut.shape[0] * per_row
        tok = cutlass.min(v // per_row, mOut.shape[0] - 1)
        col = v - (v // per_row) * per_row
        # this lane's slots (the last quarter may be short: clamped, never added); the ids do not
        # depend on FC2, so they are read before waiting for it
        slots = [g * per_group + i for i in range(per_group)]
        rows_of = [tok * cfg.top_k + cutlass.min(k, cfg.top_k - 1) for k in slots]
        les = [mIds[q] - cfg.expert_offset for q in rows_of]
        cute.arch.griddepcontrol_wait()  # FC2's rows are complete and visible
        rows = []
        for i in cutlass.range_constexpr(per_group):  # a skipped slot's row is read, not added
            src = cute.zipped_divide(mPart, (1, 4))[(None, (rows_of[i], col))]
            r = cute.make_rmem_tensor_like(src)
            cute.autovec_copy(src, r)
            rows.append(r)
        part = [Float32(0.0)] * 4
        for i in cutlass.range_constexpr(per_group):
            mine = (les[i] >= 0) & (les[i] < cfg.experts) & (slots[i] < cfg.top_k)
            for c in cutlass.range_constexpr(4):
                part[c] = cutlass.select_(mine, part[c] + rows[i][c], part[c])
        lead = cute.arch.lane_idx() - g
        acc = cute.make_rmem_tensor(cute.make_layout(4), Float32)
        for c in cutlass.range_constexpr(4):
            acc[c] = Float32(cute.arch.shuffle_sync(part[c], lead))
            for j in cutlass.range_constexpr(1, self.groups):
                acc[c] = acc[c] + Float32(cute.arch.shuffle_sync(part[c], lead + j))
        if live and g == 0:
            dst = cute.zipped_divide(mOut, (1, 4))[(None, (tok, col))]
            rO = cute.make_rmem_tensor_like(dst)
            rO.store(acc.load().to(TOKEN_DTYPES[cfg.dtype][0]))
            cute.autovec_copy(rO, dst)


def _shifted(word, d: int):
    """``word`` shifted left by ``d`` bits (right for negative ``d``; trace-time amount)."""
    if d > 0:
        return word << Uint32(d)
    return word >> Uint32(-d) if d < 0 else word


def _vec(t):
    """A 16-byte vector (4 int32) as the rank-1 tensor cp.async's copy atom takes."""
    return cute.make_tensor(t.iterator, cute.make_layout(4))


def phase_configs(hidden: int, intermediate: int, experts: int, activation, top_k: int, dtype: str,
                  target: Target, expert_offset: int = 0, *, mma: str,
                  scale_layout: str = "swizzled") -> tuple[GemvConfig, GemvConfig]:
    """The (FC1, FC2) kernel configs of a layer on ``target`` for a tier's ``mma``, over the
    stored shape (``N1 = pad128(g I)`` FC1 rows, ``C = N1 / g`` FC2 columns); CTAs per SM and
    ring stages sized to the SM's shared memory (none where one item's weights exceed it: then
    the warps read them from global memory as used). (:func:`trtllm_b12x.kernels.decode.phase_configs`
    picks ``mma`` from the target.)"""
    n1 = stored_fc1_rows(intermediate, activation.gated)
    cols = n1 // (2 if activation.gated else 1)
    common = dict(dtype=dtype, intermediate=intermediate, experts=experts, expert_offset=expert_offset, top_k=top_k,
                  max_pairs=TOKENS_BOUND * top_k, mma=mma, scale_layout=scale_layout)
    fc1 = GemvConfig("fc1", k=hidden, rows=n1, out_cols=cols, activation=activation.kind, alpha=activation.alpha,
                     beta=activation.beta, limit=activation.limit, **common)
    fc2 = GemvConfig("fc2", k=cols, rows=hidden, out_cols=hidden, **common)

    def sized(cfg):
        # at least two ring slots (loads overlap compute), then the most CTAs, then the fewest
        # parts per item, then two split-K buffers (one only where it makes room for more CTAs)
        best, best_key = None, None
        for parts in (p for p in range(1, MAX_PARTS + 1) if valid_parts(cfg.per_warp, p)):
            for bufs in (2, 1):
                c = dataclasses.replace(cfg, red_buffers=bufs, parts=parts)
                ctas, stages = occupancy(c.warps, c.stage_bytes, c.fixed_smem, target.smem_per_sm)
                key = (min(stages, 2), ctas, -parts, bufs)
                if best_key is None or key > best_key:
                    best, best_key = dataclasses.replace(c, stages=stages, ctas_per_sm=ctas), key
        return best  # where nothing fits, one part (no ring): its key ties every other part count's

    return sized(fc1), sized(fc2)


# -- host side ---------------------------------------------------------------------------------
def _words(t: torch.Tensor, experts: int, name: str) -> torch.Tensor:
    """A stored weight tensor as int32 words per expert: a view (no copy) or a clear error."""
    try:
        return t.view(torch.uint8).view(experts, -1).view(torch.int32)
    except RuntimeError as err:
        raise ValueError(f"fused decode: MoEWeights.{name} (shape {tuple(t.shape)}, strides {t.stride()}) must be "
                         f"contiguous and 4-byte aligned to be read in place: {err}") from None


class FusedDecode:
    """The decode kernel bound to one runner's weights: ``fn(x, ids, weights, out)``.

    The kernels read the bundle's tensors (TensorRT-LLM's CUTLASS layout) in place: this object
    holds views of them, the per-expert scalars and the workspaces. Kernels compile (or load
    from the cache) on first use per (dtype, top_k); the workspace is allocated once per
    (dtype, top_k) for the largest decode batch, so its address is stable under CUDA-graph
    capture. Tier variants override the ``# -- tier`` members.
    """

    tier = "sm90"
    kernel_cls = DecodeGemvSm90
    tokens_bound = TOKENS_BOUND  # the runner checks that this covers its decode range

    def __init__(self, runner, *, cache: KernelCache | None = None, target: Target | None = None):
        w, par, act = runner.weights, runner.parallel, runner.activation
        if (why := self.shape_reason(w)) is not None:
            raise ValueError(f"fused decode: {why}")
        self.target = target or current_target(w.device)
        self.weights, self.parallel, self.activation = w, par, act
        self.cache = cache or default_cache()
        self.tvm_ffi = have_tvm_ffi()
        e = w.num_experts
        self.cols = w.fc2_cols  # C: the intermediate's stored width (FC2's K)
        self.fc1 = (_words(w.w13, e, "w13"), _words(w.w13_scale, e, "w13_scale"))
        self.fc2 = (_words(w.w2, e, "w2"), _words(w.w2_scale, e, "w2_scale"))
        self.fc1_scalars, self.fc2_scalars = self.expert_scalars(w)
        self._bound: dict = {}
        self._sms: int | None = None

    # -- tier ----------------------------------------------------------------------------------
    @classmethod
    def shape_reason(cls, w) -> str | None:
        """Why this tier cannot take these weights, or None."""
        if w.hidden_size % CHUNK_K:
            return f"hidden size {w.hidden_size} is not a multiple of {CHUNK_K} (tier {cls.tier})"
        if w.num_experts > MAX_EXPERTS:
            return f"{w.num_experts} local experts; supported: up to {MAX_EXPERTS}"
        for name in ("w13", "w13_scale", "w2", "w2_scale"):
            if (ptr := getattr(w, name).data_ptr()) % 16:
                return (f"MoEWeights.{name} starts at address {ptr:#x}; the kernels read it in 16-byte vectors "
                        "(an allocation's start, or an expert slice of one, is aligned)")
        return None

    @staticmethod
    def expert_scalars(w) -> tuple[torch.Tensor, torch.Tensor]:
        """``[E, EXPERT_SCALARS]`` per phase: the weight globals (W4A16: tokens unscaled)."""
        one = torch.ones_like(w.w2_global)
        fc1 = w.w13_global if w.gated else w.w13_global.expand(-1, 2)
        return (torch.stack([fc1[:, 0], fc1[:, 1], one, one], 1).contiguous(),
                torch.stack([w.w2_global, w.w2_global, one, one], 1).contiguous())

    def intermediate_bytes(self, pairs: int, dtype: torch.dtype) -> int:
        return pairs * self.cols * dtype.itemsize

    def held_bytes(self) -> dict[str, int]:
        """Device bytes this object holds of its own (the weights are the bundle's, read in
        place): the per-expert scalars and the workspaces allocated so far (one per dtype and top-k)."""
        return {"scalars": nbytes(self.fc1_scalars, self.fc2_scalars),
                "workspace": nbytes(*(b[2] for b in self._bound.values()))}

    def intermediate_view(self, buf: torch.Tensor, pairs: int, dtype: torch.dtype) -> torch.Tensor:
        return buf.view(dtype)[: pairs * self.cols].view(pairs, self.cols)

    def kernel_tokens(self, x: torch.Tensor, inter: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The token operands of FC1 and FC2 as the kernels take them."""
        return x.view(torch.int32), inter.view(torch.int32)

    # -------------------------------------------------------------------------------------------
    def configs(self, dtype: str, top_k: int) -> tuple[GemvConfig, GemvConfig]:
        w = self.weights
        return phase_configs(w.hidden_size, w.intermediate_size, w.num_experts, self.activation, top_k, dtype,
                             self.target, self.parallel.expert_offset, mma=self.kernel_cls.mma,
                             scale_layout=w.scale_layout)

    def compile_all(self, dtype: str, top_k: int) -> list:
        """Compile (or load) both phases for (dtype, top_k) and allocate their workspace, so a
        decode call (perhaps a CUDA-graph warm-up) neither compiles nor allocates."""
        key = (dtype, top_k)
        if key not in self._bound:
            cfgs = self.configs(dtype, top_k)
            kernels = [compile_gemv(self.kernel_cls(cfg), self.target, cache=self.cache, tvm_ffi=self.tvm_ffi)
                       for cfg in cfgs]
            kernels.append(compile_slot_sum(cfgs[1], self.target, cache=self.cache, tvm_ffi=self.tvm_ffi))
            tdt = TOKEN_DTYPES[dtype][1]
            ws = torch.zeros(self.workspace_bytes(TOKENS_BOUND - 1, top_k, tdt), dtype=torch.uint8,
                             device=self.weights.device)
            self._bound[key] = (kernels, cfgs, ws, {})
        return self._bound[key][0]

    def grid(self, cfg: GemvConfig, pairs: int) -> int:
        """CTAs of a phase's persistent grid: no more than stay resident (static work ranges
        must all run at once), no more than the items of ``pairs`` routed pairs."""
        if self._sms is None:
            self._sms = sm_count(self.weights.device)
        return max(1, min(cfg.units * min(pairs, cfg.experts), cfg.ctas_per_sm * self._sms))

    # workspace: [intermediate (per pair) | FP32 rows of FC2 (per pair)]
    def _sizes(self, pairs: int, dtype: torch.dtype) -> tuple[int, int]:
        return round_up(self.intermediate_bytes(pairs, dtype), 256), pairs * self.weights.hidden_size * 4

    def workspace_bytes(self, num_tokens: int, top_k: int, dtype: torch.dtype) -> int:
        """Scratch bytes for a batch (any contents: every byte read is written first in the call)."""
        return sum(self._sizes(num_tokens * top_k, dtype))

    def _views(self, ws: torch.Tensor, pairs: int, dtype: torch.dtype):
        ni, npart = self._sizes(pairs, dtype)
        inter = self.intermediate_view(ws[:ni], pairs, dtype)
        part = ws[ni : ni + npart].view(torch.float32).view(pairs, -1)
        return inter, part

    def __call__(self, x, ids, weights, out, workspace: torch.Tensor | None = None) -> None:
        m, top_k = ids.shape
        if m == 0:
            return
        dname = _DTYPE_NAMES[x.dtype]
        if (dname, top_k) not in self._bound:
            self.compile_all(dname, top_k)
        (k1, k2, k3), (c1, c2), own, views = self._bound[(dname, top_k)]
        if workspace is None:
            if m not in views:
                views[m] = self._views(own, m * top_k, x.dtype)
            inter, part = views[m]
        else:
            need = self.workspace_bytes(m, top_k, x.dtype)
            if workspace.dtype != torch.uint8 or workspace.numel() < need or workspace.device != x.device:
                raise ValueError(f"workspace: expected a uint8 tensor of at least {need} bytes on {x.device}, got "
                                 f"{workspace.dtype} with {workspace.numel()} elements on {workspace.device}")
            inter, part = self._views(workspace, m * top_k, x.dtype)
        flat_ids, flat_w = ids.reshape(-1), weights.reshape(-1)
        x1, x2 = self.kernel_tokens(x, inter)
        pairs = m * top_k
        launch(k1, flat_ids, flat_w, x1, *self.fc1, self.fc1_scalars, inter, self.grid(c1, pairs))
        launch(k2, flat_ids, flat_w, x2, *self.fc2, self.fc2_scalars, part, self.grid(c2, pairs))
        launch(k3, flat_ids, part, out)


_DTYPE_NAMES = {tdt: name for name, (_, tdt) in TOKEN_DTYPES.items()}


def _compiled(kernel, cfg: GemvConfig, target: Target, cache: KernelCache | None, tvm_ffi: bool | None):
    tvm_ffi = have_tvm_ffi() if tvm_ffi is None else tvm_ffi
    key = CompileKey(kernel.family, target.name, cfg, tvm_ffi)
    return (cache or default_cache()).get(key, lambda: kernel.compile(target, tvm_ffi=tvm_ffi))


def compile_slot_sum(fc2: GemvConfig, target: Target, *, cache: KernelCache | None = None,
                     tvm_ffi: bool | None = None):
    """The slot sum after FC2 (tier-neutral), compiled for ``target`` (or loaded from the cache)."""
    return _compiled(SlotSum(fc2), fc2, target, cache, tvm_ffi)


def compile_gemv(kernel: DecodeGemvSm90, target: Target, *, cache: KernelCache | None = None,
                 tvm_ffi: bool | None = None):
    """One decode phase's kernel (of any tier) compiled for ``target`` (or loaded from the cache)."""
    return _compiled(kernel, kernel.cfg, target, cache, tvm_ffi)
