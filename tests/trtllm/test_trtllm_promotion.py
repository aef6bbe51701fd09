"""enable(): promotion under moe_backend CUTLASS, fallback, dispatch, idempotence, undo."""

import importlib
import inspect
import logging
import sys
from types import SimpleNamespace

import pytest
from trtllm_b12x.reference import moe_reference, relative_error

import trtllm_layers as tl
from trtllm_b12x.trtllm import ENV_DISABLE, backend, disable, enable, status
from trtllm_b12x.trtllm._hook import MoEImportHook


def _names(gen):
    """Every name the adapter may patch, by identity, to compare before and after."""
    pkg = tl.package_of(gen)
    fm, cm = importlib.import_module(pkg), importlib.import_module(pkg + ".create_moe")
    out = {"pkg.create_moe_backend": fm.create_moe_backend, "create_moe.create_moe_backend": cm.create_moe_backend}
    if gen == "G1":
        model = importlib.import_module("tensorrt_llm._torch.models.modeling_fake_moe")
        out.update({"pkg.get_moe_cls": fm.get_moe_cls, "create_moe.get_moe_cls": cm.get_moe_cls,
                    "model.get_moe_cls": model.get_moe_cls})
    else:
        res = importlib.import_module(pkg + ".moe_resolution")
        out.update({"IMPL_PRIORITY": res.IMPL_PRIORITY, "CUTLASS family": res.BACKEND_FAMILY["CUTLASS"],
                    "resolve_moe_impl": res.resolve_moe_impl, "pkg.resolve_moe_impl": fm.resolve_moe_impl})
    return out


@pytest.fixture
def with_kernel():
    backend.set_decode_kernel_factory(tl.stand_in_factory)


def test_promotes_under_cutlass_and_patches_every_namespace(trtllm, generation, with_kernel, caplog):
    caplog.set_level(logging.INFO, logger="trtllm_b12x.trtllm")
    before = _names(generation)
    st = enable()
    assert (st.state, st.generation, st.package) == ("active", generation, trtllm.__name__)
    after = _names(generation)
    changed = [k for k in before if after[k] is not before[k]]
    assert changed == list(before)  # model files that bound the function earlier included
    be, _ = tl.make_layer(generation, tl.GATED)
    assert be.__class__ is st.backend and isinstance(be, trtllm.CutlassFusedMoE)
    assert any("B12xCutlassFusedMoE (b12x decode, CUTLASS prefill)" in r.getMessage() for r in caplog.records)


def test_g1_selection_function(g1, with_kernel):
    trtllm = g1
    ours = enable().backend
    model = importlib.import_module("tensorrt_llm._torch.models.modeling_fake_moe")
    assert model.gate_backend_cls(tl.model_config()) is ours
    assert trtllm.get_moe_cls(tl.model_config(backend="VANILLA")).__name__ == "VanillaMoE"
    assert trtllm.get_moe_cls(tl.model_config(quant="FP8")) is trtllm.CutlassFusedMoE


def test_g2_tables(g2, with_kernel):
    trtllm = g2
    res = importlib.import_module(trtllm.__name__ + ".moe_resolution")
    stock = trtllm.CutlassFusedMoE
    ours = enable().backend
    prio = [c.__name__ for c in res.IMPL_PRIORITY]
    # right behind upstream's own b12x backend: the next CUTEDSL candidate, and ahead of stock CUTLASS
    assert prio == ["CuteDslB12xFusedMoE", "B12xCutlassFusedMoE", "TRTLLMGenFusedMoE", "B12xMarlinFusedMoE",
                    "MarlinFusedMoE", "CutlassFusedMoE", "VanillaMoE"]
    assert {c.__name__ for c in res.BACKEND_FAMILY["MARLIN"]} == {"MarlinFusedMoE", "B12xMarlinFusedMoE"}
    assert res.BACKEND_FAMILY["CUTLASS"] == {stock, ours}
    assert res.BACKEND_FAMILY["CUTEDSL"] == {res.CuteDslB12xFusedMoE, ours}
    assert ours not in res.BACKEND_FAMILY["TRTLLM"]  # other families keep stock CUTLASS as fallback
    assert res.impl_class_for(SimpleNamespace(winner=ours.__name__)) is ours
    assert ours.capabilities.supports_moe_lora is False and stock.capabilities.supports_moe_lora is True


