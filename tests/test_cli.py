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
