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
    for item in ("torch", "nvidia-cutlass-dsl", "sm_120a", "sm_121a", "sm_90a", "tensorrt_llm"):
        assert item in text
