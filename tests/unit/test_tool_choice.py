"""tool_choice and the parallel-calls switch: every form of both APIs into the neutral form, and out again to each
provider's request (the Anthropic SDK provider's params, the OpenAI-compatible body). No network."""

from __future__ import annotations

from typing import Any

import pytest

from router.config import FrontierModelSettings
from router.engines.openai_http import OpenAIHTTPEngine
from router.errors import InvalidRequest
from router.frontier.anthropic import AnthropicProvider
from router.http import tool_choice
from router.types import ChatRequest, Message, ToolSpec

TOOLS = [ToolSpec("weather", None, {"type": "object"}), ToolSpec("local_time", None, {"type": "object"})]
NAMED = {"type": "function", "function": {"name": "local_time"}}


@pytest.mark.parametrize(
    ("value", "parallel", "expected"),
    [
        (None, None, (None, None)),
        ("auto", None, ("auto", None)),
        ("none", None, ("none", None)),
        ("required", False, ("required", False)),
        (NAMED, True, (NAMED, True)),
    ],
)
def test_openai_forms(value: Any, parallel: Any, expected: tuple[Any, Any]) -> None:
    assert tool_choice.from_openai(value, parallel, TOOLS) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, (None, None)),
        ({"type": "auto"}, ("auto", None)),
        ({"type": "none"}, ("none", None)),
        ({"type": "any"}, ("required", None)),
        ({"type": "tool", "name": "local_time"}, (NAMED, None)),
        ({"type": "auto", "disable_parallel_tool_use": True}, ("auto", False)),
        ({"type": "any", "disable_parallel_tool_use": False}, ("required", None)),
    ],
)
def test_anthropic_forms(value: Any, expected: tuple[Any, Any]) -> None:
    assert tool_choice.from_anthropic(value, TOOLS) == expected


@pytest.mark.parametrize(
    "value",
    [
        "sometimes",
        3,
        {"type": "function"},
        {"type": "function", "function": "local_time"},
        {"type": "function", "function": {"name": ""}},
        {"type": "function", "function": {"name": "nope"}},
        {"type": "allowed_tools"},
    ],
)
def test_bad_openai_forms_name_the_field(value: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        tool_choice.from_openai(value, None, TOOLS)
    assert err.value.param == "tool_choice"


def test_bad_parallel_switch() -> None:
    with pytest.raises(InvalidRequest) as err:
        tool_choice.from_openai("auto", "no", TOOLS)
    assert err.value.param == "parallel_tool_calls"


@pytest.mark.parametrize(
    "value",
    [
        "auto",
        {"type": "sometimes"},
        {"type": "tool"},
        {"type": "tool", "name": "nope"},
        {"type": "auto", "disable_parallel_tool_use": 1},
    ],
)
def test_bad_anthropic_forms(value: Any) -> None:
    with pytest.raises(InvalidRequest) as err:
        tool_choice.from_anthropic(value, TOOLS)
    assert (err.value.param or "").startswith("tool_choice")


def test_without_tools_the_choice_is_moot() -> None:
    assert tool_choice.from_openai("required", False, []) == (None, None)
    assert tool_choice.from_anthropic({"type": "any"}, []) == (None, None)


def _request(choice: Any, parallel: bool | None) -> ChatRequest:
    return ChatRequest(
        model="m", messages=[Message("user", "x")], tools=TOOLS, tool_choice=choice, parallel_tool_calls=parallel
    )


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", False, {"type": "none"}),  # Anthropic's none has no parallel flag
        ("required", None, {"type": "any"}),
        (NAMED, False, {"type": "tool", "name": "local_time", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_out_to_anthropic(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    provider = AnthropicProvider(FrontierModelSettings(name="c", provider="anthropic", model_id="claude"))
    assert provider.params(_request(choice, parallel)).get("tool_choice") == expected


@pytest.mark.parametrize(("choice", "parallel"), [(None, None), ("required", False), (NAMED, True)])
def test_out_to_openai_compatible(choice: Any, parallel: bool | None) -> None:
    body = OpenAIHTTPEngine("g", base_url="http://127.0.0.1:1/v1", upstream_model="gpt").body(
        _request(choice, parallel)
    )
    assert body.get("tool_choice") == choice
    assert body.get("parallel_tool_calls") == parallel
