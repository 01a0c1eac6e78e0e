"""Gateway overhead: one mock upstream reached (a) directly, (b) through this router, (c) through LiteLLM's proxy.

All three run in the same invocation, in interleaved rounds (the order rotates every round), so drift on a shared
machine lands on every target alike. Figures:

- added latency (gateway − direct), p50 and p99, at concurrency 1, pooled over the rounds (and per round);
- CPU time per request of each gateway process, from /proc/<pid>/stat (utime + stime, process and children);
- the highest open-loop Poisson rate each sustains with p99 ≤ 5 ms and no errors (latency from scheduled send);
- with --profile (or when a target is missed), a py-spy profile of the router under load: where the time goes.

    python benchmarks/gateway_overhead.py                      # everything, defaults below
    python benchmarks/gateway_overhead.py --rounds 3 --no-litellm --profile

LiteLLM runs as `litellm --config … --num_workers 1` with callbacks off; `--litellm-bin` picks the executable
(default: the one installed next to this Python, i.e. `pip install -e .[bench]`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from router.bench.client import Target
from router.bench.report import machine_info
from router.bench.runner import LoadSpec, PointResult, run_point
from router.bench.stats import Dist, percentile
from router.bench.workload import WorkItem

TARGET_ADDED_P99_S = 0.0008
TARGET_RATIO_VS_LITELLM = 10.0
TARGET_RPS_PER_CORE = 3000.0
SUSTAIN_P99_S = 0.005

ITEM = WorkItem(
    id="overhead",
    messages=[
        {"role": "system", "content": "Answer with one label only."},
        {"role": "user", "content": 'Classify the sentiment: "The battery lasts two days and charging is quick."'},
    ],
    max_tokens=16,
)


# -- processes -----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live descendants, from /proc (all threads included)."""
    total = 0
    for p in [pid, *_descendants(pid)]:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                for child in (task / "children").read_text().split():
                    out += [int(child), *_descendants(int(child))]
    return out


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)  # its own session: only what we started
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None, cwd: str | None = None) -> Proc:
    log = workdir / f"{name}.log"
    popen = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    return Proc(name, popen, log)


async def wait_ready(session: aiohttp.ClientSession, url: str, proc: Proc, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}; see {proc.log}")
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200:
                    return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready after {within:.0f} s; see {proc.log}")


def router_config(path: Path, port: int, mock_port: int, ledger: Path | None) -> None:
    # Pass-through: nothing that would answer without the upstream (the response cache: every request here is the
    # same, so all but the first would be cache hits) or that LiteLLM's side has off too (spend logging: the cost
    # ledger). Routing, validation, metrics and limits stay on.
    path.write_text(
        f"""server:
  host: 127.0.0.1
  port: {port}
  log_level: warning
models:
  - name: mock
    engine: openai_http
    base_url: http://127.0.0.1:{mock_port}/v1
    upstream_model: mock
    api_key_env: null
cache:
  enabled: false
embeddings:
  enabled: false
accounting:
  ledger_path: "{ledger or ""}"
"""
    )


def litellm_config(path: Path, mock_port: int) -> None:
    # Callbacks, logging, spend tracking and telemetry off: measure the proxy path, not its extras. No master key
    # (the router has no auth configured either), which LiteLLM only allows with the explicit local-dev switch.
    path.write_text(
        f"""model_list:
  - model_name: mock
    litellm_params:
      model: openai/mock
      api_base: http://127.0.0.1:{mock_port}/v1
      api_key: sk-mock
litellm_settings:
  callbacks: []
  success_callback: []
  failure_callback: []
  set_verbose: false
  telemetry: false
  turn_off_message_logging: true
  drop_params: true
general_settings:
  disable_spend_logs: true
  dangerously_permit_weak_or_unset_master_key: true
"""
    )


@dataclass
class Gateway:
    name: str
    base_url: str
    proc: Proc | None  # the process whose CPU is charged to this path (direct: the mock itself)
    latencies: dict[str, list[float]] = field(default_factory=dict)  # mode → e2e seconds, c=1, pooled
    per_round_p50: dict[str, list[float]] = field(default_factory=dict)
    per_round_p99: dict[str, list[float]] = field(default_factory=dict)
    c1_cpu_s: float = 0.0
    c1_requests: int = 0
    c1_client_cpu: list[float] = field(default_factory=list)
    sustain: list[dict[str, Any]] = field(default_factory=list)
    failed_rates: int = 0
    saturation: list[dict[str, Any]] = field(default_factory=list)
    cache_mix: Counter[str] = field(default_factory=Counter)  # x-router-cache values seen (must be miss/bypass)


