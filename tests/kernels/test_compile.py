"""Compile every quantize variant for every target on the CPU and read its SASS."""

import dataclasses

import pytest

from trtllm_b12x.arch import TARGETS, UnsupportedArchError, get_target
from trtllm_b12x.kernels.cache import KernelCache
from trtllm_b12x.kernels.quantize import QuantizeConfig, get_kernel
from trtllm_b12x.kernels.sass import analyze_cubin
from trtllm_b12x.models import PRESETS

pytestmark = pytest.mark.compile


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return KernelCache(root=tmp_path_factory.mktemp("kc"), use_disk=False)


@pytest.mark.parametrize("arch", sorted(TARGETS))
@pytest.mark.parametrize("layout", ["linear", "swizzled"])
@pytest.mark.parametrize("hidden, dtype", [(2048, "bfloat16"), (2688, "float16")])
def test_quantize_sass(cache, arch, layout, hidden, dtype):
    ck = get_kernel(QuantizeConfig(hidden, dtype, layout), get_target(arch), cache=cache)
    sass = analyze_cubin(ck.cubin)
    hw_fp4 = sass.count("F2FP.SATFINITE.E2M1.F32.PACK_AB_MERGE_C")
    if arch == "sm_90a":
        assert hw_fp4 == 0  # Hopper has no FP4 conversion: software path
        assert sass.count("FSETP.GE.AND") + sass.count("FSETP.GT.AND") >= 16 * 7
    else:
        assert hw_fp4 == 8  # 16 elements per thread, two per instruction
    assert sass.count("F2FP.SATFINITE.E4M3.F32.PACK_AB_MERGE_C") == 1  # one block scale per thread
    assert sass.count("LDG.E.128") == 2  # 32 bytes of activations in two 16-byte loads
    assert sass.count("STG.E.64") == 1  # 16 codes in one 8-byte store
    assert sass.spills == 0 and sass.resources.local_bytes == 0
    assert sass.resources.registers <= 64 and sass.resources.shared_bytes == 0


def test_unsupported_targets_are_named():
    with pytest.raises(UnsupportedArchError, match="supported: sm_90a"):
        get_target("sm_100a")
    with pytest.raises(ValueError, match="multiple of 16"):
        QuantizeConfig(100)
    with pytest.raises(ValueError, match="supported: \\('linear', 'swizzled'\\)"):
        QuantizeConfig(128, sf_layout="mma")


