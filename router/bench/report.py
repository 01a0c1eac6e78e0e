"""What a run leaves behind: a terminal summary, a JSON file with every request, and a Markdown report."""

from __future__ import annotations

import math
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from router.bench import stats
from router.bench.prices import PRICES_AS_OF, REFERENCE_MODELS, Price, request_cost
from router.bench.runner import PointResult
from router.bench.stats import SLO, Dist, Summary


@dataclass(slots=True)
class PointReport:
    result: PointResult
    summary: Summary
    cost: dict[str, Any]

    @property
    def label(self) -> str:
        return self.result.spec.label


@dataclass(slots=True)
class RunReport:
    meta: dict[str, Any]
    points: list[PointReport] = field(default_factory=list)


def machine_info() -> dict[str, Any]:
    model = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": model,
        "cores": usable,
        "python": sys.version.split()[0],
        "platform": platform.platform(terse=True),
    }


def cost_of(
    records: list[stats.RequestRecord], table: dict[str, Price], reference: str, assume_tier: str
) -> dict[str, Any]:
    """Actual cost of the answered requests vs sending every one of them to a frontier model.

    Both sides use the token counts observed in this run (a frontier model would have answered at its own
    length; we cannot know it, so the saving is an estimate).
    """
    ok = [r for r in records if r.ok and not r.warmup]
    actual = math.fsum(
        request_cost(
            r.tier, r.model, r.cost_header, r.prompt_tokens, r.completion_tokens, table, reference, assume_tier
        )
        for r in ok
    )
    frontier = {
        m: math.fsum(table[m].cost(r.prompt_tokens, r.completion_tokens) for r in ok)
        for m in dict.fromkeys((reference, *REFERENCE_MODELS))
        if m in table
    }
    ref = frontier.get(reference, 0.0)
    return {
        "actual_usd": actual,
        "all_frontier_usd": frontier,
        "reference": reference,
        "saving_vs_reference": (1 - actual / ref) if ref > 0 else None,
        "prices_as_of": PRICES_AS_OF,
        "assume_tier_without_header": assume_tier,
    }


# -- JSON ----------------------------------------------------------------------------------------------------


def to_json(run: RunReport) -> bytes:
    points = []
    for p in run.points:
        r = p.result
        points.append(
            {
                "label": p.label,
                "spec": {name: getattr(r.spec, name) for name in r.spec.__slots__},
                "summary": p.summary.to_json(),
                "cost": p.cost,
                "generator": {
                    "cpu_fraction_of_a_core": r.client_cpu_fraction,
                    "loop_lag": r.loop_lag.to_json(),
                    "warnings": r.generator_warnings(),
                },
                "requests": [rec.to_json() for rec in r.records],
            }
        )
    doc = {"meta": run.meta, "definitions": stats.__doc__, "points": points}
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


# -- terminal ------------------------------------------------------------------------------------------------


def _ms(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * 1e3:.1f}"


def _dist_row(name: str, d: Dist) -> str:
    return f"  {name:<10}{_ms(d.mean):>10}{_ms(d.p50):>10}{_ms(d.p90):>10}{_ms(d.p99):>10}{d.n:>8}"


