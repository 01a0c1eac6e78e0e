"""OpenAI wire format: chat completion requests in, completions and SSE chunks out."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from router.errors import InvalidRequest
from router.http import sse
from router.http import tool_choice as tool_choices
from router.http.caching import cache_controls
from router.http.validate import (
    expect_object,
    opt_bool,
    opt_int,
    opt_list,
    opt_number,
    opt_str,
    stop_sequences,
)
from router.routing.policy import task_hint
from router.routing.rules import QUALITIES
from router.types import ChatRequest, Completion, Message, ResponseFormat, SamplingParams, ToolCall, ToolSpec, Usage

_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant", "tool": "tool"}


def parse_json(raw: bytes) -> dict[str, Any]:
    if not raw:
        raise InvalidRequest("the request body is empty; expected a JSON object")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    return expect_object(body, "body")


def _content(value: Any, param: str) -> str:
    if type(value) is str:
        return value
    if type(value) is list:
        parts: list[str] = []
        for i, part in enumerate(value):
            part = expect_object(part, f"{param}[{i}]")
            kind = part.get("type")
            if kind != "text":
                raise InvalidRequest(
                    f"{param}[{i}]: content parts of type {kind!r} are not supported; only 'text'", param=param
                )
            parts.append(opt_str(part, "text", f"{param}[{i}].text", required=True) or "")
        return "".join(parts)
    raise InvalidRequest(f"{param} must be a string or an array of text parts", param=param)


def parse_messages(value: Any) -> list[Message]:
    if type(value) is not list:
        raise InvalidRequest("messages must be an array of message objects", param="messages")
    if not value:
        raise InvalidRequest("messages must contain at least one message", param="messages")
    messages: list[Message] = []
    for i, raw in enumerate(value):
        param = f"messages[{i}]"
        msg = expect_object(raw, param)
        role = msg.get("role")
        if role not in _ROLES:
            raise InvalidRequest(
                f"{param}.role must be one of system, developer, user, assistant, tool; got {role!r}",
                param=f"{param}.role",
            )
        calls = _tool_calls(msg.get("tool_calls"), f"{param}.tool_calls") if role == "assistant" else None
        content = msg.get("content")
        if content is None and not calls:
            raise InvalidRequest(f"{param}.content is required", param=f"{param}.content")
        text = "" if content is None else _content(content, f"{param}.content")
        call_id = opt_str(msg, "tool_call_id", f"{param}.tool_call_id", required=role == "tool")
        messages.append(Message(_ROLES[role], text, msg.get("name"), calls, call_id))  # type: ignore[arg-type]
    return messages


def _tool_calls(value: Any, param: str) -> list[ToolCall] | None:
    calls = []
    for i, raw in enumerate(opt_list(value, param)):
        call = expect_object(raw, f"{param}[{i}]")
        fn = expect_object(call.get("function"), f"{param}[{i}].function")
        calls.append(
            ToolCall(
                opt_str(call, "id", f"{param}[{i}].id", required=True) or "",
                opt_str(fn, "name", f"{param}[{i}].function.name", required=True) or "",
                opt_str(fn, "arguments", f"{param}[{i}].function.arguments") or "{}",
            )
        )
    return calls or None


def _tools(value: Any) -> list[ToolSpec]:
    tools = []
    for i, raw in enumerate(opt_list(value, "tools")):
        tool = expect_object(raw, f"tools[{i}]")
        if tool.get("type") != "function":
            raise InvalidRequest(f"tools[{i}].type must be 'function'", param=f"tools[{i}].type")
        fn = expect_object(tool.get("function"), f"tools[{i}].function")
        tools.append(
            ToolSpec(
                opt_str(fn, "name", f"tools[{i}].function.name", required=True) or "",
                opt_str(fn, "description", f"tools[{i}].function.description"),
                expect_object(
                    fn.get("parameters", {"type": "object", "properties": {}}), f"tools[{i}].function.parameters"
                ),
            )
        )
    return tools


def _response_format(value: Any) -> ResponseFormat:
    if value is None:
        return ResponseFormat()
    fmt = expect_object(value, "response_format")
    kind = fmt.get("type")
    if kind == "text":
        return ResponseFormat()
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind == "json_schema":
        spec = expect_object(fmt.get("json_schema"), "response_format.json_schema")
        schema = expect_object(spec.get("schema", {}), "response_format.json_schema.schema")
        return ResponseFormat(type="json_schema", json_schema=schema, name=spec.get("name"))
    raise InvalidRequest(
        f"response_format.type must be text, json_object or json_schema; got {kind!r}", param="response_format.type"
    )


def parse_chat_request(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> ChatRequest:
    """Validate an OpenAI chat completion body. Unknown fields are ignored, as SDK `extra_body` may add some.

    Routing hints come from `metadata.task` / `metadata.quality` or the `x-router-task` / `x-router-quality`
    headers (the body wins)."""
    model = opt_str(body, "model", required=True) or ""
    messages = parse_messages(body.get("messages"))
    n = opt_int(body, "n")
    if n is not None and n != 1:
        raise InvalidRequest("only n=1 is supported", param="n")
    tools = _tools(body.get("tools"))
    tool_choice, parallel = tool_choices.from_openai(body.get("tool_choice"), body.get("parallel_tool_calls"), tools)
    max_tokens = opt_int(body, "max_completion_tokens", lo=1)
    if max_tokens is None:
        max_tokens = opt_int(body, "max_tokens", lo=1)
    stream = opt_bool(body, "stream")
    include_usage = False
    options = body.get("stream_options")
    if options is not None:
        include_usage = opt_bool(expect_object(options, "stream_options"), "include_usage")
    top_logprobs = opt_int(body, "top_logprobs", lo=0, hi=20) or 0
    sampling = SamplingParams(
        temperature=opt_number(body, "temperature", 1.0, lo=0.0, hi=2.0),
        top_p=opt_number(body, "top_p", 1.0, lo=0.0, hi=1.0),
        max_tokens=max_tokens,
        stop=stop_sequences(body.get("stop")),
        seed=opt_int(body, "seed"),
        logprobs=opt_bool(body, "logprobs"),
        top_logprobs=top_logprobs,
        temperature_given=body.get("temperature") is not None,
    )
    metadata = body.get("metadata")
    if metadata is not None:
        metadata = expect_object(metadata, "metadata")
        if any(type(v) is not str for v in metadata.values()):
            raise InvalidRequest("metadata values must be strings", param="metadata")
    task, quality = routing_hints(metadata or {}, headers or {})
    cache_lookup, cache_store = cache_controls(body, headers or {})
    return ChatRequest(
        model=model,
        messages=messages,
        sampling=sampling,
        response_format=_response_format(body.get("response_format")),
        stream=stream,
        include_usage=include_usage,
        metadata=metadata or {},
        api="openai",
        task=task,
        quality=quality,
        has_tools=bool(tools),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        cache_lookup=cache_lookup,
        cache_store=cache_store,
    )


def routing_hints(metadata: Mapping[str, str], headers: Mapping[str, str]) -> tuple[str | None, str]:
    if "task" in metadata:
        task = task_hint(metadata["task"], "metadata.task")
    else:
        task = task_hint(headers.get("x-router-task"), "x-router-task")
    quality, param = metadata.get("quality"), "metadata.quality"
    if quality is None:
        quality, param = headers.get("x-router-quality"), "x-router-quality"
    if quality is None or quality == "":
        quality = "standard"
    elif quality not in QUALITIES:
        raise InvalidRequest(f"{param} must be one of {', '.join(QUALITIES)}; got {quality!r}", param=param)
    return task, quality


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def logprobs_content(texts: list[str], logprobs: list[float]) -> dict[str, Any]:
    return {
        "content": [
            {"token": t, "logprob": lp, "bytes": list(t.encode()), "top_logprobs": []}
            for t, lp in zip(texts, logprobs, strict=True)
        ]
    }


def completion_body(completion_id: str, model: str, result: Completion, with_logprobs: bool = False) -> bytes:
    return orjson.dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": _message(result),
                    "logprobs": logprobs_content(result.logprob_texts or [], result.logprobs or [])
                    if with_logprobs
                    else None,
                    "finish_reason": _finish(result.finish_reason),
                }
            ],
            "usage": _usage(result.usage),
        }
    )


def _message(result: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": result.text, "refusal": None}
    if result.tool_calls:
        message["content"] = result.text or None
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in result.tool_calls
        ]
    return message


def _finish(reason: str) -> str:
    # OpenAI has no "cancelled"/"error" finish reason; those streams end with an error event instead.
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


class ChunkEncoder:
    """Encodes one response's SSE chunks. The per-token path is one orjson.dumps of the text plus concatenation."""

    def __init__(self, completion_id: str, model: str, include_usage: bool) -> None:
        self._include_usage = include_usage
        head = orjson.dumps(
            {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        )
        self._head = b"data: " + head[:-1] + b',"choices":[{"index":0,"delta":'
        usage = b',"usage":null' if include_usage else b""
        self._tail = b',"logprobs":null,"finish_reason":null}]' + usage + b"}\n\n"
        self._usage_head = b"data: " + head[:-1] + b',"choices":[],"usage":'

    def first(self) -> bytes:
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def delta(self, text: str, logprob: float | None = None) -> bytes:
        if logprob is None:
            return self._head + b'{"content":' + orjson.dumps(text) + b"}" + self._tail
        tail = self._tail.replace(
            b'"logprobs":null', b'"logprobs":' + orjson.dumps(logprobs_content([text], [logprob]))
        )
        return self._head + b'{"content":' + orjson.dumps(text) + b"}" + tail

    def tool(self, index: int, call_id: str | None, name: str | None, arguments: str) -> bytes:
        call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if call_id is not None:
            call.update(id=call_id, type="function")
        if name is not None:
            call["function"]["name"] = name
        return self._head + orjson.dumps({"tool_calls": [call]}) + self._tail

    def finish(self, reason: str, usage: Usage | None) -> bytes:
        tail = self._tail.replace(b'"finish_reason":null', b'"finish_reason":"' + _finish(reason).encode() + b'"')
        out = self._head + b"{}" + tail
        if self._include_usage and usage is not None:
            out += self._usage_head + orjson.dumps(_usage(usage)) + b"}\n\n"
        return out + sse.DONE

    @staticmethod
    def error(message: str, type_: str, code: str | None) -> bytes:
        err = {"error": {"message": message, "type": type_, "param": None, "code": code}}
        return sse.json_event(err) + sse.DONE
