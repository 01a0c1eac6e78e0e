"""Pick the learned router's threshold for an operator's target, on a sample of their traffic.

Like RouteLLM's threshold calibration: the model's P(frontier) is fixed; what the operator chooses is where to
cut it. The sample is either JSON lines (`{"prompt"}` or `{"messages"}`, optionally `"label"`: local|frontier),
scored here with the configured model, or the ledger, which records each request's score at decision time (so
prompts never need to be stored). Targets, one at a time:

- frontier share: at most this fraction of requests goes to the frontier;
- cost ceiling: estimated frontier spend per 1,000 requests at most this many USD;
- quality floor (labelled samples only): at least this fraction of frontier-labelled requests goes to the frontier.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import orjson

from router.routing.learned import LearnedRouter


class CalibrationError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Sample:
    scores: np.ndarray  # P(frontier) per request
    cost_usd: np.ndarray  # what each request would cost on the frontier
    labels: np.ndarray | None  # 1 = frontier-labelled, 0 = local-labelled; None when unlabelled


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float
    target: str
    rows: int
    frontier_share: float
    cost_per_1k_usd: float  # estimated frontier spend per 1,000 requests at this threshold
    all_frontier_per_1k_usd: float
    frontier_recall: float | None  # share of frontier-labelled rows sent to the frontier
    local_kept: float | None  # share of local-labelled rows kept local

    def as_dict(self) -> dict[str, object]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        rounded = {k: round(v, 6) if isinstance(v, float) and k != "threshold" else v for k, v in out.items()}
        return rounded | {"config": f"routing:\n  threshold: {self.threshold!r}"}


def sample_from_jsonl(
    path: str | Path, model: LearnedRouter, price_in: float, price_out: float, completion_tokens: int
) -> Sample:
    from router.http.openai import parse_chat_request
    from router.routing.policy import context_tokens, scored_text

    scores, costs, labels = [], [], []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise CalibrationError(f"{path}:{n}: not JSON: {exc}") from None
            if not isinstance(row, dict):
                raise CalibrationError(f"{path}:{n}: expected an object")
            messages = row.get("messages")
            if messages is None and isinstance(row.get("prompt"), str):
                messages = [{"role": "user", "content": row["prompt"]}]
            try:
                request = parse_chat_request({"model": "auto", "messages": messages})
            except Exception as exc:  # any bad row is reported with its line number
                raise CalibrationError(f"{path}:{n}: needs 'prompt' or valid 'messages': {exc}") from None
            scores.append(model.predict(scored_text(request)).p_frontier)
            costs.append((context_tokens(request) * price_in + completion_tokens * price_out) / 1e6)
            label = row.get("label")
            if label is not None and label not in ("local", "frontier"):
                raise CalibrationError(f"{path}:{n}: label must be 'local' or 'frontier', got {label!r}")
            labels.append(label)
    if not scores:
        raise CalibrationError(f"{path}: no rows")
    labelled = all(label is not None for label in labels)
    y = np.asarray([label == "frontier" for label in labels], dtype=np.int8) if labelled else None
    return Sample(np.asarray(scores), np.asarray(costs), y)


def sample_from_ledger(path: str | Path, since: float = 0.0) -> Sample:
    """Routed requests from the ledger: their recorded score and their tokens priced on the reference model."""
    if not Path(path).is_file():
        raise CalibrationError(f"no ledger at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT route_score, counterfactual_usd FROM requests "
            "WHERE route_score >= 0 AND status = 'ok' AND route_rule IN ('learned', 'default') AND ts >= ?",
            (since,),
        ).fetchall()
    except sqlite3.OperationalError as exc:
        raise CalibrationError(f"{path}: not a ledger with routing scores ({exc})") from None
    finally:
        conn.close()
    if not rows:
        raise CalibrationError(f"{path}: no requests routed by the learned rule yet")
    data = np.asarray(rows, dtype=np.float64)
    return Sample(data[:, 0], data[:, 1], None)


def calibrate(
    sample: Sample,
    frontier_share: float | None = None,
    max_cost_per_1k: float | None = None,
    min_recall: float | None = None,
) -> Calibration:
    given = [v is not None for v in (frontier_share, max_cost_per_1k, min_recall)]
    if sum(given) != 1:
        raise CalibrationError("give exactly one target: frontier share, cost ceiling or quality floor")
    scores = sample.scores
    # Candidate thresholds: just above each distinct score (so "score >= t" changes one request at a time).
    candidates = np.unique(np.concatenate([[0.0], np.nextafter(np.unique(scores), 2.0), [1.0 + 1e-9]]))
    if min_recall is not None:
        if sample.labels is None or not sample.labels.any():
            raise CalibrationError("a quality floor needs a labelled sample with frontier-labelled rows")
        frontier_scores = scores[sample.labels == 1]
        ok = [t for t in candidates if np.mean(frontier_scores >= t) >= min_recall]
        threshold, target = max(ok), f"frontier recall >= {min_recall}"
    elif frontier_share is not None:
        ok = [t for t in candidates if np.mean(scores >= t) <= frontier_share]
        threshold, target = min(ok), f"frontier share <= {frontier_share}"
    else:
        per_1k = [(t, 1000 * float(np.sum(sample.cost_usd[scores >= t])) / len(scores)) for t in candidates]
        ok = [t for t, cost in per_1k if cost <= max_cost_per_1k]  # type: ignore[operator]
        threshold, target = min(ok), f"frontier cost per 1k requests <= ${max_cost_per_1k}"
    return _report(sample, float(threshold), target)


def _report(sample: Sample, threshold: float, target: str) -> Calibration:
    scores, n = sample.scores, len(sample.scores)
    to_frontier = scores >= threshold
    recall = kept = None
    if sample.labels is not None:
        y = sample.labels == 1
        recall = float(np.mean(to_frontier[y])) if y.any() else None
        kept = float(np.mean(~to_frontier[~y])) if (~y).any() else None
    return Calibration(
        threshold=threshold,
        target=target,
        rows=n,
        frontier_share=float(np.mean(to_frontier)),
        cost_per_1k_usd=1000 * float(np.sum(sample.cost_usd[to_frontier])) / n,
        all_frontier_per_1k_usd=1000 * float(np.sum(sample.cost_usd)) / n,
        frontier_recall=recall,
        local_kept=kept,
    )