def test_falls_back_to_stock_with_the_reason_logged_once(trtllm, generation, with_kernel, caplog):
    importlib.import_module("tensorrt_llm._utils").SM = 100
    enable()
    for _ in range(3):
        be, _ = tl.make_layer(generation, tl.GATED)
        assert type(be) is trtllm.CutlassFusedMoE
    msgs = [r.getMessage() for r in caplog.records if "runs" in r.getMessage() and "CutlassFusedMoE" in r.getMessage()]
    assert len(msgs) == 1
    assert "SM100 is not supported; supported: SM120/SM121 with NVFP4, SM90 with W4A16_NVFP4" in msgs[0]


def test_missing_decode_kernel_is_a_selection_reason(trtllm, generation, monkeypatch, caplog):
    monkeypatch.setattr(backend, "_probe", lambda: "trtllm_b12x.kernels.moe_decode is not importable (test)")
    enable()
    be, _ = tl.make_layer(generation, tl.GATED)
    assert type(be) is trtllm.CutlassFusedMoE
    assert any("no b12x decode kernel here: trtllm_b12x.kernels.moe_decode is not importable (test)" in r.getMessage()
               for r in caplog.records)


def test_create_moe_backend_dispatch_accepts_the_subclass(trtllm, generation, with_kernel):
    original = trtllm.create_moe_backend
    ours = enable().backend
    fm = tl.mod(trtllm.__name__)
    kw = dict(routing_method=fm.RenormalizeMoeRoutingMethod(2), num_experts=6, hidden_size=128, intermediate_size=96,
              dtype=tl.torch.bfloat16, model_config=tl.model_config())
    with pytest.raises(ValueError, match="Unsupported moe backend"):
        original(ours, **kw)  # upstream identity dispatch rejects subclasses
    layer = trtllm.create_moe_backend(ours, **kw)
    assert type(layer) is ours and layer.intermediate_size_per_partition == 96
    assert type(trtllm.create_moe_backend(trtllm.CutlassFusedMoE, **kw)) is trtllm.CutlassFusedMoE
    # sizes left out come from the pretrained config, as upstream infers them
    cfg = tl.model_config()
    cfg.pretrained_config = SimpleNamespace(torch_dtype=tl.torch.bfloat16, n_routed_experts=6, hidden_size=128,
                                            moe_intermediate_size=96)
    assert trtllm.create_moe_backend(ours, fm.RenormalizeMoeRoutingMethod(2), model_config=cfg).num_experts == 6
    with pytest.raises(ValueError, match=r"hidden_size is None and model_config.pretrained_config has none of"):
        trtllm.create_moe_backend(ours, fm.RenormalizeMoeRoutingMethod(2), num_experts=6, intermediate_size=96,
                                  model_config=tl.model_config())


def test_enable_is_idempotent(trtllm, generation, with_kernel):
    first = enable()
    names = _names(generation)
    for _ in range(3):
        assert enable() is first
    assert all(_names(generation)[k] is v for k, v in names.items())
    if generation == "G2":
        res = importlib.import_module(trtllm.__name__ + ".moe_resolution")
        assert sum(c is first.backend for c in res.IMPL_PRIORITY) == 1


def test_disable_restores_every_original(trtllm, generation, with_kernel):
    before = _names(generation)
    enable()
    disable()
    after = _names(generation)
    assert all(after[k] is before[k] or after[k] == before[k] for k in before)
    assert status().state == "off"
    be, _ = tl.make_layer(generation, tl.GATED)
    assert type(be) is trtllm.CutlassFusedMoE


