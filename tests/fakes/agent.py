"""The fake frontier's `agent` behaviour: a tool-using model, in the Anthropic and the OpenAI wire format.

    agent    with tools offered: a short text, then one call per offered tool (parallel calls), the arguments
             streamed as small partial-JSON fragments (cut inside strings and numbers, as real models do);
             tool_choice is honoured (none: text only; any / required: the calls without the text; a named tool:
             one call to it); Anthropic's `disable_parallel_tool_use` / OpenAI's `parallel_tool_calls: false`:
             only the first call. Once the last turn carries tool results it answers in text quoting them.
             Requests are checked as the real APIs check them (tool_choice shape, every tool call answered by a
             result right after it, no result without its call): a mistranslation gets a 400, not a pass.

Kept apart from frontier.py so that file's handlers stay as they are; they hand `agent` requests over here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.frontier import _anthropic_error, _count_tokens, _Fault, _last_user_text, _openai_error

PREFACE = "Let me look that up."
FRAGMENT = 7  # characters per streamed argument fragment


def arguments(i: int) -> dict[str, Any]:
    """The i-th call's arguments: nested, a number, an escaped quote and a non-ASCII character on purpose."""
    return {"city": ("Paris", "Tokyo", "Lima")[i % 3], "days": i + 2, "units": {"temp": "°C"}, "note": 'say "hi"'}


def fragments(text: str) -> list[str]:
    return [text[i : i + FRAGMENT] for i in range(0, len(text), FRAGMENT)]


@dataclass
class Plan:
    text: str
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (id, name, input)


def plan(
    tools: list[str], choice: str, forced: str | None, results: list[str] | None, user: str, prefix: str, parallel: bool
) -> Plan:
    """What the agent answers. `choice`: auto | any | none | tool (Anthropic's names; OpenAI's are mapped)."""
    if results is not None:
        return Plan("Tool results: " + " | ".join(results))
    if not tools or choice == "none":
        return Plan(f"Frontier answer about: {user[:40]}")
    names = [forced] if choice == "tool" and forced else tools
    if not parallel:
        names = names[:1]
    calls = [(f"{prefix}{i + 1}", name, arguments(i)) for i, name in enumerate(names)]
    return Plan("" if choice in ("any", "tool") else PREFACE, calls)


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


# -- Anthropic ------------------------------------------------------------------------------------------------


def _blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind] if isinstance(content, list) else []


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content", "")
    text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return ("error: " if block.get("is_error") else "") + text


def anthropic_check(body: dict[str, Any], tools: list[str]) -> tuple[str, str | None, bool]:
    """(choice type, forced tool name, parallel allowed), or a 400 as the real API words it."""
    choice = body.get("tool_choice")
    parallel = True
    kind, forced = "auto", None
    if choice is not None:
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _Fault(400, "invalid_request_error", "tool_choice: Input tag does not match any of the expected tags")
        kind = choice["type"]
        parallel = not choice.get("disable_parallel_tool_use", False)
        if kind == "tool":
            forced = choice.get("name")
            if forced not in tools:
                raise _Fault(400, "invalid_request_error", f"tool_choice.name: tool {forced!r} not found in tools")
    messages = body.get("messages", [])
    for i, m in enumerate(messages):
        uses = [b.get("id") for b in _blocks(m, "tool_use")]
        results = [b.get("tool_use_id") for b in _blocks(m, "tool_result")]
        if uses:
            after = messages[i + 1] if i + 1 < len(messages) else None
            answered = {b.get("tool_use_id") for b in _blocks(after or {}, "tool_result")}
            missing = [u for u in uses if u not in answered]
            if after is not None and missing:
                raise _Fault(
                    400,
                    "invalid_request_error",
                    f"messages.{i}: tool_use ids were found without tool_result blocks immediately after: {missing}",
                )
        if results:
            before = messages[i - 1] if i > 0 else {}
            known = {b.get("id") for b in _blocks(before, "tool_use")}
            stray = [r for r in results if r not in known]
            if m.get("role") != "user" or stray:
                raise _Fault(
                    400,
                    "invalid_request_error",
                    f"messages.{i}.content: unexpected tool_use_id found in tool_result blocks: {stray}",
                )
            content = m["content"]
            if any(b.get("type") != "tool_result" for b in content[: len(results)]):
                raise _Fault(
                    400, "invalid_request_error", f"messages.{i}: tool_result blocks must come first in the content"
                )
    return kind, forced, parallel


