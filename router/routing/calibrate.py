"""Fit the scorer's weights from labelled requests (logistic regression, Newton's method with L2, numpy).

Input: JSON lines, each `{"prompt": "..."}` or `{"messages": [...]}` plus `"label": "local" | "frontier"`.
Output: a weights file for `routing.weights_file`, with the fit's accuracy before and after in `meta`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from router import fastpath
from router.routing.scoring import Weights


class CalibrationError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fit:
    weights: Weights
    rows: int
    accuracy_before: float
    accuracy_after: float
    log_loss_before: float
    log_loss_after: float


def load_rows(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    features: list[tuple[float, ...]] = []
    labels: list[float] = []
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
            label = row.get("label")
            if label not in ("local", "frontier"):
                raise CalibrationError(f"{path}:{n}: label must be 'local' or 'frontier', got {label!r}")
            features.append(fastpath.features(_text(row, f"{path}:{n}"))[0])
            labels.append(1.0 if label == "frontier" else 0.0)
    if len(set(labels)) < 2:
        raise CalibrationError(f"{path}: need rows of both labels to fit, got {len(labels)} rows")
    return np.asarray(features, dtype=np.float64), np.asarray(labels, dtype=np.float64)


def _text(row: dict, where: str) -> str:
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    messages = row.get("messages")
    if isinstance(messages, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
        return "\n".join(m["content"] for m in messages)
    raise CalibrationError(f"{where}: needs a 'prompt' string or 'messages' with string contents")


def _predict(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x @ w, -50, 50)))


def _metrics(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    p = np.clip(_predict(x, w), 1e-12, 1 - 1e-12)
    accuracy = float(np.mean((p >= 0.5) == (y == 1.0)))
    log_loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return accuracy, log_loss


def fit(x: np.ndarray, y: np.ndarray, l2: float = 0.1, iterations: int = 50) -> Fit:
    design = np.hstack([np.ones((x.shape[0], 1)), x])
    start = Weights.default()
    w0 = np.asarray([start.bias, *start.weights])
    w = w0.copy()
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0  # the bias is not shrunk
    for _ in range(iterations):
        p = _predict(design, w)
        gradient = design.T @ (p - y) + penalty * w
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty) + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    before, after = _metrics(design, y, w0), _metrics(design, y, w)
    weights = Weights(float(w[0]), tuple(float(v) for v in w[1:]))
    return Fit(weights, len(y), before[0], after[0], before[1], after[1])