@pytest.mark.parametrize("arch", sorted(TARGETS))
def test_read_ceiling_streams_16_byte_vectors(cache, arch):
    from trtllm_b12x.kernels.cache import CompileKey
    from trtllm_b12x.kernels.stream import StreamConfig, StreamExperts

    cfg = StreamConfig(words_a=2 * 768 * 2048 // 8, words_b=2 * 768 * 2048 // 64)
    k = StreamExperts(cfg)
    target = get_target(arch)
    ck = cache.get(CompileKey(k.family, arch, cfg, False), lambda: k.compile(target, tvm_ffi=False))
    sass = analyze_cubin(ck.cubin)
    assert sass.count("LDG.E.128") == 2 * cfg.unroll  # data branch and scale branch
    assert sass.spills == 0


def _decode_sass(cache, name, phase, arch, dtype="bfloat16"):
    from trtllm_b12x.kernels.decode import compile_phase, phase_configs
    from trtllm_b12x.models import PRESETS

    s = PRESETS[name]
    target = get_target(arch)
    cfg = phase_configs(s.hidden_size, s.intermediate_size, s.num_experts, s.default_activation(), s.top_k, dtype,
                        target)[("fc1", "fc2").index(phase)]
    ck = compile_phase(cfg, target, cache=cache, tvm_ffi=True)
    return cfg, analyze_cubin(ck.cubin), target


@pytest.mark.parametrize("name", ["qwen3-30b-a3b", "nemotron-3-super"])
@pytest.mark.parametrize("phase", ["fc1", "fc2"])
def test_decode_kernel_sass(cache, name, phase):
    """The SM90 decode phases: tensor-core MMA from 16-byte code vectors staged by cp.async,
    no spills, registers that let the persistent grid's CTAs all be resident."""
    cfg, sass, _ = _decode_sass(cache, name, phase, "sm_90a")
    per_warp = cfg.per_warp
    # two 16-row tiles x 4 K steps per chunk: one pass body (an item has at most 8 pairs)
    assert sass.count("HMMA.16816.F32.BF16") == 2 * 4 * per_warp
    # the ring's copies: 2 tiles x the warp's chunks, issued for the first stages and in the loop
    assert sass.count("LDGSTS") >= 2 * per_warp * (cfg.stages + 1)
    assert sass.spills == 0 and sass.resources.local_bytes == 0
    assert sass.resources.registers * 32 * cfg.warps * cfg.ctas_per_sm <= 65536


SM120_DECODE = [(name, phase, arch, dtype) for name in sorted(PRESETS) for phase in ("fc1", "fc2")
                for arch in ("sm_120a", "sm_121a") for dtype in ("bfloat16", "float16")]


@pytest.mark.parametrize("name, phase, arch, dtype", SM120_DECODE)
def test_sm120_decode_kernel_sass(cache, name, phase, arch, dtype):
    """Every SM120 decode variant: the block-scaled FP4 MMA (one per tile and chunk), no BF16
    MMA, hardware FP4 conversions for the in-kernel quantization (FC1), no spills, within the
    part's registers and shared memory."""
    cfg, sass, target = _decode_sass(cache, name, phase, arch, dtype)
    per_warp = cfg.per_warp
    assert sass.count("OMMA.SF.16864.F32.E2M1.E2M1.UE4M3.4X") == 2 * per_warp
    assert sass.count("HMMA") == 0
    if phase == "fc1":  # tokens: 2 x 4 cvt per chunk; the requantized intermediate: one per epilogue part
        parts = 2 if PRESETS[name].activation == "swiglu" else 4
        assert sass.count("F2FP.SATFINITE.E2M1.F32.PACK_AB_MERGE_C") == 2 * 4 * per_warp + parts
    else:  # FC2 consumes the NVFP4 intermediate as stored
        assert sass.count("F2FP.SATFINITE.E2M1.F32.PACK_AB_MERGE_C") == 0
    assert sass.spills == 0 and sass.resources.local_bytes == 0
    assert sass.resources.registers * 32 * cfg.warps * cfg.ctas_per_sm <= 65536
    assert cfg.smem_bytes <= target.smem_per_block


def test_k_splits_evenly_or_unevenly_but_never_over_one_warp():
    """A prime chunk count (29, or Gemma-class I = 704: 11) splits unevenly (the last warp takes
    fewer chunks) instead of putting every item on one warp; counts that split well split evenly."""
    from trtllm_b12x.kernels.moe_decode import CHUNKS_PER_WARP, copy_groups, split_k

    assert split_k(30) == (6, 5) and split_k(32) == (8, 4) and split_k(12) == (3, 4)
    assert split_k(29) == (8, 4) and split_k(11) == (3, 4)  # 4 + 4 + 3, 7 x 4 + 1
    for chunks in range(1, 120):
        warps, per = split_k(chunks)
        assert (warps - 1) * per < chunks <= warps * per
        assert per <= 2 * CHUNKS_PER_WARP or warps == 8
    assert copy_groups(7) == [(0, 4), (4, 2), (6, 1)] and copy_groups(8) == [(0, 4), (4, 4)]


SHAPES_NO_PRESET = ["2048,704,64,8,swiglu", "4096,14336,8,2,swiglu"]


@pytest.mark.parametrize("arch", sorted(TARGETS))
@pytest.mark.parametrize("name", sorted(PRESETS) + SHAPES_NO_PRESET)
def test_every_phase_overlaps_its_loads_in_a_ring_of_at_least_two_slots(arch, name):
    """Where a whole K slice's stage does not fit the SM twice, an item's slice takes several
    ring slots (parts), so the next part's loads overlap this one's math; a config that fits
    keeps one part. Parts cover the slice exactly, and the CTA fits its part's shared memory."""
    from trtllm_b12x.kernels.decode import phase_configs
    from trtllm_b12x.models import parse_shape

    s = PRESETS[name] if name in PRESETS else parse_shape(name)
    target = get_target(arch)
    for cfg in phase_configs(s.hidden_size, s.intermediate_size, s.num_experts, s.default_activation(), s.top_k,
                             "bfloat16", target):
        _assert_ring(cfg, target)


def _assert_ring(cfg, target):
    """At least two ring slots, parts covering the slice exactly, shared memory that fits, and
    more than one part only where one part would leave fewer CTAs or no second slot."""
    from trtllm_b12x.kernels.moe_decode import occupancy

    assert cfg.stages >= 2, cfg
    assert sum(cfg.part_size(q) for q in range(cfg.parts)) == cfg.per_warp
    assert min(cfg.part_size(q) for q in range(cfg.parts)) >= 1
    assert cfg.ctas_per_sm * (cfg.smem_bytes + 1024) <= target.smem_per_sm
    if cfg.parts > 1:
        fewer = dataclasses.replace(cfg, parts=1)
        ctas, stages = occupancy(fewer.warps, fewer.stage_bytes, fewer.fixed_smem, target.smem_per_sm)
        assert stages < 2 or ctas < cfg.ctas_per_sm


def test_deepseek_fc1_on_hopper_splits_its_slice_into_ring_parts():
    from trtllm_b12x.kernels.decode import phase_configs

    s = PRESETS["deepseek-v3"]
    fc1, fc2 = phase_configs(s.hidden_size, s.intermediate_size, s.num_experts, s.default_activation(), s.top_k,
                             "bfloat16", get_target("sm_90a"))
    assert (fc1.per_warp, fc1.parts, fc1.part_chunks, fc1.stages, fc1.ctas_per_sm) == (14, 4, 4, 2, 2)
    assert [fc1.part_size(q) for q in range(4)] == [4, 4, 4, 2]
    assert fc2.parts == 1  # fits whole


def test_the_gpu_suite_shapes_cover_ring_parts():
    """What the GPU suite's parts-* and Mixtral-class shapes stand for on SM90 (their comment)."""
    from trtllm_b12x.kernels.decode import phase_configs
    from trtllm_b12x.models import MoEShape

    def fc(h, i, e, k, phase):
        s = MoEShape("x", h, i, e, k, "swiglu", "-")
        return phase_configs(h, i, e, s.default_activation(), k, "bfloat16", get_target("sm_90a"))[phase]

    lone, uneven, mixtral = fc(3584, 512, 16, 4, 0), fc(3904, 512, 16, 4, 0), fc(4096, 14336, 8, 2, 1)
    assert [lone.part_size(q) for q in range(lone.parts)] == [4, 3] and not lone.uneven
    assert uneven.uneven and uneven.parts == 2 and uneven.chunks == 61 and uneven.per_warp == 8
    assert mixtral.parts == 7 and mixtral.stages >= 2


@pytest.mark.parametrize("arch", sorted(TARGETS))
def test_no_realistic_shape_falls_off_the_ring(arch):
    """Over a grid of MoE shapes (H 256..16384, I 64..14336 including primes of chunks and
    I not a multiple of 128, 8..512 experts), every phase keeps at least two ring slots (parts
    where a whole slice does not fit) and fits the SM's shared memory at its CTAs per SM."""
    from trtllm_b12x.activation import Activation
    from trtllm_b12x.kernels.decode import phase_configs

    target = get_target(arch)
    for h in (256, 1024, 2048, 2688, 3904, 4096, 5120, 7168, 8192, 12288, 16384):
        for i in (64, 80, 704, 1856, 2048, 4096, 14336):
            for act in ("swiglu", "relu2"):
                for e, k in ((8, 2), (128, 8), (512, 22)):
                    for cfg in phase_configs(h, i, e, Activation(act), k, "bfloat16", target):
                        _assert_ring(cfg, target)
