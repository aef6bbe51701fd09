"""Tables, JSON and plots of benchmark results."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from .moe import CEILING, BenchResult, bars_text, ceiling_bar, ceiling_misses


def results_table(res: BenchResult) -> Table:
    meta = res.meta
    title = f"{res.preset} on {meta['device']} ({meta['routing']} routing, {meta['date']})"
    t = Table(title=title)
    for col, just in (("impl", "left"), ("m", "right"), ("latency µs", "right"), ("experts", "right"),
                      ("weight MB", "right"), ("GB/s", "right"), ("% roofline", "right"), ("x ceiling", "right"),
                      ("rel err", "right")):
        t.add_column(col, justify=just)
    for r in res.rows:
        t.add_row(
            r.impl, str(r.m), f"{r.latency_us:,.1f}", str(r.unique_experts), f"{r.weight_bytes / 1e6:.1f}",
            f"{r.gbps:.1f}", "-" if r.roofline_pct is None else f"{r.roofline_pct:.1f}",
            "-" if r.vs_ceiling is None else f"{r.vs_ceiling:.2f}",
            ("ref" if r.impl.startswith("oracle") else "-") if r.rel_err is None else f"{r.rel_err:.2e}",
        )
    return t


def ceiling_summary(res: BenchResult) -> list[str]:
    """One line per fused implementation timed against the ceiling: the cells over their bar."""
    lines = []
    for impl, cells in ceiling_misses(res).items():
        head = f"{impl} vs {CEILING} (bars: {bars_text()}): "
        if cells:
            lines.append(head + f"{len(cells)} cell(s) over: " + ", ".join(
                f"m={c.m} {c.vs_ceiling:.2f}x > {c.bar:.2f}x" for c in cells))
        else:
            lines.append(head + "every cell within its bar")
    return lines


def skipped_table(res: BenchResult) -> Table | None:
    if not res.skipped:
        return None
    t = Table(title="not run on this machine")
    t.add_column("impl")
    t.add_column("why / what it needs")
    for name, why in res.skipped.items():
        t.add_row(name, why)
    return t


def write_json(res: BenchResult, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res.to_json(), indent=2))
    return path


def plot(res: BenchResult, path: str | Path) -> Path:
    """Latency vs tokens per implementation with the bandwidth floor, and % of roofline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(17, 4.5))
    impls = list(dict.fromkeys(r.impl for r in res.rows))
    for name in impls:
        rows = [r for r in res.rows if r.impl == name]
        ax1.plot([r.m for r in rows], [r.latency_us for r in rows], marker="o", label=name)
        if rows[0].roofline_pct is not None:
            ax2.plot([r.m for r in rows], [r.roofline_pct for r in rows], marker="o", label=name)
    bw = res.meta.get("read_bandwidth_gbps")
    if bw:
        first = [r for r in res.rows if r.impl == impls[0]]
        ax1.plot([r.m for r in first], [r.weight_bytes / (bw * 1e9) * 1e6 for r in first], "k--", label="bandwidth floor")
    ax1.set(xscale="log", yscale="log", xlabel="tokens (m)", ylabel="latency (µs)", title=f"{res.preset}: latency")
    ax2.set(xscale="log", xlabel="tokens (m)", ylabel="% of measured read bandwidth", title="roofline fraction")
    if bw is None:
        ax2.text(0.5, 0.5, "no GPU: no roofline", ha="center", va="center", transform=ax2.transAxes)
    for name in impls:
        rows = [r for r in res.rows if r.impl == name and r.vs_ceiling is not None]
        if rows:
            ax3.plot([r.m for r in rows], [r.vs_ceiling for r in rows], marker="o", label=name)
    if ax3.lines:
        ms = sorted({r.m for r in res.rows})
        ax3.step(ms, [ceiling_bar(m) for m in ms], "k--", where="post", label="bar")
        ax3.legend(fontsize=8)
    else:
        ax3.text(0.5, 0.5, f"no {CEILING} here", ha="center", va="center", transform=ax3.transAxes)
    ax3.set(xscale="log", xlabel="tokens (m)", ylabel="latency / read-only ceiling", title="against the ceiling")
    ax1.legend(fontsize=8)
    if ax2.lines:
        ax2.legend(fontsize=8)
    fig.suptitle(f"{res.meta['device']} — {res.meta['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