# -- measurement ---------------------------------------------------------------------------------------------


def target_for(gw: Gateway, stream: bool) -> Target:
    return Target(base_url=gw.base_url, model="mock", stream=stream, max_tokens=16, temperature=0.0)


async def run_charged(
    session: aiohttp.ClientSession, gw: Gateway, spec: LoadSpec, stream: bool
) -> tuple[PointResult, float]:
    """One load point against `gw`, and the CPU seconds its process used meanwhile."""
    pid = gw.proc.pid if gw.proc else None
    before = cpu_seconds(pid) if pid else 0.0
    result = await run_point(session, target_for(gw, stream), [ITEM], spec, show_progress=False)
    after = cpu_seconds(pid) if pid else 0.0
    gw.cache_mix.update(r.cache for r in result.records if r.cache)
    return result, after - before


async def c1_rounds(
    session: aiohttp.ClientSession, gateways: list[Gateway], modes: list[str], rounds: int, n: int
) -> None:
    for r in range(rounds):
        order = gateways[r % len(gateways) :] + gateways[: r % len(gateways)]
        for mode in modes:
            for gw in order:
                spec = LoadSpec(mode="closed", level=1, count=n, seed=r)
                result, cpu = await run_charged(session, gw, spec, stream=mode == "stream")
                ok = [x.e2e for x in result.records if x.ok]
                errors = Counter(x.error for x in result.records if x.error)
                if errors:
                    print(f"  {gw.name} {mode}: errors {dict(errors)}", file=sys.stderr)
                gw.latencies.setdefault(mode, []).extend(ok)
                gw.per_round_p50.setdefault(mode, []).append(percentile(ok, 50))
                gw.per_round_p99.setdefault(mode, []).append(percentile(ok, 99))
                gw.c1_cpu_s += cpu
                gw.c1_requests += len(result.records)
                gw.c1_client_cpu.append(result.client_cpu_fraction)
        direct = gateways[0]
        line = "  ".join(
            f"{gw.name} {modes[0]} p50 {gw.per_round_p50[modes[0]][-1] * 1e3:.3f} ms "
            f"(+{(gw.per_round_p50[modes[0]][-1] - direct.per_round_p50[modes[0]][-1]) * 1e3:.3f})"
            for gw in gateways
        )
        print(f"round {r + 1}/{rounds}: {line}", flush=True)


async def saturate(
    session: aiohttp.ClientSession, gateways: list[Gateway], rounds: int, concurrency: int, seconds: float
) -> None:
    """Closed loop at `concurrency`: the gateway busy back to back. CPU per request here is the per-core figure:
    fixed per-wakeup costs are shared by many requests, as on a loaded server."""
    for r in range(rounds):
        for gw in gateways[r % len(gateways) :] + gateways[: r % len(gateways)]:
            spec = LoadSpec(mode="closed", level=concurrency, duration=seconds, warmup=0.5)
            result, cpu = await run_charged(session, gw, spec, stream=True)
            n = len(result.records)
            ok = [x.e2e for x in result.records if x.ok and not x.warmup]
            row = {
                "concurrency": concurrency,
                "requests": n,
                "errors": sum(1 for x in result.records if not x.ok),
                "throughput_rps": len(ok) / seconds,
                "p50_ms": percentile(ok, 50) * 1e3,
                "p99_ms": percentile(ok, 99) * 1e3,
                "cpu_per_request_us": cpu / n * 1e6 if n else None,
                "gateway_cores_used": cpu / result.wall_s,
                "client_cpu_fraction": result.client_cpu_fraction,
            }
            gw.saturation.append(row)
            print(
                f"  {gw.name:<8} c={concurrency}  {row['throughput_rps']:7.0f} req/s  p50 {row['p50_ms']:6.2f} ms  "
                f"cpu/req {row['cpu_per_request_us'] or 0:6.0f} µs  gateway {row['gateway_cores_used']:.2f} cores  "
                f"client {result.client_cpu_fraction:.0%}",
                flush=True,
            )