def _mix(counts: dict[str, int]) -> str:
    total = sum(counts.values())
    return "  ".join(f"{k} {v} ({v / total:.0%})" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def _usd(x: float) -> str:
    return f"${x:.4f}" if x < 1 else f"${x:,.2f}"


def point_lines(p: PointReport, slo: SLO | None) -> list[str]:
    s, r = p.summary, p.result
    err = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"
    lines = [
        f"== {p.label} ({r.spec.mode} loop{', ' + r.spec.process if r.spec.mode == 'open' else ''}): "
        f"{s.requests} requests, {s.ok} ok, errors: {err}, window {s.duration_s:.1f} s",
        f"  {'ms':<10}{'mean':>10}{'p50':>10}{'p90':>10}{'p99':>10}{'n':>8}",
        _dist_row("TTFT", s.ttft),
        _dist_row("TPOT", s.tpot),
        _dist_row("ITL", s.itl),
        _dist_row("E2E", s.e2e),
        f"  throughput  {s.request_throughput:.2f} req/s  {s.output_token_throughput:.1f} output tok/s  "
        f"{s.total_token_throughput:.1f} total tok/s",
    ]
    if s.goodput_rps is not None and slo is not None:
        lines.append(
            f"  goodput     {s.goodput_rps:.2f} req/s ({(s.goodput_fraction or 0):.1%} within {_slo_text(slo)})"
        )
    if s.tier_mix:
        acc = f"   reached expected tier: {s.tier_accuracy:.0%}" if s.tier_accuracy is not None else ""
        lines.append(f"  tiers       {_mix(s.tier_mix)}{acc}")
    if s.cache_mix:
        rate = f"{s.cache_hit_rate:.1%}" if s.cache_hit_rate is not None else "-"
        lines.append(f"  cache       hit rate {rate}  ({_mix(s.cache_mix)})")
    if s.tier_mix:
        lines.append(f"  escalations {s.escalations}")
    c = p.cost
    others = "  ".join(f"{m} {_usd(v)}" for m, v in c["all_frontier_usd"].items() if m != c["reference"])
    saving = f" → {c['saving_vs_reference']:.1%} saved" if c["saving_vs_reference"] is not None else ""
    lines.append(
        f"  cost        {_usd(c['actual_usd'])} vs all-frontier {_usd(c['all_frontier_usd'].get(c['reference'], 0))}"
        f" ({c['reference']}){saving}   [{others}]"
    )
    if s.usage_estimated:
        lines.append(f"  note        {s.usage_estimated} answers had no usage block: tokens estimated")
    warnings = r.generator_warnings()
    lag = s.send_lag
    lines.append(
        f"  generator   cpu {r.client_cpu_fraction:.0%} of a core, send lag p99 {_ms(lag.p99)} ms, "
        f"loop lag p99 {_ms(r.loop_lag.p99)} ms: "
        + ("; ".join(warnings) + " (MAY BE THE BOTTLENECK)" if warnings else "ok")
    )
    return lines


def _slo_text(slo: SLO) -> str:
    parts = [
        f"{n}≤{v * 1e3:g}ms" for n, v in (("TTFT", slo.ttft), ("TPOT", slo.tpot), ("E2E", slo.e2e)) if v is not None
    ]
    return " ".join(parts)


def sweep_table(points: list[PointReport]) -> list[str]:
    head = f"  {'load':<18}{'req/s':>9}{'tok/s':>9}" + "".join(
        f"{h:>10}" for h in ("TTFT p50", "TTFT p99", "E2E p50", "E2E p99")
    )
    head += f"{'errors':>8}"
    lines = ["== sweep (ms)", head]
    for p in points:
        s = p.summary
        lines.append(
            f"  {p.label:<18}{s.request_throughput:>9.2f}{s.output_token_throughput:>9.1f}{_ms(s.ttft.p50):>10}"
            f"{_ms(s.ttft.p99):>10}{_ms(s.e2e.p50):>10}{_ms(s.e2e.p99):>10}{s.requests - s.ok:>8}"
        )
    return lines


def terminal(run: RunReport, slo: SLO | None) -> str:
    lines: list[str] = []
    for p in run.points:
        lines += point_lines(p, slo)
    if len(run.points) > 1:
        lines += sweep_table(run.points)
    return "\n".join(lines)


# -- Markdown ------------------------------------------------------------------------------------------------


def markdown(run: RunReport, slo: SLO | None, plots: list[str]) -> str:
    m = run.meta
    mach = m["machine"]
    out = [
        f"# Benchmark: {m['target']['base_url']} ({m['target']['model']})",
        "",
        f"- date: {mach['date']}",
        f"- machine: {mach['cpu']}, {mach['cores']} cores, Python {mach['python']}, {mach['platform']}",
        f"- command: `{m['command']}`",
        f"- workload: `{m['workload']['path']}` ({m['workload']['items']} distinct requests)",
        f"- streaming: {m['target']['stream']}; SLO: {_slo_text(slo) if slo and not slo.empty else 'none given'}",
        "",
        "## Summary",
        "",
        "| load | requests | ok | req/s | out tok/s | TTFT p50 | TTFT p99 | TPOT p50 | ITL p50 | E2E mean | E2E p50 |"
        " E2E p90 | E2E p99 | goodput req/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in run.points:
        s = p.summary
        gp = f"{s.goodput_rps:.2f} ({(s.goodput_fraction or 0):.0%})" if s.goodput_rps is not None else "-"
        out.append(
            f"| {p.label} | {s.requests} | {s.ok} | {s.request_throughput:.2f} | {s.output_token_throughput:.1f} "
            f"| {_ms(s.ttft.p50)} | {_ms(s.ttft.p99)} | {_ms(s.tpot.p50)} | {_ms(s.itl.p50)} | {_ms(s.e2e.mean)} "
            f"| {_ms(s.e2e.p50)} | {_ms(s.e2e.p90)} | {_ms(s.e2e.p99)} | {gp} |"
        )
    out += ["", "Latencies in milliseconds. Definitions:", "", "```", (stats.__doc__ or "").strip(), "```", ""]
    out += ["## Errors, routing, cost", ""]
    for p in run.points:
        s, c = p.summary, p.cost
        out.append(f"### {p.label}")
        out.append("")
        out.append(f"- errors: {', '.join(f'{k} {v}' for k, v in sorted(s.errors.items())) or 'none'}")
        if s.tier_mix:
            acc = f"; reached the expected tier: {s.tier_accuracy:.0%}" if s.tier_accuracy is not None else ""
            out.append(f"- tier mix (`x-router-tier`): {_mix(s.tier_mix)}{acc}")
            out.append(f"- escalations (`x-router-escalated`): {s.escalations}")
        else:
            out.append("- tier mix: the server sent no `x-router-tier` headers")
        if s.cache_mix:
            rate = f"{s.cache_hit_rate:.1%}" if s.cache_hit_rate is not None else "-"
            out.append(f"- cache (`x-router-cache`): hit rate {rate} of hit+miss; {_mix(s.cache_mix)}")
        frontier = ", ".join(f"{k} {_usd(v)}" for k, v in c["all_frontier_usd"].items())
        saving = f"{c['saving_vs_reference']:.1%}" if c["saving_vs_reference"] is not None else "-"
        out.append(
            f"- cost: {_usd(c['actual_usd'])} actual; all-frontier: {frontier}; saving vs {c['reference']}: {saving} "
            f"(list prices as of {c['prices_as_of']}; requests without a tier header counted as "
            f"{c['assume_tier_without_header']})"
        )
        r = p.result
        warnings = r.generator_warnings()
        out.append(
            f"- load generator: {r.client_cpu_fraction:.0%} of a core, send lag p50/p99 {_ms(s.send_lag.p50)}/"
            f"{_ms(s.send_lag.p99)} ms, event-loop lag p99 {_ms(r.loop_lag.p99)} ms — "
            + ("**may be the bottleneck: " + "; ".join(warnings) + "**" if warnings else "not the bottleneck")
        )
        out.append("")
    if plots:
        out += ["## Plots", ""]
        out += [f"![{Path(p).stem}]({Path(p).name})" for p in plots]
        out.append("")
    return "\n".join(out)
