"""`hybrid-router bench`: load-test any OpenAI-compatible server and write a report.

    hybrid-router bench --base-url http://127.0.0.1:8080/v1 --workload benchmarks/workloads/hybrid_mix.jsonl \\
        --rate 5 --duration 30
    hybrid-router bench --base-url … --workload … --concurrency 1,4,16 --num-requests 200
    hybrid-router bench compare out/a/results.json out/b/results.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

from router.bench import report
from router.bench.client import Target
from router.bench.prices import DEFAULT_REFERENCE, load_prices
from router.bench.runner import LoadSpec, order, run_point
from router.bench.stats import SLO
from router.bench.workload import WorkItem, WorkloadError, load

DEFAULT_WORKLOAD = "benchmarks/workloads/hybrid_mix.jsonl"


def _levels(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("levels must be > 0")
    return values


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hybrid-router bench",
        description="Load-test an OpenAI-compatible endpoint (this router, a peer gateway, vLLM, Ollama, "
        "llama.cpp's server) and write a summary, a JSON file of every request, a Markdown report and plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    t = p.add_argument_group("target")
    t.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1")
    t.add_argument("--model", help="model to ask for (default: the first one /models lists)")
    t.add_argument("--api-key", default=os.environ.get("BENCH_API_KEY"), help="bearer token (env BENCH_API_KEY)")
    t.add_argument("--header", action="append", type=_header, default=[], help="extra header NAME:VALUE (repeat)")
    t.add_argument("--no-stream", action="store_true", help="ask for whole answers (TTFT then equals E2E)")
    t.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    w = p.add_argument_group("workload")
    w.add_argument("--workload", default=DEFAULT_WORKLOAD, help="JSONL (native) or ShareGPT JSON/JSONL file")
    w.add_argument("--max-tokens", type=int, default=128, help="max_tokens for items that give none")
    w.add_argument("--max-tokens-cap", type=int, help="cap every request's max_tokens, the workload's included")
    w.add_argument("--temperature", type=float, help="sampling temperature sent with every request")
    w.add_argument(
        "--no-shuffle", action="store_true", help="cycle through the file in order (default: seeded shuffle)"
    )
    load_ = p.add_argument_group("load (give --rate or --concurrency; comma-separated values make a sweep)")
    mode = load_.add_mutually_exclusive_group(required=True)
    mode.add_argument("--rate", type=_levels, help="open loop: requests per second")
    mode.add_argument("--concurrency", type=_levels, help="closed loop: requests in flight")
    load_.add_argument("--arrival", choices=("poisson", "gamma", "constant"), default="poisson")
    load_.add_argument("--burstiness", type=float, default=1.0, help="gamma shape k: 1 = Poisson, <1 burstier")
    load_.add_argument("--duration", type=float, help="seconds per load point after the warm-up")
    load_.add_argument("--num-requests", type=int, help="measured requests per load point")
    load_.add_argument("--warmup", type=float, default=0.0, help="seconds of load sent first and not measured")
    load_.add_argument("--cooldown", type=float, default=1.0, help="pause between sweep points, seconds")
    load_.add_argument("--seed", type=int, default=0)
    m = p.add_argument_group("metrics")
    m.add_argument("--slo-ttft-ms", type=float, help="goodput SLO on time to first token")
    m.add_argument("--slo-tpot-ms", type=float, help="goodput SLO on time per output token")
    m.add_argument("--slo-e2e-ms", type=float, help="goodput SLO on end-to-end latency")
    m.add_argument("--prices", help="JSON/YAML price table overriding the defaults (USD per 1M tokens)")
    m.add_argument("--reference-model", default=DEFAULT_REFERENCE, help="all-frontier model for the headline saving")
    m.add_argument("--assume-tier", default="local", help="tier of answers without an x-router-tier header")
    o = p.add_argument_group("output")
    o.add_argument("--out", help="output directory (default benchmarks/out/<UTC time>)")
    o.add_argument("--name", help="title of the report (default: the base URL)")
    o.add_argument("--no-plots", action="store_true")
    o.add_argument("--no-progress", action="store_true", help="no live progress bar (default: on a terminal)")
    return p


def main(argv: list[str]) -> int:
    if argv and argv[0] == "compare":
        from router.bench.compare import main as compare_main

        return compare_main(argv[1:])
    args = parser().parse_args(argv)
    if args.duration is None and args.num_requests is None:
        print("hybrid-router bench: give --duration or --num-requests", file=sys.stderr)
        return 2
    try:
        items = load(args.workload)
    except (OSError, WorkloadError) as exc:
        print(f"hybrid-router bench: cannot read the workload: {exc}", file=sys.stderr)
        return 2
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run  # type: ignore[assignment]
    try:
        run = runner(_run(args, items, argv))
    except KeyboardInterrupt:
        return 130
    if run is None:
        return 1
    write_outputs(run, args)
    return 0


def _slo(args: argparse.Namespace) -> SLO:
    return SLO(
        ttft=args.slo_ttft_ms / 1e3 if args.slo_ttft_ms else None,
        tpot=args.slo_tpot_ms / 1e3 if args.slo_tpot_ms else None,
        e2e=args.slo_e2e_ms / 1e3 if args.slo_e2e_ms else None,
    )


def write_outputs(run: report.RunReport, args: argparse.Namespace) -> None:
    slo = _slo(args)
    out_dir = Path(args.out or Path("benchmarks/out") / datetime.now(UTC).strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=True)
    print(report.terminal(run, slo))
    (out_dir / "results.json").write_bytes(report.to_json(run))
    plots: list[str] = []
    if not args.no_plots:
        from router.bench.plots import write_all

        title = args.name or f"{run.meta['target']['base_url']} ({run.meta['target']['model']})"
        plots = write_all(run.points, out_dir, title)
    (out_dir / "report.md").write_text(report.markdown(run, slo, plots))
    written = ["results.json", "report.md", *(Path(p).name for p in plots)]
    print(f"\nwrote {', '.join(written)} to {out_dir}")


async def _resolve_model(session: aiohttp.ClientSession, base_url: str, headers: dict[str, str]) -> str:
    async with session.get(base_url.rstrip("/") + "/models", headers=headers) as resp:
        resp.raise_for_status()
        data = orjson.loads(await resp.read())
    models = [m["id"] for m in data.get("data", [])]
    if not models:
        raise RuntimeError("the server lists no models; pass --model")
    return str(models[0])


async def _run(args: argparse.Namespace, items: list[WorkItem], argv: list[str]) -> report.RunReport | None:
    slo = _slo(args)
    prices = load_prices(args.prices)
    if args.reference_model not in prices:
        print(f"hybrid-router bench: no price for --reference-model {args.reference_model!r}", file=sys.stderr)
        return None
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session:
        target = Target(
            base_url=args.base_url,
            model=args.model or "",
            api_key=args.api_key,
            stream=not args.no_stream,
            max_tokens=args.max_tokens,
            max_tokens_cap=args.max_tokens_cap,
            temperature=args.temperature,
            extra_headers=dict(args.header),
        )
        if not target.model:
            try:
                target.model = await _resolve_model(session, args.base_url, target.headers())
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                print(f"hybrid-router bench: cannot list models at {args.base_url}: {exc}", file=sys.stderr)
                return None
        workload = order(items, shuffle=not args.no_shuffle, seed=args.seed)
        mode, levels = ("open", args.rate) if args.rate else ("closed", args.concurrency)
        show = not args.no_progress and sys.stderr.isatty()
        run = report.RunReport(
            meta={
                "command": "hybrid-router bench " + shlex.join(argv),
                "machine": report.machine_info(),
                "target": {"base_url": args.base_url, "model": target.model, "stream": target.stream},
                "workload": {"path": args.workload, "items": len(items)},
                "slo_ms": {"ttft": args.slo_ttft_ms, "tpot": args.slo_tpot_ms, "e2e": args.slo_e2e_ms},
            }
        )
        for n, level in enumerate(levels):
            if n and args.cooldown > 0:
                await asyncio.sleep(args.cooldown)
            spec = LoadSpec(
                mode=mode,
                level=level,
                duration=args.duration,
                count=args.num_requests,
                warmup=args.warmup,
                process=args.arrival,
                burstiness=args.burstiness,
                seed=args.seed + n,
                drain_timeout=args.timeout,
            )
            label = f"[{n + 1}/{len(levels)}] {spec.label}"
            if not show:
                print(f"{label}: running…", file=sys.stderr, flush=True)
            result = await run_point(session, target, workload, spec, show_progress=show, label=label)
            summary = report.stats.summarise(result.records, slo)
            cost = report.cost_of(result.records, prices, args.reference_model, args.assume_tier)
            run.points.append(report.PointReport(result, summary, cost))
    return run