async def sustain(session: aiohttp.ClientSession, gateways: list[Gateway], rates: list[float], duration: float) -> None:
    for rate in rates:
        for gw in gateways:
            if gw.failed_rates >= 2:
                continue  # two failed rates in a row: it will not pass higher ones
            spec = LoadSpec(mode="open", level=rate, duration=duration, warmup=0.5, drain_timeout=10, seed=int(rate))
            result, cpu = await run_charged(session, gw, spec, stream=True)
            measured = [x for x in result.records if not x.warmup]
            ok = [x.e2e for x in measured if x.ok]
            p99 = percentile(ok, 99)
            errors = len(measured) - len(ok)
            passed = errors == 0 and bool(ok) and p99 <= SUSTAIN_P99_S
            gw.failed_rates = 0 if passed else gw.failed_rates + 1
            row = {
                "rate": rate,
                "requests": len(result.records),
                "errors": errors,
                "p50_ms": percentile(ok, 50) * 1e3,
                "p99_ms": p99 * 1e3,
                "passed": passed,
                "cpu_s": cpu,
                "cpu_per_request_us": cpu / len(result.records) * 1e6 if result.records else None,
                "client_cpu_fraction": result.client_cpu_fraction,
                "send_lag_p99_ms": Dist.of(x.send_lag for x in measured).p99 * 1e3,
                "generator_warnings": result.generator_warnings(),
            }
            gw.sustain.append(row)
            print(
                f"  {gw.name:<8} {rate:>6g}/s  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  "
                f"errors {errors}  cpu/req {row['cpu_per_request_us'] or 0:6.0f} µs  "
                f"client {result.client_cpu_fraction:.0%}  {'PASS' if passed else 'fail'}"
                + (f"  [{'; '.join(row['generator_warnings'])}]" if row["generator_warnings"] else ""),
                flush=True,
            )


async def profile_router(
    session: aiohttp.ClientSession, router: Gateway, out_dir: Path, seconds: float, concurrency: int
) -> dict[str, Any]:
    """py-spy the router while a closed-loop load runs; return the top frames by own and total time."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None or router.proc is None:
        return {"error": "py-spy not installed"}
    raw = out_dir / "router_profile.collapsed"
    spy = await asyncio.create_subprocess_exec(
        py_spy, "record", "--pid", str(router.proc.pid), "--duration", str(int(seconds)), "--rate", "1000",
        "--format", "raw", "--nonblocking", "--gil", "--threads", "--output", str(raw),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(1.0)  # py-spy attaches
    spec = LoadSpec(mode="closed", level=concurrency, duration=seconds - 1.5)
    result, cpu = await run_charged(session, router, spec, stream=True)
    _, err = await spy.communicate()
    if spy.returncode != 0 or not raw.exists():
        return {"error": f"py-spy failed: {err.decode(errors='replace')[-500:]}"}
    return summarise_profile(raw) | {
        "requests": len(result.records),
        "cpu_per_request_us": cpu / max(1, len(result.records)) * 1e6,
        "raw": raw.name,
    }


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Own time (leaf frame) and total time (anywhere on the stack) per function, as shares of all samples.

    Recorded with `--gil`, a sample is a moment some thread held the GIL, i.e. ran Python: time in syscalls and
    waits that release the GIL is not counted, CPU spent by other threads competing for the GIL is.
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    by_area: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        thread = "?"
        if frames[0].startswith("thread ("):
            thread = frames[0].split(": ", 1)[1] if ": " in frames[0] else frames[0]
            frames = frames[1:]
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        samples += n
        by_thread[thread] += n
        own[frames[-1]] += n
        for f in set(frames):
            total[f] += n
        by_area[_area(frames[-1])] += n

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, v / samples) for k, v in c.most_common(top)] if samples else []

    return {
        "samples": samples,
        "own": share(own),
        "total": share(total),
        "own_by_area": share(by_area),
        "by_thread": share(by_thread),
    }


def _area(frame: str) -> str:
    """Which library a frame belongs to, from its file path."""
    path = frame[frame.find("(") + 1 : frame.rfind(":")] if "(" in frame else frame
    for key in ("router/", "aiohttp/", "asyncio/", "multidict", "yarl/", "orjson", "uvloop", "pydantic", "json/"):
        if key in path:
            return key.rstrip("/")
    return "other: " + path.rsplit("/", 2)[-1] if "/" in path else "other"


# -- report --------------------------------------------------------------------------------------------------


def summarise(gateways: list[Gateway], modes: list[str]) -> dict[str, Any]:
    direct = gateways[0]
    out: dict[str, Any] = {}
    for gw in gateways:
        entry: dict[str, Any] = {"c1": {}, "sustain": gw.sustain}
        for mode in modes:
            lat, base = gw.latencies.get(mode, []), direct.latencies.get(mode, [])
            d, b = Dist.of(lat), Dist.of(base)
            entry["c1"][mode] = {
                "n": d.n,
                "p50_ms": d.p50 * 1e3,
                "p99_ms": d.p99 * 1e3,
                "mean_ms": d.mean * 1e3,
                "added_p50_ms": (d.p50 - b.p50) * 1e3,
                "added_p99_ms": (d.p99 - b.p99) * 1e3,
                "added_p50_per_round_ms": [
                    (x - y) * 1e3 for x, y in zip(gw.per_round_p50[mode], direct.per_round_p50[mode], strict=True)
                ],
                "added_p99_per_round_ms": [
                    (x - y) * 1e3 for x, y in zip(gw.per_round_p99[mode], direct.per_round_p99[mode], strict=True)
                ],
            }
        entry["cache_mix"] = dict(gw.cache_mix)
        entry["c1_cpu_per_request_us"] = gw.c1_cpu_s / gw.c1_requests * 1e6 if gw.c1_requests else None
        passing = [r for r in gw.sustain if r["passed"]]
        best = max(passing, key=lambda r: r["rate"]) if passing else None
        entry["max_rate_p99_le_5ms"] = best["rate"] if best else None
        sat = [r["cpu_per_request_us"] for r in gw.saturation if r["cpu_per_request_us"]]
        cpu_req = statistics.median(sat) if sat else None
        entry["saturation"] = gw.saturation
        entry["cpu_per_request_us_saturated"] = cpu_req
        entry["requests_per_core_second"] = 1e6 / cpu_req if cpu_req else None
        out[gw.name] = entry
    return out


def verdict(summary: dict[str, Any], mode: str) -> list[str]:
    lines = []
    router = summary.get("router")
    if router is None:
        return lines
    hits = sum(v for k, v in router["cache_mix"].items() if k.startswith("hit"))
    if hits:
        lines.append(f"INVALID: the router answered {hits} requests from its cache; they never reached the upstream")
    added_p99 = router["c1"][mode]["added_p99_ms"]
    ok = added_p99 <= TARGET_ADDED_P99_S * 1e3
    lines.append(f"added p99 at c=1 ({mode}): {added_p99:.3f} ms (target ≤ 0.8 ms): {'MET' if ok else 'MISSED'}")
    lite = summary.get("litellm")
    if lite is not None:
        r50, l50 = router["c1"][mode]["added_p50_ms"], lite["c1"][mode]["added_p50_ms"]
        ratio = l50 / r50 if r50 > 0 else math.inf
        lines.append(
            f"added p50 LiteLLM / router ({mode}): {ratio:.1f}x (target ≥ 10x): {'MET' if ratio >= 10 else 'MISSED'}"
        )
    floor = summary.get("floor")
    if floor is not None and floor["cpu_per_request_us_saturated"] and router["cpu_per_request_us_saturated"]:
        r_cpu, f_cpu = router["cpu_per_request_us_saturated"], floor["cpu_per_request_us_saturated"]
        lines.append(
            f"CPU/request: router {r_cpu:.0f} µs, the stack's floor {f_cpu:.0f} µs (ratio {r_cpu / f_cpu:.2f}): "
            f"the router's own work {r_cpu - f_cpu:.0f} µs; target ≤ 150 µs in all: "
            f"{'MET' if r_cpu <= 150 else 'MISSED'}{' (the floor alone misses it)' if f_cpu > 150 else ''}"
        )
        f50, r50 = floor["c1"][mode]["added_p50_ms"], router["c1"][mode]["added_p50_ms"]
        lines.append(f"added p50 at c=1 ({mode}): router {r50:.3f} ms, floor {f50:.3f} ms (target ≤ 0.4 ms)")
    rps = router["requests_per_core_second"]
    if rps:
        lines.append(
            f"router requests per core-second: {rps:,.0f} (target ≥ 3,000): {'MET' if rps >= 3000 else 'MISSED'}"
        )
    return lines


def markdown(meta: dict[str, Any], summary: dict[str, Any], modes: list[str], verdicts: list[str],
             profile: dict[str, Any] | None) -> str:  # fmt: skip
    m = meta["machine"]
    out = [
        "## Gateway overhead",
        "",
        f"- date: {m['date']}; machine: {m['cpu']}, {m['cores']} cores (shared by client, mock and gateway); "
        f"Python {m['python']}",
        f"- command: `{meta['command']}`",
        f"- request: 1 system + 1 user message, `max_tokens` 16; mock answers 8 content chunks "
        f"(+ role, finish, usage, [DONE]) with no added latency; LiteLLM {meta.get('litellm_version', '-')}",
        f"- c=1: {meta['rounds']} interleaved rounds × {meta['requests_per_round']} requests per target and mode",
        "",
        "| target | mode | p50 ms | p99 ms | added p50 ms | added p99 ms | added p50 per round (min–max) "
        "| added p99, median of rounds |",
        "|---|---|---:|---:|---:|---:|---|---:|",
    ]
    for name, entry in summary.items():
        for mode in modes:
            c = entry["c1"][mode]
            per_round = c["added_p50_per_round_ms"]
            span = f"{min(per_round):.3f}–{max(per_round):.3f}" if name != "direct" else "-"
            p99_rounds = f"{statistics.median(c['added_p99_per_round_ms']):.3f}" if name != "direct" else "-"
            out.append(
                f"| {name} | {mode} | {c['p50_ms']:.3f} | {c['p99_ms']:.3f} | "
                f"{c['added_p50_ms']:.3f} | {c['added_p99_ms']:.3f} | {span} | {p99_rounds} |"
            )
    out += [
        "",
        "| target | CPU µs/request (c=1) | CPU µs/request (saturated) | requests per core-second | "
        "max rate with p99 ≤ 5 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, e in summary.items():
        label = name if name != "direct" else "direct (the mock's own CPU)"
        c1 = f"{e['c1_cpu_per_request_us']:.0f}" if e["c1_cpu_per_request_us"] is not None else "-"
        load = f"{e['cpu_per_request_us_saturated']:.0f}" if e["cpu_per_request_us_saturated"] else "-"
        rps = f"{e['requests_per_core_second']:,.0f}" if e["requests_per_core_second"] else "-"
        if e["max_rate_p99_le_5ms"]:
            best = f"{e['max_rate_p99_le_5ms']:g}/s"
        else:
            tried = ", ".join(f"{r['rate']:g}" for r in e["sustain"])
            best = f"none of {tried} /s" if tried else "not run"
        out.append(f"| {label} | {c1} | {load} | {rps} | {best} |")
    out += ["", "Saturation (closed loop, streaming; CPU from /proc, per round):", ""]
    out += ["| target | concurrency | req/s | p50 ms | p99 ms | errors | CPU µs/req | gateway cores | client CPU |"]
    out += ["|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, e in summary.items():
        for r in e["saturation"]:
            out.append(
                f"| {name} | {r['concurrency']} | {r['throughput_rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{r['errors']} | {r['cpu_per_request_us'] or 0:.0f} | {r['gateway_cores_used']:.2f} | "
                f"{r['client_cpu_fraction']:.0%} |"
            )
    out += ["", "Sustain runs (open loop, Poisson, latency from the scheduled send):", ""]
    out += ["| target | rate/s | p50 ms | p99 ms | errors | CPU µs/req | client CPU | pass | notes |"]
    out += ["|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for name, e in summary.items():
        for r in e["sustain"]:
            out.append(
                f"| {name} | {r['rate']:g} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | "
                f"{r['cpu_per_request_us'] or 0:.0f} | {r['client_cpu_fraction']:.0%} | "
                f"{'yes' if r['passed'] else 'no'} | {'; '.join(r['generator_warnings'])} |"
            )
    router = summary.get("router")
    if router is not None:
        mix = ", ".join(f"{k} {v}" for k, v in sorted(router["cache_mix"].items())) or "no header"
        out += ["", f"Router `x-router-cache` over the run: {mix} (pass-through: no hits allowed)."]
    out += ["", "Targets:", ""] + [f"- {v}" for v in verdicts]
    if profile and "own" in profile:
        out += [
            "",
            f"Router profile (py-spy --gil, {profile['samples']} samples while holding the GIL), by thread:",
            "",
        ]
        out += [f"- {k}: {v:.1%}" for k, v in profile.get("by_thread", [])[:6]]
        out += ["", "Own time by library:", ""]
        out += [f"- {k}: {v:.1%}" for k, v in profile["own_by_area"][:10]]
        out += ["", "Top functions by own time:", ""]
        out += [f"- {v:.1%} `{k}`" for k, v in profile["own"][:15]]
    return "\n".join(out) + "\n"


# -- main ----------------------------------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


async def amain(args: argparse.Namespace, out_dir: Path, work: Path, litellm_bin: str | None) -> dict[str, Any]:
    mock_port, router_port, litellm_port = free_port(), free_port(), free_port()
    procs: list[Proc] = []
    modes = args.modes.split(",")
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        try:
            mock = spawn("mock", [sys.executable, "-m", "router.bench.mock", "--port", str(mock_port)], work)
            procs.append(mock)
            await wait_ready(session, f"http://127.0.0.1:{mock_port}/v1/models", mock, 20)
            gateways = [Gateway("direct", f"http://127.0.0.1:{mock_port}/v1", mock)]
            router_config(
                work / "router.yaml", router_port, mock_port, work / "ledger.sqlite3" if args.router_ledger else None
            )
            router = spawn(
                "router", [sys.executable, "-m", "router.cli", "serve", "--config", str(work / "router.yaml")], work
            )
            procs.append(router)
            await wait_ready(session, f"http://127.0.0.1:{router_port}/readyz", router, 60)
            gateways.append(Gateway("router", f"http://127.0.0.1:{router_port}/v1", router))
            if args.floor:  # the stack's floor: aiohttp server + client relaying JSON, no router code at all
                floor_port = free_port()
                upstream = f"http://127.0.0.1:{mock_port}/v1"
                script = str(Path(__file__).with_name("floor_proxy.py"))
                argv = [sys.executable, script, "--port", str(floor_port), "--upstream", upstream]
                floor = spawn("floor", argv, work)
                procs.append(floor)
                await wait_ready(session, f"http://127.0.0.1:{floor_port}/readyz", floor, 30)
                gateways.append(Gateway("floor", f"http://127.0.0.1:{floor_port}/v1", floor))
            if args.baseline_tree:  # an older tree of the router, measured in the same run (before/after)
                base_port = free_port()
                router_config(work / "baseline.yaml", base_port, mock_port, None)
                base = spawn(
                    "baseline",
                    [sys.executable, "-m", "router.cli", "serve", "--config", str(work / "baseline.yaml")],
                    work,
                    {"PYTHONPATH": args.baseline_tree},
                    cwd=args.baseline_tree,
                )
                procs.append(base)
                await wait_ready(session, f"http://127.0.0.1:{base_port}/readyz", base, 60)
                gateways.append(Gateway("baseline", f"http://127.0.0.1:{base_port}/v1", base))
            if args.router_workers > 1:
                multi_port = free_port()
                router_config(work / "multi.yaml", multi_port, mock_port, None)
                argv = [sys.executable, "-m", "router.cli", "serve", "--config", str(work / "multi.yaml")]
                multi = spawn(f"router-x{args.router_workers}", [*argv, "--workers", str(args.router_workers)], work)
                procs.append(multi)
                await wait_ready(session, f"http://127.0.0.1:{multi_port}/readyz", multi, 60)
                gateways.append(Gateway(multi.name, f"http://127.0.0.1:{multi_port}/v1", multi))
            if not args.no_litellm:
                if litellm_bin is None:
                    print("litellm not found (pip install -e .[bench], or --litellm-bin); skipping it", file=sys.stderr)
                else:
                    litellm_config(work / "litellm.yaml", mock_port)
                    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
                    lite = spawn(
                        "litellm",
                        [litellm_bin, "--config", str(work / "litellm.yaml"), "--host", "127.0.0.1",
                         "--port", str(litellm_port), "--num_workers", "1"],
                        work,
                        env,
                    )  # fmt: skip
                    procs.append(lite)
                    await wait_ready(session, f"http://127.0.0.1:{litellm_port}/health/liveliness", lite, 120)
                    gateways.append(Gateway("litellm", f"http://127.0.0.1:{litellm_port}/v1", lite))
            print(f"targets: {', '.join(g.name for g in gateways)}; warming up", flush=True)
            for gw in gateways:
                for mode in modes:
                    await run_charged(
                        session, gw, LoadSpec(mode="closed", level=4, count=args.warmup), mode == "stream"
                    )
            await c1_rounds(session, gateways, modes, args.rounds, args.requests)
            print(f"saturation (closed loop, c={args.saturate_concurrency}):", flush=True)
            await saturate(session, gateways, 2, args.saturate_concurrency, args.saturate_seconds)
            if not args.no_sustain:
                print("sustain (open loop, Poisson; pass = p99 ≤ 5 ms and no errors):", flush=True)
                await sustain(session, gateways, _rates(args.rates), args.sustain_duration)
            summary = summarise(gateways, modes)
            verdicts = verdict(summary, modes[0])
            profile = None
            if args.profile or any("MISSED" in v for v in verdicts):
                print("profiling the router with py-spy…", flush=True)
                profile = await profile_router(session, gateways[1], out_dir, args.profile_seconds, 4)
        finally:
            for p in reversed(procs):
                p.stop()
    return {"summary": summary, "verdicts": verdicts, "profile": profile, "modes": modes}


def litellm_version(litellm_bin: str) -> str | None:
    python = Path(litellm_bin).parent / "python"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        code = "import importlib.metadata as m; print(m.version('litellm'))"
        return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds at concurrency 1")
    p.add_argument("--requests", type=int, default=400, help="requests per target, mode and round")
    p.add_argument("--warmup", type=int, default=300, help="warm-up requests per target and mode")
    p.add_argument("--modes", default="stream,json", help="stream and/or json (non-streaming); the first is headline")
    p.add_argument("--rates", default="10,50,100,200,400,700,1000,1500,2000,3000,4000", help="sustain rates, req/s")
    p.add_argument("--sustain-duration", type=float, default=5.0, help="seconds per sustain rate")
    p.add_argument("--saturate-concurrency", type=int, default=8, help="closed-loop concurrency of the CPU phase")
    p.add_argument("--saturate-seconds", type=float, default=4.0, help="seconds per target and round, CPU phase")
    p.add_argument("--no-sustain", action="store_true")
    p.add_argument("--no-litellm", action="store_true")
    p.add_argument("--litellm-bin", help="litellm executable (default: next to this Python)")
    p.add_argument("--router-ledger", action="store_true", help="keep the router's SQLite cost ledger on")
    p.add_argument("--profile", action="store_true", help="py-spy the router even if the targets are met")
    p.add_argument("--profile-seconds", type=float, default=8.0)
    p.add_argument("--floor", action="store_true", help="also measure benchmarks/floor_proxy.py: the stack's floor")
    p.add_argument("--baseline-tree", help="a checkout of an older router, measured as 'baseline' in the same run")
    p.add_argument("--router-workers", type=int, default=1, help="also measure `serve --workers N` (N > 1)")
    p.add_argument("--out", help="output directory (default benchmarks/out/overhead-<UTC time>)")
    args = p.parse_args()
    out_dir = Path(args.out or Path("benchmarks/out") / ("overhead-" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")))
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gateway-overhead-"))
    litellm_bin = args.litellm_bin or shutil.which("litellm", path=str(Path(sys.executable).parent))
    try:
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run  # type: ignore[assignment]
    result = run(amain(args, out_dir, work, litellm_bin))
    meta = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "machine": machine_info(),
        "rounds": args.rounds,
        "requests_per_round": args.requests,
        "litellm_version": litellm_version(litellm_bin) if litellm_bin and not args.no_litellm else None,
    }
    doc = {"meta": meta, **result}
    (out_dir / "overhead.json").write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    text = markdown(meta, result["summary"], result["modes"], result["verdicts"], result["profile"])
    (out_dir / "overhead.md").write_text(text)
    print("\n" + text)
    print(f"wrote {out_dir}/overhead.json, overhead.md (process logs in {work})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
