from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from router.config import load_settings
from router.routing.calibrate import CalibrationError, fit, load_rows
from router.routing.policy import RoutingPolicy
from router.routing.scoring import Weights

LOCAL = ["Classify this review: {}", "Extract the date from: {}", "Summarise in one line: {}", "Is this spam? {}"]
FRONTIER = [
    "Write a persuasive, nuanced essay with a careful tone about {}",
    "Write a story in an eloquent narrative voice about {}",
    "Draft a creative speech, rewrite it in a formal style: {}",
]
THINGS = ["the weather", "our new phone", "a delayed train", "taxes", "a cat", "the meeting", "space travel"]


def write_data(path: Path) -> None:
    rows = [{"prompt": t.format(x), "label": "local"} for t in LOCAL for x in THINGS]
    rows += [
        {"messages": [{"role": "user", "content": t.format(x)}], "label": "frontier"} for t in FRONTIER for x in THINGS
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_fit_learns_what_the_defaults_miss(tmp_path: Path) -> None:
    data = tmp_path / "labelled.jsonl"
    write_data(data)
    x, y = load_rows(data)
    result = fit(x, y)
    # The default weights send short writing prompts local (below 0.5); the fit learns they are frontier.
    assert result.accuracy_before < 0.9
    assert result.accuracy_after == 1.0
    assert result.log_loss_after < result.log_loss_before


def test_cli_writes_weights_the_config_can_name(tmp_path: Path) -> None:
    data, out = tmp_path / "labelled.jsonl", tmp_path / "weights.json"
    write_data(data)
    run = subprocess.run(
        [sys.executable, "-m", "router.cli", "calibrate", "--data", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "accuracy" in run.stdout
    weights = Weights.load(out)
    assert weights != Weights.default()
    config = tmp_path / "router.yaml"
    config.write_text(
        f"routing:\n  weights_file: {out}\n  rules:\n    - name: hard\n      when: {{score: {{gte: 0.5}}}}\n"
        "      tier: frontier\n"
    )
    policy = RoutingPolicy(load_settings(config, environ={}), frontier_models=("claude",))
    from router.http.openai import parse_chat_request

    req = parse_chat_request({"model": "auto", "messages": [{"role": "user", "content": FRONTIER[0].format("dogs")}]})
    assert policy.decide(req).tier == "frontier"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "x", "label": "cloud"}'], "label must be"),
        (["not json"], "not JSON"),
        (['{"label": "local"}'], "needs a 'prompt'"),
        (['{"prompt": "x", "label": "local"}'], "both labels"),
    ],
)
def test_bad_data_is_reported(tmp_path: Path, lines: list[str], message: str) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text("\n".join(lines))
    with pytest.raises(CalibrationError, match=message):
        load_rows(data)
