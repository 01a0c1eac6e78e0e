"""Routing quality of the learned router on held-out and public prompt sets, and its decision latency.

    python benchmarks/routing_data.py            # once: rebuild the sets from the fetched public repos
    python benchmarks/routing_quality.py [--data DIR] [--model FILE] [--threshold T]

Prints, per set: frontier-labelled prompts sent to the frontier, local-labelled prompts kept local. `heldout` is
the held-out split of the training sources (whole templates/files never trained on); every `report_*` set is a
public set the model never saw. Then the priced 80/20 mix: 800 local-labelled prompts from the public report
sets and 200 frontier-labelled ones, each priced on the reference frontier model (input tokens estimated from
the prompt, a fixed answer length), all-frontier cost divided by routed cost (local answers priced at the local
rate below). Finally the decision latency (policy.decide on a 2 KB prompt, compiled and pure-Python twin).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import orjson

from router import fastpath
from router.config import Settings
from router.http.openai import parse_chat_request
from router.routing import learned
from router.routing.policy import RoutingPolicy

# Published prices, USD per million tokens (Anthropic, Claude Opus 4.1: $15 in / $75 out) and an assumed
# self-hosted small-model rate (engine time on a CPU VM, amortised): what "local" costs in the ratio.
FRONTIER_IN, FRONTIER_OUT = 15.0, 75.0
LOCAL_IN, LOCAL_OUT = 0.05, 0.10
ANSWER_TOKENS = 300  # the same assumed answer length for every request (the counterfactual is the frontier's)
MIX_LOCAL, MIX_FRONTIER = 800, 200


def load(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def rates(model: learned.LearnedRouter, rows: list[dict], threshold: float) -> tuple[float | None, float | None]:
    y = np.asarray([r["label"] == "frontier" for r in rows])
    p = np.asarray([model.predict(r["prompt"]).p_frontier >= threshold for r in rows])
    recall = float(np.mean(p[y])) if y.any() else None
    kept = float(np.mean(~p[~y])) if (~y).any() else None
    return recall, kept


def priced_mix(
    model: learned.LearnedRouter, reports: dict[str, list[dict]], threshold: float, local_sets: tuple[str, ...] = ()
) -> dict:
    """800 local-labelled + 200 frontier-labelled (English) prompts from the report sets (local ones from
    `local_sets` when given), each priced on the frontier and, when routed local, at the local rate."""
    rng = random.Random(7)
    pools = {k: v for k, v in reports.items() if not local_sets or k in local_sets}
    local = [r for rows in pools.values() for r in rows if r["label"] == "local"]
    frontier = [r for rows in reports.values() for r in rows if r["label"] == "frontier" and r.get("lang") == "en"]
    # A pool smaller than its share is drawn with replacement, so the mix stays 80/20.
    pick = lambda pool, k: rng.sample(pool, k) if len(pool) >= k else rng.choices(pool, k=k)  # noqa: E731
    mix = pick(local, MIX_LOCAL) + pick(frontier, MIX_FRONTIER)
    all_frontier = routed = perfect = 0.0
    sent = 0
    for r in mix:
        tokens = fastpath.estimate_tokens(r["prompt"])
        frontier_cost = (tokens * FRONTIER_IN + ANSWER_TOKENS * FRONTIER_OUT) / 1e6
        local_cost = (tokens * LOCAL_IN + ANSWER_TOKENS * LOCAL_OUT) / 1e6
        all_frontier += frontier_cost
        perfect += frontier_cost if r["label"] == "frontier" else local_cost
        if model.predict(r["prompt"]).p_frontier >= threshold:
            routed += frontier_cost
            sent += 1
        else:
            routed += local_cost
    return {
        "requests": len(mix),
        "sent_to_frontier": sent,
        "all_frontier_usd": round(all_frontier, 4),
        "routed_usd": round(routed, 4),
        "cost_ratio": round(all_frontier / routed, 2),
        "perfect_routing_ratio": round(all_frontier / perfect, 2),  # the ceiling for this mix and these prices
    }


def latency(policy: RoutingPolicy, compiled: bool, n: int) -> tuple[float, float]:
    text = ("We need to plan the migration of our billing service to a new database; list the risks. " * 30)[:2048]
    request = parse_chat_request({"model": "auto", "messages": [{"role": "user", "content": text}]})
    if not compiled:  # the pure-Python twin behind the same policy
        policy = RoutingPolicy(Settings(), frontier_models=("claude",))
        policy.model = learned.LearnedRouter(policy.model.path, pure_python=True)
    for _ in range(min(n, 200)):
        policy.decide(request)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        policy.decide(request)
        samples.append((time.perf_counter_ns() - t0) / 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="/work/shared/routing", help="folder of routing_data.py's output")
    parser.add_argument("--model", default=str(learned.DEFAULT_MODEL))
    parser.add_argument("--threshold", type=float, help="default: the model's own")
    parser.add_argument("--latency-runs", type=int, default=5000)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "heldout.jsonl").is_file():
        print(f"no data in {data}: run benchmarks/routing_data.py first", file=sys.stderr)
        return 2
    model = learned.LearnedRouter(args.model)
    threshold = args.threshold if args.threshold is not None else model.default_threshold
    print(f"model {model.version} ({args.model}), threshold {threshold}, compiled={fastpath.COMPILED}")
    print(f"{'set':44} {'rows':>6} {'frontier->frontier':>19} {'local->local':>13}")
    reports: dict[str, list[dict]] = {}
    for path in [data / "heldout.jsonl", *sorted(data.glob("report_*.jsonl"))]:
        rows = load(path)
        if path.name.startswith("report_"):
            reports[path.stem] = rows
        recall, kept = rates(model, rows, threshold)
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{path.stem:44} {len(rows):>6} {fmt(recall):>19} {fmt(kept):>13}")
    mix = priced_mix(model, reports, threshold)
    print("priced 80/20 mix, local from every report set:", orjson.dumps(mix).decode())
    sets = ("report_banking77_inline_labels", "report_mt_bench", "report_self_instruct_user_oriented")
    english = priced_mix(model, reports, threshold, sets)
    print("priced 80/20 mix, local from banking77, MT-bench, self-instruct:", orjson.dumps(english).decode())
    policy = RoutingPolicy(Settings(), frontier_models=("claude",))
    for compiled in (True, False):
        if compiled and not fastpath.COMPILED:
            continue
        runs = args.latency_runs if compiled else max(50, args.latency_runs // 50)
        p50, p99 = latency(policy, compiled, runs)
        name = "compiled" if compiled else "pure-Python twin"
        print(f"decision latency, 2 KB prompt, {name}: p50 {p50:.1f} us, p99 {p99:.1f} us ({runs} runs)")
    print("(the embedding is not used by the decision: no embedding cost on this path)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
