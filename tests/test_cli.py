import json

from trtllm_b12x.cli import main


def test_bench_smoke_prints_table_and_writes_results(tmp_path, capsys):
    out = tmp_path / "r.json"
    png = tmp_path / "r.png"
    rc = main(["bench", "--num-experts", "16", "--tokens", "1", "3", "--reps", "1",
               "--device", "cpu", "--json", str(out), "--plot", str(png)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "oracle-fp32" in text and "latency" in text and "not run on this machine" in text
    data = json.loads(out.read_text())
    assert [r["m"] for r in data["rows"]] == [1, 3]
    assert data["rows"][0]["unique_experts"] == 8 and data["rows"][0]["latency_us"] > 0
    assert "torch-dequant-bf16" in data["skipped"]
    assert png.stat().st_size > 10_000


def test_bench_takes_a_shape_no_preset_has(tmp_path, capsys):
    out = tmp_path / "s.json"
    rc = main(["bench", "--shape", "256,704,8,2,swiglu", "--tokens", "2", "--reps", "1", "--device", "cpu",
               "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "H=256 I=704 E=8 top-k=2 swiglu" in text
    data = json.loads(out.read_text())
    assert [r["m"] for r in data["rows"]] == [2] and data["rows"][0]["latency_us"] > 0


def test_bench_runs_each_routing_into_its_own_file(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["bench", "--num-experts", "16", "--tokens", "2", "--reps", "1", "--device", "cpu", "--skew", "0", "1",
               "--json", str(out), "--plot", str(tmp_path / "r.png")])
    assert rc == 0
    routings = [json.loads((tmp_path / f"r_skew{s}.json").read_text())["meta"]["routing"] for s in (0, 1)]
    assert routings == ["uniform", "skewed (zipf 1.0)"] and not out.exists()
    assert (tmp_path / "r_skew0.png").stat().st_size > 10_000 and (tmp_path / "r_skew1.png").exists()
    assert "benchmarking (skew 1): oracle-fp32 m=2" in capsys.readouterr().out


def test_doctor_prints_its_table(capsys):
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    for item in ("torch", "nvidia-cutlass-dsl", "sm_120a", "sm_121a", "sm_90a", "TensorRT-LLM"):
        assert item in text


def test_compile_command_reports_sass_per_kernel(tmp_path, capsys):
    import pytest

    pytest.importorskip("cutlass")
    assert main(["compile", "--arch", "sm_121a", "--preset", "nemotron-3-nano", "--cache-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert text.count("quantize") == 4 and "cvt.e2m1x2×8" in text and "compiled" in text
    assert text.count("decode") == 4 and text.count("OMMA.SF(nvfp4)") == 4 and "HMMA" not in text
    assert main(["compile", "--arch", "sm_121a", "--preset", "nemotron-3-nano", "--cache-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.count("disk") == 8  # the second run loads every kernel from the cache
    assert main(["compile", "--arch", "sm_90a", "--preset", "nemotron-3-nano", "--cache-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "cvt.e2m1x2" not in text and "OMMA" not in text  # Hopper: software FP4, BF16 MMA
    assert text.count("HMMA") == 4


def test_doctor_reports_the_tensorrt_llm_integration(capsys):
    assert main(["doctor", "--model", "nemotron-3-super", "--sm", "120"]) == 0
    out = capsys.readouterr().out
    assert "TensorRT-LLM integration" in out and "B12xCutlassFusedMoE" in out


import pytest

from trtllm_b12x import cli

USER_ERRORS = [
    (["compile", "--arch", "sm_80"], "invalid choice: 'sm_80'"),
    (["bench", "--checkpoint", "/nonexistent"], "--checkpoint /nonexistent: no such file or directory"),
    (["bench", "--tokens", "-3"], "argument --tokens: -3 must be > 0"),
    (["bench", "--tokens", "0"], "argument --tokens: 0 must be > 0"),
    (["bench", "--tokens", "two"], "argument --tokens: 'two' is not a int"),
    (["doctor", "--model", "llama"], "--model 'llama': neither a preset"),
    (["bench", "--device", "tpu"], "--device"),
    (["bench", "--device", "cuda:7"], "--device cuda:7"),
    (["bench", "--impl", "foo"], "--impl: unknown implementation(s) foo; known: oracle-fp32"),
    (["bench", "--num-experts", "3"], "--num-experts 3: must be in [8, 128] for qwen3-30b-a3b"),
    (["bench", "--skew", "-1"], "argument --skew: -1 must be a finite number >= 0"),
    (["bench", "--reps", "0"], "argument --reps: 0 must be > 0"),
    (["bench", "--skew", "1", "0", "1"], "--skew 1 0 1: each routing once"),
    (["bench", "--top-k", "4"], "--top-k applies to --checkpoint layers"),
    (["bench", "--shape", "4096,14336,8"], "--shape: shape '4096,14336,8': expected H,I,E,K,ACT"),
    (["bench", "--shape", "4096,14336,8,2,gelu"], "activation 'gelu'; supported: swiglu, relu2"),
    (["bench", "--shape", "4096,700,8,2,swiglu"], "I=700 must be a positive multiple of 16"),
    (["bench", "--shape", "4096,704,8,9,swiglu"], "top-k K=9 and experts E=8 need 1 <= K <= E"),
    (["bench", "--shape", "4096,x,8,2,swiglu"], "H, I, E and K must be integers"),
    (["bench", "--shape", "256,64,8,2,relu2", "--preset", "qwen3-30b-a3b"], "give one"),
    (["bench", "--shape", "256,64,8,2,relu2", "--num-experts", "9"], "--num-experts 9: must be in [2, 8]"),
    (["doctor", "--sm", "80"], "invalid choice: 80"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("argv, says", USER_ERRORS, ids=[" ".join(a) for a, _ in USER_ERRORS])
def test_a_user_error_is_one_line_and_exit_code_2(capsys, monkeypatch, argv, says):
    monkeypatch.setattr("trtllm_b12x.models.make_moe_weights",
                        lambda *a, **k: pytest.fail("work started before the arguments were checked"))
    assert main(argv) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trtllm-b12x") and says in lines[0], cap.err
    assert "Traceback" not in cap.err + cap.out


def test_a_refused_checkpoint_is_one_line(tmp_path, capsys):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 3)
    assert main(["bench", "--checkpoint", str(tmp_path), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a readable safetensors file" in err[0]


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        import tempfile
        from pathlib import Path

        d = Path(tempfile.mkdtemp())
        (d / "model.safetensors").write_bytes(b"\x00" * 3)
        main(["bench", "--checkpoint", str(d), "--device", "cpu", "--debug"])


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.startswith("trtllm-b12x ")


def test_piped_output_gets_plain_progress_lines_and_the_json_names_what_ran(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["bench", "--num-experts", "16", "--tokens", "2", "--reps", "1", "--device", "cpu",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "generating synthetic NVFP4 weights for qwen3-30b-a3b on cpu ..." in text
    assert "benchmarking: oracle-fp32 m=2" in text
    assert json.loads(out.read_text())["meta"]["shape"]["num_experts"] == 16


def test_a_decode_only_row_is_never_timed_on_the_fallback(monkeypatch):
    """m >= 64 is not the fused kernel's: its row is listed as not run, not timed as another path."""
    from trtllm_b12x.bench import moe as bench
    from trtllm_b12x.models import PRESETS, make_moe_weights

    served = []

    def build(weights, act):
        return lambda x, ids, w: served.append(x.shape[0]) or torch.zeros(x.shape[0], weights.hidden_size,
                                                                          dtype=x.dtype)

    import torch

    stub = bench.Impl("stub-fused", "w4a16", "-", lambda d: None, build, decode_only=True)
    monkeypatch.setattr(bench, "IMPLS", [stub])
    shape = PRESETS["qwen3-30b-a3b"]
    weights = make_moe_weights(shape, seed=0, num_experts=8)
    res = bench.run_sweep(shape, weights, [2, 64], reps=1)
    assert [r.m for r in res.rows] == [2] and set(served) == {2}
    assert "stub-fused m=64" in res.skipped and "serves m < 64" in res.skipped["stub-fused m=64"]
