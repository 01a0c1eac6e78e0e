"""`hybrid-router bench compare A.json B.json …`: the summaries of several runs side by side, as Markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson

_ROWS: list[tuple[str, str, float]] = [
    # (label, dotted path into a point's summary, scale)
    ("requests", "requests", 1),
    ("ok", "ok", 1),
    ("req/s", "request_throughput", 1),
    ("output tok/s", "output_token_throughput", 1),
    ("TTFT p50 ms", "ttft.p50", 1e3),
    ("TTFT p99 ms", "ttft.p99", 1e3),
    ("TPOT p50 ms", "tpot.p50", 1e3),
    ("ITL p50 ms", "itl.p50", 1e3),
    ("E2E mean ms", "e2e.mean", 1e3),
    ("E2E p50 ms", "e2e.p50", 1e3),
    ("E2E p90 ms", "e2e.p90", 1e3),
    ("E2E p99 ms", "e2e.p99", 1e3),
    ("goodput req/s", "goodput_rps", 1),
    ("cache hit rate", "cache_hit_rate", 1),
    ("escalations", "escalations", 1),
]


def _get(d: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(part)  # type: ignore[assignment]
    return d


def _fmt(v: Any, scale: float) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v * scale:.2f}" if scale == 1 else f"{v * scale:.1f}"
    return str(v)


def render(runs: list[tuple[str, dict[str, Any]]]) -> str:
    out = ["# Side by side", ""]
    for name, doc in runs:
        m = doc["meta"]
        out.append(f"- **{name}**: `{m['command']}` — {m['machine']['date']}, {m['machine']['cpu']}")
    out.append("")
    npoints = max(len(doc["points"]) for _, doc in runs)
    for i in range(npoints):
        cols = [(name, doc["points"][i]) for name, doc in runs if i < len(doc["points"])]
        out.append(f"## {' / '.join(sorted({p['label'] for _, p in cols}))}")
        out.append("")
        out.append("| metric | " + " | ".join(name for name, _ in cols) + " |")
        out.append("|---|" + "---:|" * len(cols))
        for label, path, scale in _ROWS:
            out.append(f"| {label} | " + " | ".join(_fmt(_get(p["summary"], path), scale) for _, p in cols) + " |")
        out.append("| tier mix | " + " | ".join(_mix(p["summary"].get("tier_mix") or {}) for _, p in cols) + " |")
        out.append(
            "| cost USD (actual / all-frontier) | "
            + " | ".join(
                f"{p['cost']['actual_usd']:.4f} / {p['cost']['all_frontier_usd'].get(p['cost']['reference'], 0):.4f}"
                for _, p in cols
            )
            + " |"
        )
        out.append("")
    return "\n".join(out)


def _mix(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hybrid-router bench compare", description=__doc__)
    p.add_argument("results", nargs="+", help="results.json files written by `hybrid-router bench`")
    p.add_argument("--names", help="comma-separated column names (default: each file's parent folder)")
    p.add_argument("--out", help="write the Markdown here as well as printing it")
    args = p.parse_args(argv)
    names = args.names.split(",") if args.names else [Path(r).parent.name for r in args.results]
    if len(names) != len(args.results):
        p.error("--names needs one name per results file")
    runs = [(n, orjson.loads(Path(r).read_bytes())) for n, r in zip(names, args.results, strict=True)]
    text = render(runs)
    sys.stdout.write(text + "\n")  # the command's output
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0
