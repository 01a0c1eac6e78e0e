"""`tool_choice` of both APIs, checked and put in one neutral form (OpenAI's), plus the parallel-calls switch.

Neutral form: "auto" | "none" | "required" | {"type": "function", "function": {"name": N}}, where N names an
offered tool; parallel: None (the upstream's default), or False for one call at most (OpenAI's
`parallel_tool_calls: false`, Anthropic's `disable_parallel_tool_use: true`). A malformed choice is the caller's
400 here rather than the upstream's, which would cost a round trip and name fields the caller never sent.
"""

from __future__ import annotations

from typing import Any

from router.errors import InvalidRequest
from router.http.validate import expect_object
from router.types import ToolSpec

ToolChoice = str | dict[str, Any] | None


def _named(name: Any, tools: list[ToolSpec], param: str) -> dict[str, Any]:
    if type(name) is not str or not name:
        raise InvalidRequest(f"{param} is required: the name of the tool to call", param=param)
    if all(t.name != name for t in tools):
        raise InvalidRequest(f"{param}: no tool named {name!r} is in tools", param=param)
    return {"type": "function", "function": {"name": name}}


def from_openai(value: Any, parallel: Any, tools: list[ToolSpec]) -> tuple[ToolChoice, bool | None]:
    if parallel is not None and type(parallel) is not bool:
        raise InvalidRequest("parallel_tool_calls must be a boolean", param="parallel_tool_calls")
    if not tools:
        return None, None  # nothing to choose from: both fields are moot (a local model may serve this)
    if value is None or value in ("auto", "none", "required"):
        return value, parallel
    if type(value) is not dict:
        raise InvalidRequest("tool_choice must be auto, none, required or an object", param="tool_choice")
    if value.get("type") != "function":
        raise InvalidRequest("tool_choice.type must be 'function'", param="tool_choice")
    fn = value.get("function")
    if type(fn) is not dict:
        raise InvalidRequest("tool_choice.function must be an object with the tool's name", param="tool_choice")
    return _named(fn.get("name"), tools, "tool_choice"), parallel


def from_anthropic(value: Any, tools: list[ToolSpec]) -> tuple[ToolChoice, bool | None]:
    if value is None:
        return None, None
    choice = expect_object(value, "tool_choice")
    kind = choice.get("type")
    disable = choice.get("disable_parallel_tool_use")
    if disable is not None and type(disable) is not bool:
        raise InvalidRequest("tool_choice.disable_parallel_tool_use must be a boolean", param="tool_choice")
    parallel = False if disable else None
    if kind in ("auto", "none"):
        return (kind if tools else None), parallel
    if kind == "any":
        return ("required" if tools else None), parallel
    if kind == "tool":
        return _named(choice.get("name"), tools, "tool_choice.name"), parallel
    raise InvalidRequest(f"tool_choice.type must be auto, any, none or tool; got {kind!r}", param="tool_choice.type")