def test_unknown_generation_is_left_untouched(trtllm, generation, caplog):
    """A G1 package whose selection function changed shape, or a G2 package whose run_moe is
    the G1 form, matches no generation: nothing is patched and the log says why."""
    if generation == "G1":
        cm = importlib.import_module(trtllm.__name__ + ".create_moe")

        def get_moe_cls(config):  # a signature no known generation has
            return trtllm.CutlassFusedMoE

        cm.get_moe_cls = trtllm.get_moe_cls = get_moe_cls
        expect = "create_moe.get_moe_cls(model_config, override_quant_config) not found"
    else:
        def run_moe(self, x, token_selected_experts, token_final_scales, x_sf=None):
            raise AssertionError("not called")

        trtllm.CutlassFusedMoE.run_moe = run_moe
        expect = "CutlassFusedMoE.run_moe(self, x, token_selected_experts, token_final_scales, x_sf=None) is not (ctx"
    before = _names(generation)
    st = enable()
    assert st.state == "unsupported" and expect in st.reason
    assert all(_names(generation)[k] is v for k, v in before.items())
    assert any("TensorRT-LLM left untouched" in r.getMessage() and expect in r.getMessage() for r in caplog.records)


def test_opt_out_env_var(trtllm, generation, monkeypatch):
    monkeypatch.setenv(ENV_DISABLE, "1")
    before = _names(generation)
    assert enable().state == "disabled"
    assert all(_names(generation)[k] is v for k, v in before.items())


def test_absent_tensorrt_llm_changes_nothing(monkeypatch):
    from trtllm_b12x.trtllm import promote

    real = promote.importlib.util.find_spec
    monkeypatch.setattr(promote.importlib.util, "find_spec", lambda name, *a: None if name == "tensorrt_llm" else real(name, *a))
    meta = list(sys.meta_path)
    st = enable()
    assert st.state == "absent" and st.reason == "TensorRT-LLM is not installed"
    assert sys.meta_path == meta and not any(n.startswith("tensorrt_llm") for n in sys.modules)


def test_pending_until_the_moe_package_is_imported(fakes_on_path, generation, with_kernel):
    """Installed but not imported: enable() arms the import hook; the import promotes."""
    st = enable()
    assert st.state == "pending" and any(isinstance(f, MoEImportHook) for f in sys.meta_path)
    pkg = importlib.import_module(tl.package_of(generation))
    assert status().state == "active" and status().package == pkg.__name__
    assert not any(isinstance(f, MoEImportHook) for f in sys.meta_path)  # the hook removes itself
    inspect.getsource(pkg)  # the loader proxy still answers get_source
    be, _ = tl.make_layer(generation, tl.GATED)
    assert type(be).__name__ == "B12xCutlassFusedMoE"


@pytest.mark.parametrize("flashinfer, ep, winner", [
    (True, 1, "CuteDslB12xFusedMoE"),  # upstream's b12x backend can take it: it runs
    (False, 1, "B12xCutlassFusedMoE"),  # FlashInfer missing: ours is the next CUTEDSL candidate
    (True, 2, "B12xCutlassFusedMoE"),  # EP > 1, which upstream's rejects
], ids=["upstream-b12x", "no-flashinfer", "ep2"])
def test_cutedsl_takes_ours_where_upstreams_b12x_cannot(g2, with_kernel, caplog, flashinfer, ep, winner):
    env = importlib.import_module(g2.__name__ + ".impl_environment")
    env.DEPS = ("flashinfer",) if flashinfer else ()
    try:
        enable()
        with caplog.at_level("INFO"):
            be, _ = tl.make_layer("G2", tl.GATED, backend="CUTEDSL", ep=(ep, 0))
    finally:
        env.DEPS = ()
    assert type(be).__name__ == winner
    if winner.startswith("B12x"):
        (line,) = [r.getMessage() for r in caplog.records if "moe_backend CUTEDSL ->" in r.getMessage()]
        assert "CuteDslB12xFusedMoE cannot take it: " in line
        assert ("requires flashinfer" if not flashinfer else "requires ep_size == 1") in line