async def anthropic_agent(request: web.Request, body: dict[str, Any], msg_id: str) -> web.StreamResponse:
    tools = [t.get("name", "") for t in body.get("tools") or []]
    try:
        kind, forced, parallel = anthropic_check(body, tools)
    except _Fault as fault:
        return _anthropic_error(fault)
    messages = body.get("messages", [])
    last = messages[-1] if messages else {}
    results = [_result_text(b) for b in _blocks(last, "tool_result")] or None
    p = plan(tools, kind, forced, results, _last_user_text(messages), "toolu_agent", parallel)
    stop_reason = "tool_use" if p.calls else "end_turn"
    input_tokens = sum(_count_tokens(_last_user_text([m])) for m in messages) + 3
    usage = {"input_tokens": input_tokens, "output_tokens": _count_tokens(p.text) + 10 * len(p.calls)}
    content: list[dict[str, Any]] = [{"type": "text", "text": p.text}] if p.text else []
    content += [{"type": "tool_use", "id": cid, "name": name, "input": args} for cid, name, args in p.calls]
    message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": body.get("model", ""),
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }
    if not body.get("stream"):
        return web.Response(body=orjson.dumps(message), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)

    async def send(data: dict[str, Any]) -> None:
        await resp.write(b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    start = {**message, "content": [], "stop_reason": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}
    await send({"type": "message_start", "message": start})
    await send({"type": "ping"})
    for index, block in enumerate(content):
        if block["type"] == "text":
            await send({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}})
            for word in _words(block["text"]):
                delta = {"type": "text_delta", "text": word}
                await send({"type": "content_block_delta", "index": index, "delta": delta})
        else:
            opened = {**block, "input": {}}
            await send({"type": "content_block_start", "index": index, "content_block": opened})
            # The real API opens with an empty fragment, then sends the JSON in pieces.
            for part in ["", *fragments(orjson.dumps(block["input"]).decode())]:
                delta = {"type": "input_json_delta", "partial_json": part}
                await send({"type": "content_block_delta", "index": index, "delta": delta})
        await send({"type": "content_block_stop", "index": index})
    end = {"stop_reason": stop_reason, "stop_sequence": None}
    await send({"type": "message_delta", "delta": end, "usage": {"output_tokens": usage["output_tokens"]}})
    await send({"type": "message_stop"})
    return resp


# -- OpenAI ---------------------------------------------------------------------------------------------------


def _part_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def openai_check(body: dict[str, Any], tools: list[str]) -> tuple[str, str | None, bool]:
    """(choice as Anthropic names it, forced tool name, parallel allowed), or a 400 as the real API words it."""
    choice = body.get("tool_choice")
    kind, forced = "auto", None
    if choice is not None:
        if not tools:
            raise _Fault(400, "invalid_request_error", "'tool_choice' is only allowed when 'tools' are specified")
        if choice in ("auto", "none", "required"):
            kind = {"required": "any"}.get(choice, choice)
        elif isinstance(choice, dict) and choice.get("type") == "function":
            kind, forced = "tool", (choice.get("function") or {}).get("name")
            if forced not in tools:
                raise _Fault(400, "invalid_request_error", f"Invalid value for 'tool_choice': no function {forced!r}")
        else:
            raise _Fault(400, "invalid_request_error", "Invalid value for 'tool_choice'")
    messages = body.get("messages", [])
    pending: set[str] = set()
    for i, m in enumerate(messages):
        if m.get("role") == "tool":
            if m.get("tool_call_id") not in pending:
                raise _Fault(
                    400,
                    "invalid_request_error",
                    f"messages.[{i}]: messages with role 'tool' must be a response to a preceding message with "
                    "'tool_calls'",
                )
            pending.discard(m["tool_call_id"])
            continue
        if pending:
            raise _Fault(
                400,
                "invalid_request_error",
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each "
                f"'tool_call_id'. The following tool_call_ids did not have response messages: {sorted(pending)}",
            )
        for call in m.get("tool_calls") or []:
            if not isinstance(call.get("function", {}).get("arguments"), str):
                raise _Fault(400, "invalid_request_error", f"messages.[{i}].tool_calls: arguments must be a string")
            pending.add(call.get("id"))
    return kind, forced, body.get("parallel_tool_calls", True) is not False


async def openai_agent(request: web.Request, body: dict[str, Any], cid: str, created: int) -> web.StreamResponse:
    tools = [(t.get("function") or {}).get("name", "") for t in body.get("tools") or []]
    try:
        kind, forced, parallel = openai_check(body, tools)
    except _Fault as fault:
        return _openai_error(fault)
    messages = body.get("messages", [])
    trailing: list[str] = []  # the results after the last assistant turn (a user remark may follow them)
    for m in reversed(messages):
        if m.get("role") == "assistant":
            break
        if m.get("role") == "tool":
            trailing.insert(0, _part_text(m.get("content")))
    p = plan(tools, kind, forced, trailing or None, _last_user_text(messages), "call_agent", parallel)
    finish = "tool_calls" if p.calls else "stop"
    prompt = sum(_count_tokens(_last_user_text([m])) for m in messages) + 3
    completion = _count_tokens(p.text) + 10 * len(p.calls)
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    calls = [
        {"id": i, "type": "function", "function": {"name": n, "arguments": orjson.dumps(a).decode()}}
        for i, n, a in p.calls
    ]
    model = body.get("model", "")
    if not body.get("stream"):
        message: dict[str, Any] = {"role": "assistant", "content": p.text or None}
        if calls:
            message["tool_calls"] = calls
        choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
        out = {"id": cid, "object": "chat.completion", "created": created, "model": model, "choices": [choice]}
        return web.Response(body=orjson.dumps({**out, "usage": usage}), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

    async def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        await resp.write(b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n")

    await chunk({"role": "assistant", "content": ""})
    for word in _words(p.text) if p.text else ():
        await chunk({"content": word})
    for index, call in enumerate(calls):
        fn = call["function"]
        opened = {"name": fn["name"], "arguments": ""}
        await chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function", "function": opened}]})
        for part in fragments(fn["arguments"]):
            await chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]})
    await chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        await resp.write(b"data: " + orjson.dumps({**head, "choices": [], "usage": usage}) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp
