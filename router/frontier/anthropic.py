"""Anthropic Messages API through the official `anthropic` SDK, streaming.

`max_retries=0`: retries are the router's (router/frontier/resilience.py), so the SDK's would only stack on them.
Errors inside a stream arrive as a plain `APIStatusError`; we branch on its `.type`, not its class.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson

from router.config import FrontierModelSettings
from router.errors import (
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RouterError,
    Timeout,
    UpstreamError,
)
from router.frontier.base import api_key
from router.sanitize import redact, safe_kind
from router.types import ChatRequest, Chunk, FinishReason, Message, ToolCallDelta, Usage

log = logging.getLogger(__name__)

STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}


class AnthropicProvider:
    def __init__(self, settings: FrontierModelSettings) -> None:
        self.name = settings.name
        self.settings = settings
        self._client: Any = None
        self._secrets: tuple[str, ...] = ()

    async def start(self) -> None:
        import anthropic  # lazy: only deployments with an Anthropic model need the SDK

        s = self.settings
        key = api_key(s)
        self._secrets = (key,) if key else ()
        self._client = anthropic.AsyncAnthropic(
            api_key=key,
            base_url=s.base_url,
            max_retries=0,
            timeout=anthropic.Timeout(s.total_timeout_s, connect=s.connect_timeout_s),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    def params(self, request: ChatRequest) -> dict[str, Any]:
        s = request.sampling
        system, messages = to_anthropic_messages(request.messages)
        params: dict[str, Any] = {
            "model": self.settings.model_id,
            "max_tokens": s.max_tokens or self.settings.default_max_tokens,
            "messages": messages,
        }
        # SDK 2.x has no temperature/top_p (current Claude models fix their sampling): they are not sent.
        fmt = request.response_format
        if fmt.type == "json_schema" and fmt.json_schema:
            params["output_config"] = {"format": {"type": "json_schema", "schema": fmt.json_schema}}
        elif fmt.type == "json_object":
            system = (system + "\n\n" if system else "") + "Reply with a single JSON object and nothing else."
        if system:
            params["system"] = system
        if s.stop:
            params["stop_sequences"] = list(s.stop)
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description or "", "input_schema": t.parameters}
                for t in request.tools
            ]
            choice = anthropic_tool_choice(request.tool_choice)
            if request.parallel_tool_calls is False and request.tool_choice != "none":  # "none" has no such flag
                choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
            if choice is not None:
                params["tool_choice"] = choice
        return params

    async def count_tokens(self, request: ChatRequest) -> int:
        """The prompt's size by Anthropic's own count API (`count_tokens: provider`)."""
        import anthropic

        if self._client is None:
            raise UpstreamError(f"frontier model {self.name!r} is not started")
        params = self.params(request)
        for unused in ("max_tokens", "stop_sequences"):  # not part of the count API
            params.pop(unused, None)
        try:
            result = await self._client.messages.count_tokens(**params)
        except anthropic.APIError as exc:
            raise map_error(self.name, exc) from None
        return int(result.input_tokens)

    async def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        import anthropic

        if self._client is None:
            raise UpstreamError(f"frontier model {self.name!r} is not started")
        try:
            stream = await self._client.messages.create(**self.params(request), stream=True)
        except anthropic.APIError as exc:
            raise map_error(self.name, exc, self._secrets) from None
        usage = Usage()
        finish: FinishReason | None = None
        tool_index = -1
        first = True  # the first chunk carries the upstream's prompt count (for message_start of our stream)
        try:
            async for event in stream:
                kind = event.type
                chunk: Chunk | None = None
                if kind == "content_block_delta":
                    delta = event.delta
                    if delta.type == "text_delta":
                        chunk = Chunk(text=delta.text)
                    elif delta.type == "input_json_delta" and delta.partial_json:
                        chunk = Chunk(tool_call=ToolCallDelta(tool_index, arguments=delta.partial_json))
                elif kind == "content_block_start":
                    block = event.content_block
                    if block.type == "tool_use":
                        tool_index += 1
                        chunk = Chunk(tool_call=ToolCallDelta(tool_index, id=block.id, name=block.name))
                elif kind == "message_start":
                    usage.prompt_tokens = event.message.usage.input_tokens or 0
                elif kind == "message_delta":
                    if event.delta.stop_reason:
                        finish = STOP_REASONS.get(event.delta.stop_reason, "stop")
                    if event.usage is not None and event.usage.output_tokens is not None:
                        usage.completion_tokens = event.usage.output_tokens
                elif kind == "message_stop":
                    yield Chunk(finish_reason=finish or "stop", usage=usage, prompt_tokens=usage.prompt_tokens)
                    return
                if chunk is not None:
                    if first:
                        chunk.prompt_tokens, first = usage.prompt_tokens, False
                    yield chunk
        except anthropic.APIError as exc:
            raise map_error(self.name, exc, self._secrets) from None
        finally:
            await stream.close()
        raise UpstreamError(f"frontier model {self.name!r}: the stream ended without message_stop")


def map_error(name: str, exc: Exception, secrets: tuple[str, ...] = ()) -> RouterError:
    """An SDK error as a router error: the client's fault keeps its meaning, the provider's becomes retryable.
    The upstream's message is never forwarded (it may echo key material, see router/sanitize.py): the client gets
    the status and error type; the debug log gets the detail, redacted."""
    import anthropic

    if isinstance(exc, anthropic.APITimeoutError):
        return Timeout(f"frontier model {name!r} timed out")
    if isinstance(exc, anthropic.APIConnectionError):
        return UpstreamError(f"frontier model {name!r}: connection failed")
    if isinstance(exc, anthropic.APIStatusError):
        kind = getattr(exc, "type", None)
        if kind is None and isinstance(exc.body, dict):
            kind = (exc.body.get("error") or {}).get("type")
        kind = safe_kind(kind)
        status = exc.status_code
        log.warning("frontier model %s: upstream answered %s %s", name, status, kind or "-")
        log.debug("frontier model %s: upstream error detail: %s", name, redact(str(exc), secrets))
        what = f"frontier model {name!r}: the upstream answered {status}" + (f" {kind}" if kind else "")
        if kind == "overloaded_error" or status == 529:
            return Overloaded(f"frontier model {name!r} is overloaded", retry_after=_retry_after(exc))
        if kind == "rate_limit_error" or status == 429:
            return RateLimited(f"frontier model {name!r} rate-limited the router", retry_after=_retry_after(exc))
        if status == 413 or kind == "request_too_large":
            return PayloadTooLarge(f"{what}: the request is too large for it")
        if status == 400 or kind == "invalid_request_error":
            return InvalidRequest(f"{what}: it rejected the request")
        if status in (401, 403) or kind in ("authentication_error", "permission_error"):
            err = UpstreamError(f"frontier model {name!r}: the router's credentials were refused")
            err.retryable = False
            return err
        if status == 404 or kind == "not_found_error":
            err = UpstreamError(f"frontier model {name!r}: model or endpoint not found upstream")
            err.retryable = False
            return err
        if status == 504 or kind == "timeout_error":
            return Timeout(f"frontier model {name!r} timed out upstream")
        return UpstreamError(f"frontier model {name!r} failed ({status} {kind or 'error'})")
    return UpstreamError(f"frontier model {name!r} failed: {type(exc).__name__}")


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    except ValueError:
        return None
    return None


def anthropic_tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None or choice == "auto":
        return {"type": "auto"} if choice else None
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    return None


def to_anthropic_messages(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """Neutral messages → (system prompt, Anthropic messages). Tool results become user tool_result blocks."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id or "", "content": m.content}
            if m.is_error:
                block["is_error"] = True
            _append(out, "user", [block])
        elif m.role == "assistant" and m.tool_calls:
            blocks: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
            for call in m.tool_calls:
                try:
                    args = orjson.loads(call.arguments or "{}")
                except orjson.JSONDecodeError:
                    raise InvalidRequest(f"tool call {call.id!r}: arguments are not valid JSON") from None
                blocks.append({"type": "tool_use", "id": call.id, "name": call.name, "input": args})
            _append(out, "assistant", blocks)
        else:
            _append(out, m.role, [{"type": "text", "text": m.content}])
    return system, out


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants user and assistant to alternate: merge consecutive turns of one role.
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})
