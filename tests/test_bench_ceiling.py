"""The bench's fused/ceiling ratios and the cells over their bars (no GPU: synthetic rows)."""

import json

from trtllm_b12x.bench.moe import (CEILING, BenchResult, Row, attach_ceiling_ratios, bars_text, ceiling_bar,
                                   ceiling_misses)
from trtllm_b12x.bench.report import ceiling_summary, plot, results_table, write_json


def _row(impl, m, us):
    return Row(impl, m, us, 8, 1e6, 1.0, 10.0, None if impl == CEILING else 1e-3, "graph")


def _result(cells):
    """cells: (m, fused µs, ceiling µs); a ceiling-less peer row at every m as well."""
    res = BenchResult("p", {"device": "gpu", "date": "2026-12-04", "routing": "uniform", "read_bandwidth_gbps": 4690.0})
    for m, fused, ceil in cells:
        res.rows += [_row("b12x-fused", m, fused), _row("torch-dequant-bf16", m, 5 * fused), _row(CEILING, m, ceil)]
    attach_ceiling_ratios(res.rows)
    return res


def test_bars_step_at_8_tokens():
    assert [ceiling_bar(m) for m in (1, 4, 7, 8, 16, 63)] == [1.3, 1.3, 1.3, 1.15, 1.15, 1.15]
    assert bars_text() == "<= 1.30x at m < 8, <= 1.15x at m >= 8"


def test_ratios_are_per_m_and_misses_name_the_cells_over_their_bar(tmp_path):
    res = _result([(1, 13.0, 10.0), (4, 14.0, 10.0), (8, 11.0, 10.0), (16, 23.6, 20.0)])
    fused = {r.m: round(r.vs_ceiling, 6) for r in res.rows if r.impl == "b12x-fused"}
    assert fused == {1: 1.3, 4: 1.4, 8: 1.1, 16: 1.18}
    assert all(r.vs_ceiling is None for r in res.rows if r.impl == CEILING)
    misses = ceiling_misses(res)["b12x-fused"]
    assert [(c.m, round(c.vs_ceiling, 2), c.bar) for c in misses] == [(4, 1.4, 1.3), (16, 1.18, 1.15)]
    assert "torch-dequant-bf16" not in ceiling_misses(res)  # peers are shown against it, not held to it
    (line,) = ceiling_summary(res)
    assert "2 cell(s) over: m=4 1.40x > 1.30x, m=16 1.18x > 1.15x" in line
    data = json.loads(write_json(res, tmp_path / "r.json").read_text())
    assert [c["m"] for c in data["ceiling_misses"]["b12x-fused"]] == [4, 16]
    assert data["rows"][0]["vs_ceiling"] == 1.3
    assert plot(res, tmp_path / "r.png").stat().st_size > 10_000
    assert "x ceiling" in [c.header for c in results_table(res).columns]


def test_within_the_bars_is_said_and_no_ceiling_means_no_verdict():
    assert ceiling_summary(_result([(1, 12.9, 10.0), (8, 11.4, 10.0)])) == [
        f"b12x-fused vs {CEILING} (bars: {bars_text()}): every cell within its bar"]
    res = BenchResult("p", {}, [_row("b12x-fused", 1, 30.0)])
    attach_ceiling_ratios(res.rows)
    assert res.rows[0].vs_ceiling is None and ceiling_summary(res) == [] and ceiling_misses(res) == {}
