"""An external OpenAI-compatible server as an engine: vLLM, llama.cpp's server, Ollama, another gateway.

Every request streams upstream (`stream: true` with usage), whatever the client asked for: the first token
reaches the pipeline as early as the upstream sends it, and non-streaming answers are gathered by the caller.
One pooled aiohttp session keeps connections alive across requests. The per-chunk path is one line read, one
orjson.loads and a few dict lookups; nothing is buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from yarl import URL

from router.engines.base import Capabilities
from router.errors import (
    InvalidRequest,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    RouterError,
    Timeout,
    UpstreamError,
)
from router.sanitize import redact, safe_kind, safe_param
from router.types import ChatRequest, Chunk, FinishReason, Message, ToolCallDelta, Usage

log = logging.getLogger(__name__)

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_ERROR_BODY_LIMIT = 64 * 1024


class OpenAIHTTPEngine:
    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        upstream_model: str,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        connect_timeout_s: float = 10.0,
        max_connections: int = 256,
    ) -> None:
        self.name = name
        self.capabilities = Capabilities(chat=True, json_schema=True)
        self.upstream_model = upstream_model
        base = base_url.rstrip("/")
        # Parsed once: aiohttp re-parses a str URL on every request.
        self._chat_url = URL(base + "/chat/completions")
        self._models_url = URL(base + "/models")
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        self._secrets = (api_key,) if api_key else ()
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=60)
            # auto_decompress off: we ask for no compression, and an LLM stream is too small to gain from it.
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def health(self) -> bool:
        if self._session is None:
            return False
        try:
            async with self._session.get(
                self._models_url, headers=self._headers, timeout=aiohttp.ClientTimeout(total=5)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    # -- generation ------------------------------------------------------------------------------------------

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The upstream request body for `request`."""
        s = request.sampling
        messages = [_message(m) for m in request.messages]
        body: dict[str, Any] = {
            "model": self.upstream_model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        if s.max_tokens is not None:
            body["max_tokens"] = s.max_tokens
        if s.stop:
            body["stop"] = list(s.stop)
        if s.seed is not None:
            body["seed"] = s.seed
        if s.logprobs:
            body["logprobs"] = True
            if s.top_logprobs:
                body["top_logprobs"] = s.top_logprobs
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description or "", "parameters": t.parameters},
                }
                for t in request.tools
            ]
            if request.tool_choice is not None:
                body["tool_choice"] = request.tool_choice
            if request.parallel_tool_calls is not None:
                body["parallel_tool_calls"] = request.parallel_tool_calls
        fmt = request.response_format
        if fmt.type == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif fmt.type == "json_schema":
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name or "response", "schema": fmt.json_schema or {}},
            }
        return body

    async def generate(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        if self._session is None:
            raise UpstreamError(f"model {self.name!r}: engine not started")
        timeout = self._timeout
        if request.deadline is not None:
            left = request.deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise Timeout("the request's deadline passed before it reached the upstream")
            if left < self._timeout_s:
                timeout = aiohttp.ClientTimeout(total=left, sock_connect=self._connect_timeout_s)
        headers = self._headers
        if request.request_id:
            headers = {**headers, "X-Request-Id": request.request_id}
        try:
            resp = await self._session.post(
                self._chat_url, data=orjson.dumps(self.body(request)), headers=headers, timeout=timeout
            )
        except aiohttp.ConnectionTimeoutError:
            raise UpstreamError(f"model {self.name!r}: timed out connecting to the upstream") from None
        except TimeoutError:
            raise Timeout(f"model {self.name!r}: the upstream did not answer within the deadline") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"model {self.name!r}: cannot reach the upstream ({type(exc).__name__})") from None
        complete = False
        try:
            if resp.status != 200:
                raise await self._http_error(resp)
            finish: FinishReason | None = None
            usage: Usage | None = None
            want_logprobs = request.sampling.logprobs
            # Read to the end of the body even after [DONE]: a fully read response returns its connection to
            # the pool; one abandoned mid-body would be closed.
            async for lines in iter_lines(resp.content):
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue  # blank separators, `event:` lines, `:` keep-alive comments
                    if line.startswith(b"data: [DONE]"):
                        continue
                    obj = orjson.loads(line[5:])
                    choices = obj.get("choices")
                    if choices:
                        choice = choices[0]
                        delta = choice.get("delta")
                        text = delta.get("content") if delta else None
                        if text:
                            yield Chunk(text=text, logprob=_logprob(choice) if want_logprobs else None)
                        if delta and delta.get("tool_calls"):
                            for chunk in _tool_deltas(delta["tool_calls"]):
                                yield chunk
                        reason = choice.get("finish_reason")
                        if reason:
                            finish = _FINISH.get(reason, "stop")
                    elif "error" in obj:
                        raise _stream_error(self.name, obj["error"], self._secrets)
                    u = obj.get("usage")
                    if u:
                        usage = Usage(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0)
            if finish is None:
                raise UpstreamError(f"model {self.name!r}: the upstream stream ended before a finish reason")
            complete = True
            yield Chunk(finish_reason=finish, usage=usage or Usage())
        except aiohttp.ServerTimeoutError:
            raise Timeout(f"model {self.name!r}: the upstream stalled") from None
        except TimeoutError:
            raise Timeout(f"model {self.name!r}: the upstream did not finish within the deadline") from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(f"model {self.name!r}: the upstream stream broke ({type(exc).__name__})") from None
        except orjson.JSONDecodeError as exc:
            raise UpstreamError(f"model {self.name!r}: the upstream sent a malformed chunk: {exc}") from None
        finally:
            # Early close (client gone, deadline) or failure: drop the connection so the upstream stops work.
            if complete:
                resp.release()
            else:
                resp.close()

    async def _http_error(self, resp: aiohttp.ClientResponse) -> RouterError:
        """The upstream's error as ours: its status and error type kept, its body never forwarded (see
        router/sanitize.py); the detail goes to the debug log with key material removed."""
        try:
            raw = await resp.content.read(_ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, TimeoutError):
            raw = b""
        message, param, kind = _error_fields(raw)
        status = resp.status
        log.warning("model %s: upstream answered %d %s (param %s)", self.name, status, kind or "-", param or "-")
        log.debug("model %s: upstream error detail: %s", self.name, redact(message, self._secrets))
        what = f"model {self.name!r}: the upstream answered {status}" + (f" {kind}" if kind else "")
        if status in (400, 422):
            return InvalidRequest(f"{what}: it rejected the request", param=param)
        if status == 404:
            return NotFound(f"{what}: no model {self.upstream_model!r} or endpoint there", param=param)
        if status == 413:
            return PayloadTooLarge(f"{what}: the request is too large for it")
        if status == 429:
            return RateLimited(f"{what}: it is rate limiting", retry_after=_retry_after(resp.headers))
        if status in (503, 529):
            return Overloaded(f"{what}: it is overloaded", retry_after=_retry_after(resp.headers))
        if status in (408, 504):
            return Timeout(f"{what}: it timed out")
        if status in (401, 403):
            # Our credentials for the upstream are wrong: the caller's request is not at fault, and no retry helps.
            err = UpstreamError(f"{what}: the router's credentials were refused")
            err.retryable = False
            return err
        return UpstreamError(f"{what}: it failed")


async def iter_lines(content: aiohttp.StreamReader) -> AsyncIterator[list[bytes]]:
    """Complete lines in batches, one batch per network read: far cheaper than one await per line."""
    tail = b""
    async for block in content.iter_any():
        lines = (tail + block).split(b"\n") if tail else block.split(b"\n")
        tail = lines.pop()
        if lines:
            yield lines
    if tail:
        yield [tail]


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.name is not None:
        out["name"] = m.name
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    if m.tool_call_id is not None:
        out["tool_call_id"] = m.tool_call_id
    return out


def _tool_deltas(calls: list[dict[str, Any]]) -> list[Chunk]:
    out = []
    for call in calls:
        fn = call.get("function") or {}
        delta = ToolCallDelta(call.get("index", 0), call.get("id"), fn.get("name"), fn.get("arguments") or "")
        out.append(Chunk(tool_call=delta))
    return out


def _logprob(choice: dict[str, Any]) -> float | None:
    lp = choice.get("logprobs")
    content = lp.get("content") if lp else None
    return content[0].get("logprob") if content else None


def _error_fields(raw: bytes) -> tuple[str, str | None, str | None]:
    """(message, param, type) of an upstream error body: OpenAI, Anthropic, FastAPI `detail`, or plain text.
    The message is for the debug log only; param and type only when they are plain identifiers."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", "replace").strip(), None, None
    if isinstance(obj, dict):
        err = obj.get("error", obj)
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or obj.get("detail")
            return (str(msg) if msg is not None else "", safe_param(err.get("param")), safe_kind(err.get("type")))
        if isinstance(err, str):
            return err, None, None
    return raw.decode("utf-8", "replace"), None, None


def _stream_error(name: str, err: Any, secrets: tuple[str, ...]) -> RouterError:
    message = err.get("message", "") if isinstance(err, dict) else str(err)
    kind = safe_kind(err.get("type")) if isinstance(err, dict) else None
    log.debug("model %s: upstream stream error detail: %s", name, redact(str(message), secrets))
    if kind in ("overloaded_error", "server_overloaded"):
        return Overloaded(f"model {name!r}: the upstream is overloaded")
    if kind == "rate_limit_error":
        return RateLimited(f"model {name!r}: the upstream is rate limiting")
    return UpstreamError(f"model {name!r}: the upstream failed mid-stream" + (f" ({kind})" if kind else ""))


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` or `retry-after` (seconds; an HTTP date is not worth parsing)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        with contextlib.suppress(ValueError):
            return float(ms) / 1000
    value = headers.get("retry-after")
    if value is not None:
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None
