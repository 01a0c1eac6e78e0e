"""Anthropic Messages wire format: requests in, messages and SSE events out (so the `anthropic` SDK works)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from router.errors import InvalidRequest
from router.http import sse
from router.http import tool_choice as tool_choices
from router.http.caching import cache_controls
from router.http.openai import routing_hints
from router.http.validate import expect_object, opt_bool, opt_int, opt_list, opt_number, opt_str, stop_sequences
from router.types import ChatRequest, Completion, Message, ResponseFormat, SamplingParams, ToolCall, ToolSpec, Usage

STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}


def _text_of(blocks: Any, param: str) -> str:
    if type(blocks) is str:
        return blocks
    if type(blocks) is not list:
        raise InvalidRequest(f"{param} must be a string or an array of content blocks", param=param)
    parts = []
    for i, block in enumerate(blocks):
        block = expect_object(block, f"{param}[{i}]")
        if block.get("type") != "text":
            raise InvalidRequest(f"{param}[{i}]: only text blocks are allowed here", param=param)
        parts.append(opt_str(block, "text", f"{param}[{i}].text", required=True) or "")
    return "".join(parts)


def _messages(value: Any) -> list[Message]:
    if type(value) is not list or not value:
        raise InvalidRequest("messages must be a non-empty array", param="messages")
    out: list[Message] = []
    for i, raw in enumerate(value):
        param = f"messages[{i}]"
        msg = expect_object(raw, param)
        role = msg.get("role")
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"{param}.role must be user or assistant; got {role!r}", param=f"{param}.role")
        content = msg.get("content")
        if type(content) is str:
            out.append(Message(role, content))
            continue
        if type(content) is not list:
            raise InvalidRequest(f"{param}.content must be a string or an array of blocks", param=f"{param}.content")
        texts: list[str] = []
        calls: list[ToolCall] = []
        for j, raw_block in enumerate(content):
            bparam = f"{param}.content[{j}]"
            block = expect_object(raw_block, bparam)
            kind = block.get("type")
            if kind == "text":
                texts.append(opt_str(block, "text", f"{bparam}.text", required=True) or "")
            elif kind == "tool_use" and role == "assistant":
                calls.append(
                    ToolCall(
                        opt_str(block, "id", f"{bparam}.id", required=True) or "",
                        opt_str(block, "name", f"{bparam}.name", required=True) or "",
                        orjson.dumps(block.get("input") or {}).decode(),
                    )
                )
            elif kind == "tool_result" and role == "user":
                result = block.get("content", "")
                out.append(
                    Message(
                        "tool",
                        _text_of(result, f"{bparam}.content"),
                        tool_call_id=opt_str(block, "tool_use_id", f"{bparam}.tool_use_id", required=True),
                        is_error=opt_bool(block, "is_error"),
                    )
                )
            else:
                raise InvalidRequest(
                    f"{bparam}: content blocks of type {kind!r} are not supported here", param=f"{bparam}.type"
                )
        if texts or calls:
            out.append(Message(role, "".join(texts), tool_calls=calls or None))
    return out


def _tools(value: Any) -> list[ToolSpec]:
    tools = []
    for i, raw in enumerate(opt_list(value, "tools")):
        tool = expect_object(raw, f"tools[{i}]")
        tools.append(
            ToolSpec(
                opt_str(tool, "name", f"tools[{i}].name", required=True) or "",
                opt_str(tool, "description", f"tools[{i}].description"),
                expect_object(tool.get("input_schema", {}), f"tools[{i}].input_schema"),
            )
        )
    return tools


def _output_format(value: Any) -> ResponseFormat:
    """`output_config.format` (Anthropic's structured outputs, what `client.messages.parse(output_format=…)`
    sends): a JSON schema the answer must follow. Other output_config fields are the upstream's business."""
    if value is None:
        return ResponseFormat()
    fmt = expect_object(value, "output_config").get("format")
    if fmt is None:
        return ResponseFormat()
    fmt = expect_object(fmt, "output_config.format")
    if fmt.get("type") != "json_schema":
        raise InvalidRequest("output_config.format.type must be 'json_schema'", param="output_config.format.type")
    schema = expect_object(fmt.get("schema"), "output_config.format.schema")
    return ResponseFormat(type="json_schema", json_schema=schema)


