"""Small, fast checks for JSON request fields. Each failure names the field (OpenAI's `param`)."""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequest

_MISSING: Any = object()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise InvalidRequest(f"{param} must be an object, got {_type_name(value)}", param=param)
    return value


def opt_list(value: Any, param: str) -> list[Any]:
    """An optional JSON array: None → []."""
    if value is None:
        return []
    if type(value) is not list:
        raise InvalidRequest(f"{param} must be an array", param=param)
    return value


def opt_str(body: dict[str, Any], key: str, param: str | None = None, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidRequest(f"missing required field: {param or key}", param=param or key)
        return None
    if type(value) is not str:
        raise InvalidRequest(f"{param or key} must be a string, got {_type_name(value)}", param=param or key)
    return value


def opt_bool(body: dict[str, Any], key: str, default: bool = False) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if type(value) is not bool:
        raise InvalidRequest(f"{key} must be a boolean, got {_type_name(value)}", param=key)
    return value


def opt_int(body: dict[str, Any], key: str, *, lo: int | None = None, hi: int | None = None) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidRequest(f"{key} must be an integer, got {_type_name(value)}", param=key)
    if lo is not None and value < lo:
        raise InvalidRequest(f"{key} must be at least {lo}, got {value}", param=key)
    if hi is not None and value > hi:
        raise InvalidRequest(f"{key} must be at most {hi}, got {value}", param=key)
    return value


def opt_number(body: dict[str, Any], key: str, default: float, *, lo: float, hi: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if type(value) not in (int, float):
        raise InvalidRequest(f"{key} must be a number, got {_type_name(value)}", param=key)
    if not lo <= value <= hi:  # also rejects NaN
        raise InvalidRequest(f"{key} must be between {lo} and {hi}, got {value}", param=key)
    return float(value)


def stop_sequences(value: Any, param: str = "stop", limit: int = 4) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is str:
        return (value,) if value else ()
    if type(value) is not list or any(type(s) is not str for s in value):
        raise InvalidRequest(f"{param} must be a string or an array of strings", param=param)
    if len(value) > limit:
        raise InvalidRequest(f"{param} may hold at most {limit} sequences, got {len(value)}", param=param)
    return tuple(s for s in value if s)
