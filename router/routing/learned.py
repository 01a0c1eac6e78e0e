"""The learned router: P(the local model's answer is not good enough) and the task, in microseconds.

Two linear heads over the same features (router/_fastpath.pyx `LinearRouter`): hashed words, word pairs and word
prefixes of the user's text, plus the scorer's dense structure features (length, code fences, lists, math
symbols, …). The weights ship as a versioned `.npz` with the data card that produced them
(router/routing/weights/, built by `python -m router.routing.train`); `routing.model_file` swaps in another.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from router import _fastpath_py, fastpath
from router.routing.taxonomy import Task

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = WEIGHTS_DIR / "router-v1.npz"
ARRAYS = ("bias", "dense", "buckets", "task_bias", "task_dense", "task_buckets", "tasks", "meta")


@dataclass(frozen=True, slots=True)
class Prediction:
    p_frontier: float
    task: Task
    tokens: int  # estimated tokens of the scored text


class LearnedRouter:
    def __init__(self, path: str | Path = DEFAULT_MODEL, pure_python: bool = False) -> None:
        """`pure_python`: run the twin even where the extension is built (parity tests, benchmarks)."""
        self.path = Path(path)
        arrays = _load(self.path)
        self.tasks: tuple[Task, ...] = tuple(Task(str(t)) for t in arrays["tasks"])
        self.meta: dict[str, Any] = orjson.loads(bytes(arrays["meta"]))
        compiled = fastpath.COMPILED and not pure_python
        impl = fastpath.LinearRouter if compiled else _fastpath_py.LinearRouter
        self._model = impl(
            float(arrays["bias"]),
            [float(v) for v in arrays["dense"]],
            _buckets(arrays["buckets"], compiled),
            [float(v) for v in arrays["task_bias"]],
            arrays["task_dense"].astype(np.float64).tolist(),
            _buckets(arrays["task_buckets"], compiled),
        )

    @property
    def default_threshold(self) -> float:
        """The threshold the training run chose (balanced error on held-out data); calibrate to your traffic."""
        return float(self.meta.get("threshold", 0.5))

    @property
    def version(self) -> str:
        return str(self.meta.get("version", self.path.stem))

    def predict(self, text: str) -> Prediction:
        p, task, tokens = self._model.predict(text)
        return Prediction(p, self.tasks[task], tokens)


def _buckets(array: np.ndarray, compiled: bool) -> Any:
    array = np.ascontiguousarray(array, dtype=np.float32)
    return array if compiled else array.tolist()  # the twin reads Python floats (the same values, as doubles)


def _load(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read router model {path}: {exc}") from None
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"router model {path}: missing arrays {missing}")
    unknown = [str(t) for t in arrays["tasks"] if str(t) not in Task._value2member_map_]
    if unknown:
        raise ValueError(f"router model {path}: unknown tasks {unknown}")
    return arrays


@cache
def shared(path: str = str(DEFAULT_MODEL)) -> LearnedRouter:
    """One loaded model per file per process (policies, the CLI and benchmarks share it)."""
    return LearnedRouter(path)


def save(path: str | Path, meta: dict[str, Any], **arrays: np.ndarray) -> None:
    np.savez_compressed(path, meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8), **arrays)
