"""PNG plots of a run. matplotlib is imported here only, and only when plots are asked for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from router.bench.stats import RequestRecord, cdf

if TYPE_CHECKING:
    from router.bench.report import PointReport


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede the pyplot import
    import matplotlib.pyplot as plt

    return plt


def write_all(points: list[PointReport], out_dir: Path, title: str) -> list[str]:
    """Latency CDFs, throughput vs offered load and tier mix; returns the files written."""
    plt = _pyplot()
    files = [
        _latency_cdfs(plt, points, out_dir / "latency_cdf.png", title),
        _throughput(plt, points, out_dir / "throughput_vs_load.png", title),
    ]
    files.append(_tier_mix(plt, points, out_dir / "tier_mix.png", title))
    return [str(f) for f in files]


def _latency_cdfs(plt, points: list[PointReport], path: Path, title: str) -> Path:  # type: ignore[no-untyped-def]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for p in points:
        ok = [r for r in p.result.records if r.ok and not r.warmup]
        for ax, values in (
            (axes[0], [t for r in ok if (t := r.ttft) is not None]),
            (axes[1], [r.e2e for r in ok]),
        ):
            if values:
                x, y = cdf(v * 1e3 for v in values)
                ax.step(x, y, where="post", label=p.label)
    for ax, name in zip(axes, ("TTFT", "end-to-end latency"), strict=True):
        ax.set_xlabel(f"{name} (ms, from scheduled send)")
        ax.set_ylabel("fraction of requests")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(name)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _throughput(plt, points: list[PointReport], path: Path, title: str) -> Path:  # type: ignore[no-untyped-def]
    mode = points[0].result.spec.mode
    offered = [p.result.spec.level for p in points]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1.plot(offered, [p.summary.request_throughput for p in points], "o-", label="achieved req/s")
    if mode == "open":
        ax1.plot(offered, offered, "x--", color="grey", label="offered")
    ax1b = ax1.twinx()
    ax1b.plot(
        offered, [p.summary.output_token_throughput for p in points], "s:", color="tab:green", label="output tok/s"
    )
    ax1b.set_ylabel("output tokens/s")
    ax1.set_xlabel("offered rate (req/s)" if mode == "open" else "concurrency")
    ax1.set_ylabel("requests/s")
    ax1.grid(True, alpha=0.3)
    ax1.legend(loc="upper left", fontsize=8)
    ax1b.legend(loc="lower right", fontsize=8)
    ax1.set_title("throughput vs offered load")
    for q in ("p50", "p90", "p99"):
        ax2.plot(offered, [getattr(p.summary.e2e, q) * 1e3 for p in points], "o-", label=f"E2E {q}")
    ax2.plot(offered, [p.summary.ttft.p50 * 1e3 for p in points], "x--", label="TTFT p50")
    ax2.set_xlabel(ax1.get_xlabel())
    ax2.set_ylabel("ms")
    ax2.set_yscale("log")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=8)
    ax2.set_title("latency vs offered load")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _tier_counts(records: list[RequestRecord]) -> Counter[str]:
    return Counter(r.tier or "(no header)" for r in records if r.ok and not r.warmup)


def _stacked(ax, labels: list[str], counts: list[Counter[str]]) -> None:  # type: ignore[no-untyped-def]
    tiers = sorted({t for c in counts for t in c})
    bottom = [0.0] * len(labels)
    for tier in tiers:
        shares = [c.get(tier, 0) / (sum(c.values()) or 1) for c in counts]
        ax.bar(labels, shares, bottom=bottom, label=tier)
        bottom = [b + s for b, s in zip(bottom, shares, strict=True)]
    ax.set_ylabel("share of answered requests")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)


def _tier_mix(plt, points: list[PointReport], path: Path, title: str) -> Path:  # type: ignore[no-untyped-def]
    """Left: tier shares per load point. Right: per task label at the last point, next to the expected tier."""
    last = [r for r in points[-1].result.records if r.ok and not r.warmup]
    tasks = sorted({r.task for r in last if r.task})
    fig, axes = plt.subplots(1, 2 if tasks else 1, figsize=(12 if tasks else 6, 4.6), squeeze=False)
    _stacked(axes[0][0], [p.label for p in points], [_tier_counts(p.result.records) for p in points])
    axes[0][0].set_title("tier mix (x-router-tier)")
    if tasks:
        labels = []
        for task in tasks:
            expected = Counter(r.expected_tier for r in last if r.task == task and r.expected_tier)
            labels.append(f"{task}\n(expect {expected.most_common(1)[0][0]})" if expected else task)
        _stacked(axes[0][1], labels, [_tier_counts([r for r in last if r.task == task]) for task in tasks])
        axes[0][1].set_title(f"tier by task ({points[-1].label})")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
