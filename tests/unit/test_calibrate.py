"""`hybrid-router calibrate`: the threshold meets the target on the sample, from JSON lines or the ledger."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from router.accounting.ledger import Entry, Ledger
from router.config import Settings
from router.http.openai import parse_chat_request
from router.routing.calibrate import CalibrationError, Sample, calibrate, sample_from_jsonl, sample_from_ledger
from router.routing.learned import shared
from router.routing.policy import RoutingPolicy

LOCAL = [
    "Classify this review as positive or negative: {}",
    "Extract every date mentioned in this text as a JSON list: {}",
    "Is this message spam or not spam? {}",
]
FRONTIER = [
    "Write a persuasive, nuanced essay that weighs both sides of {}",
    "Design a step-by-step migration plan with risks and trade-offs for {}",
    "Prove carefully, explaining each step, a general theorem about {}",
]
THINGS = ["the weather on 3 May", "our new phone", "a delayed train", "taxes in 2023", "a cat", "space travel"]


def write_data(path: Path, labels: bool = True) -> None:
    rows = [{"prompt": t.format(x), "label": "local"} for t in LOCAL for x in THINGS]
    rows += [
        {"messages": [{"role": "user", "content": t.format(x)}], "label": "frontier"} for t in FRONTIER for x in THINGS
    ]
    if not labels:
        rows = [{k: v for k, v in r.items() if k != "label"} for r in rows]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def scored(tmp_path: Path, labels: bool = True) -> Sample:
    data = tmp_path / "sample.jsonl"
    write_data(data, labels)
    return sample_from_jsonl(data, shared(), 15.0, 75.0, 400)


@pytest.mark.parametrize("share", [0.0, 0.2, 0.5, 1.0])
def test_frontier_share_target_holds_on_the_sample(tmp_path: Path, share: float) -> None:
    sample = scored(tmp_path, labels=False)
    result = calibrate(sample, frontier_share=share)
    assert result.frontier_share <= share
    assert np.mean(sample.scores >= result.threshold) == pytest.approx(result.frontier_share)
    # The smallest such threshold: one notch lower would break the target (unless everything already goes).
    lower = np.mean(sample.scores >= np.nextafter(result.threshold, -1.0))
    assert lower > share or result.frontier_share == 1.0


def test_quality_floor_and_cost_ceiling(tmp_path: Path) -> None:
    sample = scored(tmp_path)
    floor = calibrate(sample, min_recall=0.9)
    assert floor.frontier_recall is not None and floor.frontier_recall >= 0.9
    ceiling = calibrate(sample, max_cost_per_1k=floor.cost_per_1k_usd / 2)
    assert ceiling.cost_per_1k_usd <= floor.cost_per_1k_usd / 2 and ceiling.threshold >= floor.threshold
    assert ceiling.all_frontier_per_1k_usd == pytest.approx(floor.all_frontier_per_1k_usd)


def test_the_threshold_drops_into_the_config_and_moves_decisions(tmp_path: Path) -> None:
    sample = scored(tmp_path)
    result = calibrate(sample, frontier_share=0.5)
    policy = RoutingPolicy(Settings(routing={"threshold": result.threshold}), frontier_models=("claude",))
    decided = []
    for line in (tmp_path / "sample.jsonl").read_text().splitlines():
        row = json.loads(line)
        messages = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
        decided.append(policy.decide(parse_chat_request({"model": "auto", "messages": messages})).tier)
    assert decided.count("frontier") / len(decided) == pytest.approx(result.frontier_share)


def test_calibrates_from_the_ledger_without_prompts(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger(str(path))
    ledger.start()
    scores = [0.05, 0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
    for i, score in enumerate(scores):
        rule = "learned" if score >= 0.5 else "default"
        entry = Entry(f"r{i}", time.time(), "t", "", "general", "local", "m", "openai", "ok", 10, 10)
        entry.counterfactual_usd, entry.route_score, entry.route_rule = 0.01, score, rule
        ledger.record(entry)
    ledger.record(Entry("hint", time.time(), "t", "", "code", "frontier", "m", "openai", "ok", route_rule="tools"))
    ledger.close()
    sample = sample_from_ledger(path)
    assert len(sample.scores) == len(scores)  # only requests the threshold decides
    result = calibrate(sample, frontier_share=0.3)
    assert result.frontier_share == pytest.approx(0.3) and 0.8 < result.threshold <= 0.9  # just above the 4th-highest


def test_cli_prints_the_threshold_and_the_config_line(tmp_path: Path) -> None:
    data = tmp_path / "sample.jsonl"
    write_data(data)
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "calibrate", "--data", str(data), "--min-recall", "0.95"],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(run.stdout)
    assert out["frontier_recall"] >= 0.95 and out["config"] == f"routing:\n  threshold: {out['threshold']!r}"
    bad = subprocess.run(
        [sys.executable, "-m", "router.cli", "calibrate", "--ledger", str(tmp_path / "none"), "--frontier-share", "1"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no ledger" in bad.stderr


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "x", "label": "cloud"}'], "label must be"),
        (["not json"], "not JSON"),
        (['{"label": "local"}'], "needs 'prompt'"),
        ([], "no rows"),
    ],
)
def test_bad_data_is_reported(tmp_path: Path, lines: list[str], message: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines))
    with pytest.raises(CalibrationError, match=message):
        sample_from_jsonl(data, shared(), 15.0, 75.0, 400)


def test_a_quality_floor_needs_labels(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="labelled"):
        calibrate(scored(tmp_path, labels=False), min_recall=0.9)
    with pytest.raises(CalibrationError, match="exactly one target"):
        calibrate(scored(tmp_path), frontier_share=0.1, min_recall=0.9)
