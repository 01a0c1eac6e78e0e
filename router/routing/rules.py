"""Routing rules from the config, compiled once into plain comparisons (no eval of user strings).

A rule's `when` maps request features to tests, all of which must hold:

    when: {task: classification}                      # equality
    when: {task: [classification, extraction]}        # membership
    when: {context_tokens: {gt: 10000}, score: {gte: 0.6}}
    when: {}                                          # always

Operators: eq, ne, in, not_in (every field); gt, gte, lt, lte (numeric fields).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router.routing.taxonomy import Task

QUALITIES = ("low", "standard", "high")


@dataclass(slots=True)
class RouteFeatures:
    """What rules can test, for one request."""

    task: str
    task_source: str  # explicit (the client named it) | inferred (the learned task head)
    learned: str  # the learned decision at the configured threshold: local | frontier
    context_tokens: int
    score: float  # the learned P(frontier)
    quality: str
    tenant: str
    has_tools: bool
    has_response_format: bool
    message_count: int
    stream: bool


# field → (kind, allowed values or None)
FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "task": ("enum", tuple(t.value for t in Task)),
    "task_source": ("enum", ("explicit", "inferred")),
    "learned": ("enum", ("local", "frontier")),
    "context_tokens": ("int", None),
    "score": ("float", None),
    "quality": ("enum", QUALITIES),
    "tenant": ("str", None),
    "has_tools": ("bool", None),
    "has_response_format": ("bool", None),
    "message_count": ("int", None),
    "stream": ("bool", None),
}

_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_ALL_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "in": lambda value, options: value in options,
    "not_in": lambda value, options: value not in options,
    **_NUMERIC_OPS,
}

Test = tuple[str, Callable[[Any, Any], bool], Any]


class RuleError(ValueError):
    pass


def _check_value(field: str, kind: str, allowed: tuple[str, ...] | None, value: Any) -> Any:
    ok = {
        "enum": type(value) is str and (allowed is None or value in allowed),
        "str": type(value) is str,
        "int": type(value) is int,
        "float": type(value) in (int, float),
        "bool": type(value) is bool,
    }[kind]
    if not ok:
        expected = f"one of {', '.join(allowed)}" if allowed else f"a {kind}"
        raise RuleError(f"{field}: {value!r} is not {expected}")
    return float(value) if kind == "float" else value


def compile_when(when: dict[str, Any]) -> tuple[Test, ...]:
    tests: list[Test] = []
    for field, spec in when.items():
        if field not in FIELDS:
            raise RuleError(f"unknown field {field!r}; known: {', '.join(FIELDS)}")
        kind, allowed = FIELDS[field]
        if type(spec) is dict:
            if not spec:
                raise RuleError(f"{field}: empty test")
            for op, value in spec.items():
                if op not in _ALL_OPS:
                    raise RuleError(f"{field}: unknown operator {op!r}; known: {', '.join(_ALL_OPS)}")
                if op in _NUMERIC_OPS and kind not in ("int", "float"):
                    raise RuleError(f"{field}: operator {op!r} needs a numeric field")
                if op in ("in", "not_in"):
                    if type(value) is not list or not value:
                        raise RuleError(f"{field}: {op} needs a non-empty list")
                    value = frozenset(_check_value(field, kind, allowed, v) for v in value)
                else:
                    value = _check_value(field, kind, allowed, value)
                tests.append((field, _ALL_OPS[op], value))
        elif type(spec) is list:
            if not spec:
                raise RuleError(f"{field}: empty list")
            tests.append((field, _ALL_OPS["in"], frozenset(_check_value(field, kind, allowed, v) for v in spec)))
        else:
            tests.append((field, operator.eq, _check_value(field, kind, allowed, spec)))
    return tuple(tests)


def matches(tests: tuple[Test, ...], features: RouteFeatures) -> bool:
    for field, op, value in tests:  # noqa: SIM110 - a plain loop beats all(generator) on the hot path
        if not op(getattr(features, field), value):
            return False
    return True
