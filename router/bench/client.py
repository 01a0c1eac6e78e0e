"""One request against an OpenAI-compatible server → a filled-in RequestRecord.

The SSE stream is parsed by hand from `resp.content`, one batch of lines per network read: the client must stay
cheaper than any server it measures, so each chunk costs one orjson.loads and a few dict lookups.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

import aiohttp
import orjson

from router.bench.stats import RequestRecord
from router.bench.workload import WorkItem
from router.engines.openai_http import iter_lines

_FALSE = {"", "0", "false", "no"}


@dataclass(slots=True)
class Target:
    """Where and how to send: an OpenAI-compatible base URL (…/v1) and the request options."""

    base_url: str
    model: str
    api_key: str | None = None
    stream: bool = True
    max_tokens: int | None = None  # used when a work item names none
    max_tokens_cap: int | None = None  # upper bound on every request's max_tokens (small local models)
    temperature: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", **self.extra_headers}
        if self.api_key:
            h["authorization"] = f"Bearer {self.api_key}"
        return h

    def body(self, item: WorkItem) -> bytes:
        """The request body, serialised once per work item ahead of the run."""
        body: dict[str, Any] = {"model": self.model, "messages": item.messages, "stream": self.stream}
        if self.stream:
            body["stream_options"] = {"include_usage": True}
        max_tokens = item.max_tokens if item.max_tokens is not None else self.max_tokens
        if self.max_tokens_cap is not None:
            max_tokens = min(max_tokens or self.max_tokens_cap, self.max_tokens_cap)
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return orjson.dumps(body)


async def send(
    session: aiohttp.ClientSession,
    target: Target,
    body: bytes,
    headers: dict[str, str],
    rec: RequestRecord,
    prompt_chars: int = 0,
) -> RequestRecord:
    rec.sent = perf_counter()
    try:
        async with session.post(target.url, data=body, headers=headers) as resp:
            rec.status = resp.status
            _read_router_headers(resp.headers, rec)
            if resp.status != 200:
                detail = await resp.read()
                rec.error = f"http_{resp.status}"
                rec.error_detail = detail[:500].decode("utf-8", "replace")
            elif target.stream:
                await _read_stream(resp, rec)
            else:
                await _read_json(resp, rec)
    except (TimeoutError, aiohttp.ServerTimeoutError) as e:
        rec.error, rec.error_detail = "timeout", repr(e)
    except aiohttp.ClientPayloadError as e:
        rec.error, rec.error_detail = "payload", str(e)
    except (aiohttp.ClientConnectionError, OSError) as e:
        rec.error, rec.error_detail = "connection", str(e)
    except aiohttp.ClientError as e:
        rec.error, rec.error_detail = "client", repr(e)
    except orjson.JSONDecodeError as e:
        rec.error, rec.error_detail = "bad_json", str(e)
    rec.end = perf_counter()
    if not rec.usage_reported and rec.error is None:
        # No usage block: count content chunks as tokens and guess the prompt at ~4 chars a token.
        rec.completion_tokens = len(rec.chunk_times)
        rec.prompt_tokens = prompt_chars // 4
    return rec


def _read_router_headers(h: Any, rec: RequestRecord) -> None:
    rec.tier = h.get("x-router-tier")
    rec.cache = h.get("x-router-cache")
    rec.model = h.get("x-router-model")
    # The router names why it escalated; any value but an explicit no counts.
    esc = h.get("x-router-escalated")
    rec.escalated = esc is not None and esc.strip().lower() not in _FALSE
    cost = h.get("x-router-cost-usd")
    if cost is not None:
        with contextlib.suppress(ValueError):
            rec.cost_header = float(cost)


async def _read_stream(resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
    times = rec.chunk_times
    chars = 0
    done = False
    finished = False
    async for lines in iter_lines(resp.content):
        # Chunks that arrived in one network read share its arrival time: that is when the client saw them.
        now = perf_counter()
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # blank separators, `event:` lines, `:` keep-alive comments
            if line.startswith(b"data: [DONE]"):
                done = True
                continue
            obj = orjson.loads(line[5:])
            if "error" in obj:
                err = obj["error"]
                rec.error = "stream_error"
                rec.error_detail = str(err.get("message", err) if isinstance(err, dict) else err)[:500]
                return
            choices = obj.get("choices")
            if choices:
                choice = choices[0]
                delta = choice.get("delta")
                if delta:
                    text = delta.get("content")
                    if text:
                        if rec.first_token is None:
                            rec.first_token = now
                        times.append(now)
                        chars += len(text)
                if choice.get("finish_reason"):
                    finished = True
            usage = obj.get("usage")
            if usage:
                rec.prompt_tokens = usage.get("prompt_tokens") or 0
                rec.completion_tokens = usage.get("completion_tokens") or 0
                rec.usage_reported = True
    rec.output_chars = chars
    if not (done or finished):
        rec.error = "incomplete_stream"
        rec.error_detail = "the stream ended without a finish_reason or [DONE]"


async def _read_json(resp: aiohttp.ClientResponse, rec: RequestRecord) -> None:
    obj = orjson.loads(await resp.read())
    now = perf_counter()
    rec.first_token = now
    rec.chunk_times.append(now)
    choices = obj.get("choices") or [{}]
    text = (choices[0].get("message") or {}).get("content") or ""
    rec.output_chars = len(text)
    usage = obj.get("usage")
    if usage:
        rec.prompt_tokens = usage.get("prompt_tokens") or 0
        rec.completion_tokens = usage.get("completion_tokens") or 0
        rec.usage_reported = True
