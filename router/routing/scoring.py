"""Complexity scoring: default weights (with why), weights files, and the scorer the router uses.

The scorer itself is `router/_fastpath.pyx` (compiled) with its pure-Python twin `router/_fastpath_py.py`;
`router.fastpath` picks one. Weights are a bias plus one weight per feature in `lexicon.FEATURES`; the score is
the logistic of their weighted sum, so a weights file fitted by `hybrid-router calibrate` drops straight in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from router import fastpath
from router.routing.lexicon import FEATURES
from router.routing.taxonomy import SCORED_TASKS, Task

# Default weights. Features are scaled so that ~1.0 means "a lot of this" (see lexicon.FEATURES).
# Rationale: the score estimates "a small local model would likely do this badly".
DEFAULT_BIAS = -2.2  # an empty or trivial request scores ~0.1: local unless something says otherwise
DEFAULT_WEIGHTS: dict[str, float] = {
    "length": 0.9,  # long inputs need long-context reasoning; 2k tokens adds ~+0.85 to the logit
    "code": 1.2,  # code generation/debugging is where small models fail most visibly
    "math": 1.0,  # multi-step numeric reasoning
    "planning": 0.9,  # multi-step plans and enumerated requirements
    "questions": 0.25,  # several questions at once = several tasks
    "constraints": 0.35,  # many hard constraints are easy to violate
    "ambiguity": 0.3,  # underspecified requests need judgment
    "sensitivity": 0.6,  # legal/medical/financial/production: the cost of a wrong answer is high
    "scripts": 0.3,  # mixed writing systems (translation, multilingual reasoning)
    "writing": 0.5,  # nuanced prose
    "synthesis": 0.6,  # many sources, one answer
    "reasoning": 0.7,  # explain/justify/derive
    "validation": 0.5,  # final judgment calls
    "local_task": -1.2,  # classification/extraction/summaries/ranking: what small models are good at
}


@dataclass(frozen=True, slots=True)
class Weights:
    bias: float
    weights: tuple[float, ...]  # in lexicon.FEATURES order

    @classmethod
    def default(cls) -> Weights:
        return cls(DEFAULT_BIAS, tuple(DEFAULT_WEIGHTS[f] for f in FEATURES))

    @classmethod
    def from_mapping(cls, data: dict[str, object], source: str) -> Weights:
        """{"bias": b, "weights": {feature: w}}; features left out keep their default."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: weights must be an object")
        unknown = set(data) - {"bias", "weights", "meta"}
        if unknown:
            raise ValueError(f"{source}: unknown keys {sorted(unknown)}")
        given = data.get("weights", {})
        if not isinstance(given, dict):
            raise ValueError(f"{source}: 'weights' must map feature names to numbers")
        bad = set(given) - set(FEATURES)
        if bad:
            raise ValueError(f"{source}: unknown features {sorted(bad)}; known: {', '.join(FEATURES)}")
        merged = dict(DEFAULT_WEIGHTS)
        for name, value in given.items():
            if type(value) not in (int, float):
                raise ValueError(f"{source}: weight {name!r} must be a number")
            merged[name] = float(value)
        bias = data.get("bias", DEFAULT_BIAS)
        if type(bias) not in (int, float):
            raise ValueError(f"{source}: 'bias' must be a number")
        return cls(float(bias), tuple(merged[f] for f in FEATURES))  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> Weights:
        try:
            data = orjson.loads(Path(path).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ValueError(f"cannot read weights file {path}: {exc}") from None
        return cls.from_mapping(data, str(path))

    def to_json(self, **meta: object) -> bytes:
        body = {"bias": self.bias, "weights": dict(zip(FEATURES, self.weights, strict=True))}
        if meta:
            body["meta"] = meta
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)


@dataclass(frozen=True, slots=True)
class Score:
    score: float
    task: Task
    tokens: int  # estimated tokens of the whole request text


class ComplexityScorer:
    def __init__(self, weights: Weights | None = None) -> None:
        self.weights = weights or Weights.default()
        self._scorer = fastpath.Scorer((self.weights.bias, *self.weights.weights))

    def score(self, text: str) -> Score:
        value, task, tokens = self._scorer.score(text)
        return Score(value, SCORED_TASKS[task], tokens)

    @staticmethod
    def explain(text: str) -> dict[str, float]:
        values, _, _ = fastpath.features(text)
        return dict(zip(FEATURES, values, strict=True))