@pytest.fixture
def sm90(g2):
    importlib.import_module("tensorrt_llm._utils").SM = 90
    return g2


@pytest.mark.parametrize("quant", ["NVFP4", "W4A16_NVFP4"])
def test_marlin_on_sm90_decodes_with_b12x_and_prefills_with_marlin(sm90, caplog, quant):
    """NVFP4 on SM90 has no CUTLASS candidate; under MARLIN ours decodes (from a copy taken
    before Marlin repacks) and Marlin prefills. The copy's bytes are logged and reported."""
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    enable()
    weights = tl.weights_for(tl.GATED)
    with caplog.at_level("INFO"):
        be, layer = tl.loaded_layer("G2", tl.GATED, weights, backend="MARLIN", quant=quant)
    assert type(be).__name__ == "B12xMarlinFusedMoE" and be.b12x_reason is None and be._marlin_packed
    stored = sum(getattr(be, n).numel() * getattr(be, n).element_size()
                 for n in ("w3_w1_weight", "w3_w1_weight_scale", "w2_weight", "w2_weight_scale"))
    assert be.b12x_extra_bytes >= stored  # a copy: Marlin's repack replaced the module's tensors
    assert any("a copy: Marlin repacks its own" in r.getMessage() for r in caplog.records)
    for m, path in ((5, []), (70, ["marlin.quantize_input", "marlin.run_moe"])):
        be.calls.clear()
        out, x, ids, w = tl.run(layer, tl.GATED, m)
        assert be.calls == path
        ref = moe_reference(x, ids, w, weights, tl.GATED.default_activation())
        assert relative_error(out.float(), ref) < 1e-2


def test_marlin_copy_follows_the_memory_rule(sm90, monkeypatch):
    from trtllm_b12x.trtllm import quant_method

    assert quant_method.marlin_copy_reason(10 << 30, "cuda", (20 << 30, 80 << 30)) is None
    why = quant_method.marlin_copy_reason(15 << 30, "cuda", (20 << 30, 80 << 30))
    assert "would leave 5.00 GiB of 80.0 GiB free; the rule keeps 10% free" in why
    backend.set_decode_kernel_factory(tl.stand_in_factory)
    enable()
    monkeypatch.setattr(quant_method, "marlin_copy_reason", lambda n, d: f"no room for {n} bytes")
    be, layer = tl.loaded_layer("G2", tl.GATED, tl.weights_for(tl.GATED), backend="MARLIN")
    assert be.b12x_reason.startswith("no room for ")
    tl.run(layer, tl.GATED, 3)
    assert be.calls[-1] == "marlin.run_moe"  # stock Marlin serves it all


def test_marlin_copy_can_be_turned_off(sm90, monkeypatch):
    from trtllm_b12x import _env

    monkeypatch.setenv("TRTLLM_B12X_MARLIN_COPY", "off")
    _env.settings.cache_clear()
    try:
        backend.set_decode_kernel_factory(tl.stand_in_factory)
        enable()
        be, _ = tl.loaded_layer("G2", tl.GATED, tl.weights_for(tl.GATED), backend="MARLIN")
        assert be.b12x_reason == "TRTLLM_B12X_MARLIN_COPY=off: no copy of the expert weights next to Marlin's"
    finally:
        monkeypatch.delenv("TRTLLM_B12X_MARLIN_COPY")
        _env.settings.cache_clear()


def test_nvfp4_on_sm90_under_cutlass_stays_unserved_by_us(sm90):
    """Under CUTLASS on SM90 the checkpoint must run as W4A16_NVFP4 (CUTLASS has no NVFP4 there)."""
    from trtllm_b12x.trtllm.decision import Facts, decide

    assert "supported: SM120/SM121 with NVFP4" in str(decide(Facts(sm=90, quant="NVFP4", family="CUTLASS")))
    assert decide(Facts(sm=90, quant="NVFP4", family="MARLIN")).ok
    assert "under moe_backend MARLIN is not supported" in str(decide(Facts(sm=120, quant="NVFP4", family="MARLIN")))