def parse_messages_request(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> ChatRequest:
    model = opt_str(body, "model", required=True) or ""
    max_tokens = opt_int(body, "max_tokens", lo=1)
    if max_tokens is None:
        raise InvalidRequest("max_tokens: field required", param="max_tokens")
    system = body.get("system")
    messages = _messages(body.get("messages"))
    if system is not None:
        messages.insert(0, Message("system", _text_of(system, "system")))
    tools = _tools(body.get("tools"))
    tool_choice, parallel = tool_choices.from_anthropic(body.get("tool_choice"), tools)
    metadata = body.get("metadata")
    meta: dict[str, str] = {}
    if metadata is not None:
        meta = {k: v for k, v in expect_object(metadata, "metadata").items() if type(v) is str}
    task, quality = routing_hints(meta, headers or {})
    cache_lookup, cache_store = cache_controls(body, headers or {})
    return ChatRequest(
        model=model,
        messages=messages,
        sampling=SamplingParams(
            temperature=opt_number(body, "temperature", 1.0, lo=0.0, hi=1.0),
            top_p=opt_number(body, "top_p", 1.0, lo=0.0, hi=1.0),
            max_tokens=max_tokens,
            stop=stop_sequences(body.get("stop_sequences"), "stop_sequences", limit=16),
            temperature_given=body.get("temperature") is not None,
        ),
        response_format=_output_format(body.get("output_config")),
        stream=opt_bool(body, "stream"),
        metadata=meta,
        api="anthropic",
        task=task,
        quality=quality,
        has_tools=bool(tools),
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
        cache_lookup=cache_lookup,
        cache_store=cache_store,
    )


def _usage(usage: Usage) -> dict[str, int]:
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens}


def message_body(message_id: str, model: str, result: Completion) -> bytes:
    content: list[dict[str, Any]] = []
    if result.text or not result.tool_calls:
        content.append({"type": "text", "text": result.text})
    for call in result.tool_calls or ():
        content.append({"type": "tool_use", "id": call.id, "name": call.name, "input": _json_or_empty(call.arguments)})
    return orjson.dumps(
        {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": STOP_REASON.get(result.finish_reason, "end_turn"),
            "stop_sequence": None,
            "usage": _usage(result.usage),
        }
    )


def _json_or_empty(text: str) -> Any:
    try:
        return orjson.loads(text or "{}")
    except orjson.JSONDecodeError:
        return {}


class EventEncoder:
    """Encodes one response's Anthropic SSE events, opening and closing content blocks as needed."""

    def __init__(self, message_id: str, model: str, input_tokens: int = 0) -> None:
        self._id, self._model = message_id, model
        self._index = -1
        self._open: str | None = None  # "text" | "tool_use"
        self._tool_of: dict[int, int] = {}  # tool call index → content block index
        self.input_tokens = input_tokens

    def start(self) -> bytes:
        message = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return sse.json_event({"type": "message_start", "message": message}, "message_start")

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return sse.json_event({"type": "content_block_stop", "index": self._index}, "content_block_stop")

    def text(self, text: str) -> bytes:
        out = b""
        if self._open != "text":
            out += self._close()
            self._index += 1
            self._open = "text"
            block = {"type": "content_block_start", "index": self._index, "content_block": {"type": "text", "text": ""}}
            out += sse.json_event(block, "content_block_start")
        delta = {"type": "content_block_delta", "index": self._index, "delta": {"type": "text_delta", "text": text}}
        return out + sse.json_event(delta, "content_block_delta")

    def tool(self, index: int, call_id: str | None, name: str | None, arguments: str) -> bytes:
        out = b""
        if index not in self._tool_of:
            out += self._close()
            self._index += 1
            self._tool_of[index] = self._index
            self._open = "tool_use"
            block = {"type": "tool_use", "id": call_id or f"toolu_{index}", "name": name or "", "input": {}}
            start = {"type": "content_block_start", "index": self._index, "content_block": block}
            out += sse.json_event(start, "content_block_start")
        if arguments:
            delta = {
                "type": "content_block_delta",
                "index": self._tool_of[index],
                "delta": {"type": "input_json_delta", "partial_json": arguments},
            }
            out += sse.json_event(delta, "content_block_delta")
        return out

    def finish(self, reason: str, usage: Usage | None) -> bytes:
        out = self._close()
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": STOP_REASON.get(reason, "end_turn"), "stop_sequence": None},
            "usage": {
                "input_tokens": usage.prompt_tokens if usage else self.input_tokens,
                "output_tokens": usage.completion_tokens if usage else 0,
            },
        }
        out += sse.json_event(delta, "message_delta")
        return out + sse.json_event({"type": "message_stop"}, "message_stop")

    @staticmethod
    def error(type_: str, message: str) -> bytes:
        return sse.json_event({"type": "error", "error": {"type": type_, "message": message}}, "error")
