"""Tool calls, both APIs, both directions of translation, a whole agent turn: call → result → answer.

The real openai SDK talks to an Anthropic frontier and the real anthropic SDK to an OpenAI-compatible frontier;
the fake upstream's `agent` model (tests/fakes/agent.py) makes parallel calls, streams their arguments as
partial-JSON fragments, honours tool_choice and answers tool results, and it rejects requests whose tool turns
a real API would reject (a result without its call, a call without its result, a bad tool_choice).
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import openai
import pytest

from router.config import load_settings
from tests.fakes.agent import PREFACE, arguments
from tests.support.server import running

pytestmark = pytest.mark.model

OA_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Weather forecast for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "local_time",
            "description": "Local time in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]
AN_TOOLS = [
    {
        "name": t["function"]["name"],
        "description": t["function"]["description"],
        "input_schema": t["function"]["parameters"],
    }
    for t in OA_TOOLS
]
NAMES = ["weather", "local_time"]
QUESTION = "Weather and time in Paris and Tokyo?"


@pytest.fixture(scope="module")
def router(fake, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tools")
    key = tmp / "key"
    key.write_text("sk-test\n")
    cfg = tmp / "router.yaml"
    cfg.write_text(config(fake.url, key))
    with running(load_settings(cfg, environ={})) as server:
        yield server


def config(url: str, key: Path) -> str:
    common = f'model_id: agent, api_key_file: "{key}", fallback_to_local: false'
    return (
        "cache: {enabled: false}\n"
        "frontier:\n  models:\n"
        f'    - {{name: claude-agent, provider: anthropic, base_url: "{url}", {common}}}\n'
        f'    - {{name: gpt-agent, provider: openai, base_url: "{url}/v1", {common}}}\n'
    )


@pytest.fixture(autouse=True)
def _fresh(fake):
    fake.reset()


def oa(router) -> openai.OpenAI:
    return openai.OpenAI(base_url=router.base_url + "/v1", api_key="x", max_retries=0, timeout=30)


def an(router) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=router.base_url, api_key="x", max_retries=0, timeout=30)


def upstream(fake) -> dict:
    (sent,) = [r.body for r in fake.requests if r.path.endswith(("/messages", "/chat/completions"))]
    return sent


# -- OpenAI client → Anthropic frontier ---------------------------------------------------------------------------


def openai_turn(router, stream: bool, messages: list, **kwargs):
    """One chat completion as (text, [(id, name, arguments text)], finish_reason); streams gathered by index."""
    client = oa(router)
    args = {"model": "claude-agent", "tools": OA_TOOLS, "max_tokens": 200, "messages": messages, **kwargs}
    if not stream:
        choice = client.chat.completions.create(**args).choices[0]
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return choice.message.content, calls, choice.finish_reason
    text, calls, finish = "", {}, []
    for chunk in client.chat.completions.create(**args, stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for d in delta.tool_calls or []:
            if d.index not in calls:
                # The first piece of each call carries its id, type and name; later pieces only arguments.
                assert d.id and d.type == "function" and d.function.name, d
                calls[d.index] = [d.id, d.function.name, ""]
            else:
                assert d.id is None and not d.function.name, d
            calls[d.index][2] += d.function.arguments or ""
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert len(finish) == 1
    return text or None, [tuple(calls[i]) for i in sorted(calls)], finish[0]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_client_gets_parallel_tool_calls_from_anthropic(router, fake, stream: bool) -> None:
    text, calls, finish = openai_turn(router, stream, [{"role": "user", "content": QUESTION}])
    assert finish == "tool_calls"
    assert text == PREFACE
    assert [(c[0], c[1]) for c in calls] == [("toolu_agent1", "weather"), ("toolu_agent2", "local_time")]
    assert [json.loads(c[2]) for c in calls] == [arguments(0), arguments(1)]
    sent = upstream(fake)
    assert sent["tools"] == AN_TOOLS
    assert "tool_choice" not in sent  # none asked for: the upstream's default (auto)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_openai_client_sends_tool_results_back_to_anthropic(router, fake, stream: bool) -> None:
    question = [{"role": "user", "content": QUESTION}]
    text, calls, _ = openai_turn(router, False, question)
    assistant = {
        "role": "assistant",
        "content": text,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls],
    }
    results = [
        {"role": "tool", "tool_call_id": calls[0][0], "content": "Sunny, 21C"},
        {"role": "tool", "tool_call_id": calls[1][0], "content": [{"type": "text", "text": "09:30"}]},
    ]
    fake.reset()
    text, calls, finish = openai_turn(router, stream, [*question, assistant, *results])
    assert (text, calls, finish) == ("Tool results: Sunny, 21C | 09:30", [], "stop")
    sent = upstream(fake)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]
    assert sent[1]["content"] == [
        {"type": "text", "text": PREFACE},
        {"type": "tool_use", "id": "toolu_agent1", "name": "weather", "input": arguments(0)},
        {"type": "tool_use", "id": "toolu_agent2", "name": "local_time", "input": arguments(1)},
    ]
    # Both results in one user turn (Anthropic alternates roles), each a tool_result naming its call.
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_agent1", "content": "Sunny, 21C"},
        {"type": "tool_result", "tool_use_id": "toolu_agent2", "content": "09:30"},
    ]


# -- Anthropic client → OpenAI-compatible frontier ----------------------------------------------------------------


def anthropic_turn(router, stream: bool, messages: list, **kwargs):
    client = an(router)
    args = {"model": "gpt-agent", "tools": AN_TOOLS, "max_tokens": 200, "messages": messages, **kwargs}
    if not stream:
        return client.messages.create(**args)
    with client.messages.stream(**args) as s:
        events = list(s)
        message = s.get_final_message()
    starts = [e for e in events if e.type == "content_block_start"]
    deltas = [e for e in events if e.type == "content_block_delta"]
    stops = [e.index for e in events if e.type == "content_block_stop"]
    assert [e.index for e in starts] == stops == list(range(len(message.content)))  # opened and closed in order
    for start, block in zip(starts, message.content, strict=True):
        assert start.content_block.type == block.type
        if block.type == "tool_use":
            assert (start.content_block.id, start.content_block.name, start.content_block.input) == (
                block.id,
                block.name,
                {},
            )
            pieces = [d.delta.partial_json for d in deltas if d.index == start.index]
            assert all(d.delta.type == "input_json_delta" for d in deltas if d.index == start.index)
            assert len(pieces) > 1 and json.loads("".join(pieces)) == block.input  # streamed in fragments
    return message


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_client_gets_parallel_tool_use_from_openai(router, fake, stream: bool) -> None:
    message = anthropic_turn(router, stream, [{"role": "user", "content": QUESTION}])
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[0].text == PREFACE
    uses = [(b.id, b.name, b.input) for b in message.content[1:]]
    assert uses == [("call_agent1", "weather", arguments(0)), ("call_agent2", "local_time", arguments(1))]
    sent = upstream(fake)
    assert sent["tools"] == OA_TOOLS
    assert "tool_choice" not in sent


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_anthropic_client_sends_tool_results_back_to_openai(router, fake, stream: bool) -> None:
    question = {"role": "user", "content": QUESTION}
    first = anthropic_turn(router, False, [question])
    assistant = {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]}
    ids = [b.id for b in first.content if b.type == "tool_use"]
    results = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": ids[0], "content": "Sunny, 21C"},
            {"type": "tool_result", "tool_use_id": ids[1], "content": [{"type": "text", "text": "09:30"}]},
            {"type": "text", "text": "Thanks."},
        ],
    }
    fake.reset()
    message = anthropic_turn(router, stream, [question, assistant, results])
    assert message.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in message.content] == [("text", "Tool results: Sunny, 21C | 09:30")]
    sent = upstream(fake)["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "tool", "user"]
    assert sent[1]["content"] == PREFACE
    assert [(c["id"], c["type"], c["function"]["name"]) for c in sent[1]["tool_calls"]] == [
        ("call_agent1", "function", "weather"),
        ("call_agent2", "function", "local_time"),
    ]
    assert [json.loads(c["function"]["arguments"]) for c in sent[1]["tool_calls"]] == [arguments(0), arguments(1)]
    assert [(m["tool_call_id"], m["content"]) for m in sent[2:4]] == [
        ("call_agent1", "Sunny, 21C"),
        ("call_agent2", "09:30"),
    ]
    assert sent[4]["content"] == "Thanks."


# -- tool_choice, both ways ---------------------------------------------------------------------------------------

OA_CHOICES = {
    # OpenAI tool_choice: (what the Anthropic upstream must get, the tools it then calls, with the preface text)
    "auto": ({"type": "auto"}, NAMES, True),
    "none": ({"type": "none"}, [], False),
    "required": ({"type": "any"}, NAMES, False),
    "named": ({"type": "tool", "name": "local_time"}, ["local_time"], False),
}


@pytest.mark.parametrize("choice", OA_CHOICES)
def test_openai_tool_choice_reaches_anthropic(router, fake, choice: str) -> None:
    wire = {"type": "function", "function": {"name": "local_time"}} if choice == "named" else choice
    expected, called, preface = OA_CHOICES[choice]
    text, calls, finish = openai_turn(router, True, [{"role": "user", "content": QUESTION}], tool_choice=wire)
    assert upstream(fake)["tool_choice"] == expected
    assert [c[1] for c in calls] == called
    assert finish == ("tool_calls" if called else "stop")
    assert (text == PREFACE) == preface


AN_CHOICES = {
    # Anthropic tool_choice: (what the OpenAI upstream must get, the tools it then calls)
    "auto": ({"type": "auto"}, "auto", NAMES),
    "none": ({"type": "none"}, "none", []),
    "any": ({"type": "any"}, "required", NAMES),
    "named": (
        {"type": "tool", "name": "local_time"},
        {"type": "function", "function": {"name": "local_time"}},
        ["local_time"],
    ),
}


@pytest.mark.parametrize("choice", AN_CHOICES)
def test_anthropic_tool_choice_reaches_openai(router, fake, choice: str) -> None:
    wire, expected, called = AN_CHOICES[choice]
    message = anthropic_turn(router, True, [{"role": "user", "content": QUESTION}], tool_choice=wire)
    assert upstream(fake)["tool_choice"] == expected
    assert [b.name for b in message.content if b.type == "tool_use"] == called
    assert message.stop_reason == ("tool_use" if called else "end_turn")


def test_single_tool_call_settings_translate_both_ways(router, fake) -> None:
    """OpenAI's parallel_tool_calls: false is Anthropic's disable_parallel_tool_use, and back."""
    _, calls, _ = openai_turn(router, False, [{"role": "user", "content": QUESTION}], parallel_tool_calls=False)
    assert upstream(fake)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert [c[1] for c in calls] == ["weather"]
    fake.reset()
    message = anthropic_turn(
        router,
        False,
        [{"role": "user", "content": QUESTION}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    sent = upstream(fake)
    assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    assert [b.name for b in message.content if b.type == "tool_use"] == ["weather"]


# -- bad tool turns: the caller's error format, never a 500 -------------------------------------------------------


@pytest.mark.parametrize(
    "choice",
    [{"type": "function"}, {"type": "function", "function": {"name": "nope"}}, {"type": "tool"}, "sometimes"],
    ids=["no-name", "unknown-tool", "wrong-shape", "unknown-string"],
)
def test_openai_bad_tool_choice_is_a_400(router, fake, choice) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        oa(router).chat.completions.create(
            model="claude-agent",
            tools=OA_TOOLS,
            tool_choice=choice,
            max_tokens=20,
            messages=[{"role": "user", "content": "x"}],
        )
    assert err.value.body["param"] == "tool_choice"
    assert fake.requests == []  # refused before the upstream


@pytest.mark.parametrize(
    "choice",
    [{"type": "tool"}, {"type": "tool", "name": "nope"}, {"type": "sometimes"}, "auto"],
    ids=["no-name", "unknown-tool", "unknown-type", "not-an-object"],
)
def test_anthropic_bad_tool_choice_is_a_400(router, fake, choice) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        an(router).messages.create(
            model="gpt-agent",
            tools=AN_TOOLS,
            tool_choice=choice,
            max_tokens=20,
            messages=[{"role": "user", "content": "x"}],
        )
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert fake.requests == []


def test_tool_result_without_its_call_is_a_400_in_each_api(router, fake) -> None:
    with pytest.raises(openai.BadRequestError):
        oa(router).chat.completions.create(
            model="claude-agent",
            tools=OA_TOOLS,
            max_tokens=20,
            messages=[{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "call_9", "content": "r"}],
        )
    with pytest.raises(anthropic.BadRequestError):
        an(router).messages.create(
            model="gpt-agent",
            tools=AN_TOOLS,
            max_tokens=20,
            messages=[{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_9", "content": "r"}]}],
        )


def test_same_api_round_trips_lose_nothing(router, fake) -> None:
    """OpenAI client → OpenAI upstream and Anthropic client → Anthropic upstream: through the neutral form and back."""
    text, calls, _ = openai_turn(router, True, [{"role": "user", "content": QUESTION}], model="gpt-agent")
    assert (text, [c[:2] for c in calls]) == (PREFACE, [("call_agent1", "weather"), ("call_agent2", "local_time")])
    assistant = {
        "role": "assistant",
        "content": text,
        "tool_calls": [{"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls],
    }
    results = [{"role": "tool", "tool_call_id": c[0], "content": f"result {k}"} for k, c in enumerate(calls)]
    fake.reset()
    question = [{"role": "user", "content": QUESTION}]
    text, _, finish = openai_turn(router, False, [*question, assistant, *results], model="gpt-agent")
    assert (text, finish) == ("Tool results: result 0 | result 1", "stop")
    assert upstream(fake)["messages"][1:] == [assistant, *results]
    fake.reset()
    first = anthropic_turn(router, True, question, model="claude-agent")
    blocks = [b.model_dump(exclude_none=True) for b in first.content]
    answers = [
        {"type": "tool_result", "tool_use_id": b.id, "content": "ok"} for b in first.content if b.type == "tool_use"
    ]
    answers[0]["is_error"] = True  # the tool failed: the upstream must be told so
    fake.reset()
    last = anthropic_turn(
        router,
        False,
        [*question, {"role": "assistant", "content": blocks}, {"role": "user", "content": answers}],
        model="claude-agent",
    )
    assert last.content[0].text == "Tool results: error: ok | ok"
    assert upstream(fake)["messages"][1:] == [
        {"role": "assistant", "content": blocks},
        {"role": "user", "content": answers},
    ]
