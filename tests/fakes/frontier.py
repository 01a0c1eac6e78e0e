"""A fake frontier: Anthropic Messages API and OpenAI chat completions, exact wire format, faults on demand.

The behaviour comes from the model name (or the `x-fake-behavior` header):

    ok                       a normal answer (streamed in several deltas when asked)
    slow                     every delta 50 ms apart
    slow_first_token         2 s before the first byte of the body
    error_400/_429/_500/_529 that error (429 with retry-after: 0.1 and retry-after-ms: 100)
    error_401/_404/_413/_422/_502/_503/_504   that error too (Anthropic and OpenAI error bodies, as the real APIs send)
    …_ra_S / …_rams_MS       with `retry-after: S` (seconds) / only `retry-after-ms: MS` on the error, e.g.
                             error_529_rams_300 (replaces error_429's default pair)
    flaky_N                  500 for the first N requests to this model, then ok
    stream_error_after_K     K deltas, then an in-band error event (overloaded)
    cut_stream               K deltas, then the connection ends without message_stop / [DONE]
    hang                     accepts and never answers
    error_401/_403/_404/_413 those errors too
    echo                     (with an error or stream_error behaviour) the error message echoes the credentials and
                             the body it received, as real APIs (key fragments in 401s) and proxies (more) do
    approve / correct        advisor review: answers "APPROVED" / "CORRECTED: <better answer>"
    tool                     answers with a tool call to the first tool offered
    agent                    a tool-using model: parallel calls, streamed partial JSON, tool_choice honoured, tool
                             results answered, tool pairing checked as the real APIs do (see tests/fakes/agent.py)

The answer text is "Frontier answer about: <first 40 chars of the last user message>". Every request is recorded
in `FakeFrontier.requests` (path, model, headers, body) for assertions.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Recorded:
    path: str
    model: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeState:
    requests: list[Recorded] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


STATE = web.AppKey("state", FakeState)


def _behavior(model: str, headers: Any) -> str:
    return headers.get("x-fake-behavior") or model


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return " ".join(b.get("text", "") for b in c if isinstance(b, dict) and b.get("type") == "text")
    return ""


def answer_text(behavior: str, messages: list[dict[str, Any]]) -> str:
    if "approve" in behavior:
        return "APPROVED"
    if "correct" in behavior:
        return "CORRECTED: The right answer, reviewed by the frontier model."
    return f"Frontier answer about: {_last_user_text(messages)[:40]}"


def _deltas(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


class _Fault(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


async def _pre(behavior: str, state: FakeState, model: str) -> None:
    state.counts[model] = state.counts.get(model, 0) + 1
    if "hang" in behavior:
        await asyncio.sleep(3600)
    if "slow_first_token" in behavior:
        await asyncio.sleep(2.0)
    m = re.search(r"flaky_(\d+)", behavior)
    if m and state.counts[model] <= int(m.group(1)):
        raise _Fault(500, "api_error", "flaky upstream")
    for code, kind in (
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (422, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ):
        if f"error_{code}" in behavior:
            headers = {"retry-after": "0.1", "retry-after-ms": "100"} if code == 429 else {}
            if m := re.search(r"_ra_(\d+(?:\.\d+)?)", behavior):
                headers = {"retry-after": m.group(1)}
            elif m := re.search(r"_rams_(\d+)", behavior):
                headers = {"retry-after-ms": m.group(1)}
            raise _Fault(code, kind, f"fake {kind}", headers)


def _echo(request: web.Request, body: dict[str, Any]) -> str:
    """What a careless upstream puts in its error messages: the caller's credentials and request."""
    auth = request.headers.get("authorization", "")
    key = request.headers.get("x-api-key", "")
    return f" (request had authorization={auth!r} x-api-key={key!r} body={orjson.dumps(body).decode()[:300]})"


def _mid_stream_fault(behavior: str) -> tuple[str, int] | None:
    m = re.search(r"(stream_error_after|cut_stream)_?(\d+)?", behavior)
    if not m:
        return None
    return m.group(1), int(m.group(2) or 2)


# -- Anthropic ------------------------------------------------------------------------------------------------


def _anthropic_error(fault: _Fault) -> web.Response:
    body = {"type": "error", "error": {"type": fault.kind, "message": fault.message}}
    return web.Response(
        status=fault.status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"request-id": "req_fake", **fault.headers},
    )


async def anthropic_messages(request: web.Request) -> web.StreamResponse:
    state: FakeState = request.app[STATE]
    if request.headers.get("anthropic-version") is None:
        return _anthropic_error(_Fault(400, "invalid_request_error", "anthropic-version header is required"))
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if not key or key == "bad-key":
        return _anthropic_error(_Fault(401, "authentication_error", "invalid x-api-key"))
    body = await request.json()
    model = body.get("model", "")
    state.requests.append(Recorded(request.path, model, {k.lower(): v for k, v in request.headers.items()}, body))
    if "max_tokens" not in body:
        return _anthropic_error(_Fault(400, "invalid_request_error", "max_tokens: Field required"))
    behavior = _behavior(model, request.headers)
    echo = _echo(request, body) if "echo" in behavior else ""
    try:
        await _pre(behavior, state, model)
    except _Fault as fault:
        fault.message += echo
        return _anthropic_error(fault)
    if "agent" in behavior:  # a tool-using model: tests/fakes/agent.py
        from tests.fakes.agent import anthropic_agent

        return await anthropic_agent(request, body, f"msg_fake{len(state.requests)}")
    text = answer_text(behavior, body.get("messages", []))
    tools = body.get("tools") or []
    use_tool = "tool" in behavior and tools
    input_tokens = sum(_count_tokens(_last_user_text([m])) for m in body.get("messages", [])) + 3
    output_tokens = _count_tokens(text)
    stop_reason = "tool_use" if use_tool else "end_turn"
    for stop in body.get("stop_sequences") or []:
        if stop in text:
            text, stop_reason = text[: text.index(stop)], "stop_sequence"
            break
    msg_id = f"msg_fake{len(state.requests)}"
    tool_block = (
        {"type": "tool_use", "id": "toolu_fake1", "name": tools[0]["name"], "input": {"city": "Paris"}}
        if use_tool
        else None
    )
    if not body.get("stream"):
        content = [tool_block] if use_tool else [{"type": "text", "text": text}]
        out = {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json", headers={"request-id": "req_fake"})
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "request-id": "req_fake"}
    )
    await resp.prepare(request)

    async def send(name: str, data: dict[str, Any]) -> None:
        await resp.write(b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n")

    await send(
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        },
    )
    await send("ping", {"type": "ping"})
    fault = _mid_stream_fault(behavior)
    if use_tool:
        await send(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {**tool_block, "input": {}}},
        )
        for part in ('{"city": ', '"Paris"}'):
            await send(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                },
            )
    else:
        await send(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        )
        for i, delta in enumerate(_deltas(text)):
            if fault and i == fault[1]:
                if fault[0] == "cut_stream":
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                error = {"type": "overloaded_error", "message": "Overloaded" + echo}
                await send("error", {"type": "error", "error": error})
                return resp
            if "slow" in behavior and "first" not in behavior:
                await asyncio.sleep(0.05)
            await send(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": delta}},
            )
    await send("content_block_stop", {"type": "content_block_stop", "index": 0})
    await send(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
    )
    await send("message_stop", {"type": "message_stop"})
    return resp


async def anthropic_count_tokens(request: web.Request) -> web.Response:
    """POST /v1/messages/count_tokens: the same count the fake reports as input_tokens for these messages."""
    state: FakeState = request.app[STATE]
    key = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if not key or key == "bad-key":
        return _anthropic_error(_Fault(401, "authentication_error", "invalid x-api-key"))
    body = await request.json()
    state.requests.append(
        Recorded(request.path, body.get("model", ""), {k.lower(): v for k, v in request.headers.items()}, body)
    )
    if "max_tokens" in body:
        return _anthropic_error(_Fault(400, "invalid_request_error", "max_tokens: Extra inputs are not permitted"))
    n = sum(_count_tokens(_last_user_text([m])) for m in body.get("messages", [])) + 3
    return web.json_response({"input_tokens": n})


# -- OpenAI ---------------------------------------------------------------------------------------------------


def _openai_error(fault: _Fault) -> web.Response:
    body = {"error": {"message": fault.message, "type": fault.kind, "param": None, "code": None}}
    return web.Response(
        status=fault.status, body=orjson.dumps(body), content_type="application/json", headers=fault.headers
    )


async def openai_chat(request: web.Request) -> web.StreamResponse:
    state: FakeState = request.app[STATE]
    if request.headers.get("authorization", "") in ("", "Bearer bad-key"):
        return _openai_error(_Fault(401, "invalid_request_error", "Incorrect API key provided"))
    body = await request.json()
    model = body.get("model", "")
    state.requests.append(Recorded(request.path, model, {k.lower(): v for k, v in request.headers.items()}, body))
    behavior = _behavior(model, request.headers)
    echo = _echo(request, body) if "echo" in behavior else ""
    try:
        await _pre(behavior, state, model)
    except _Fault as fault:
        fault.message += echo
        return _openai_error(fault)
    if "agent" in behavior:  # a tool-using model: tests/fakes/agent.py
        from tests.fakes.agent import openai_agent

        return await openai_agent(request, body, f"chatcmpl-fake{len(state.requests)}", int(time.time()))
    text = answer_text(behavior, body.get("messages", []))
    tools = body.get("tools") or []
    use_tool = "tool" in behavior and tools
    finish = "tool_calls" if use_tool else "stop"
    for stop in [body["stop"]] if isinstance(body.get("stop"), str) else body.get("stop") or []:
        if stop in text:
            text = text[: text.index(stop)]
            break
    prompt_tokens = sum(_count_tokens(_last_user_text([m])) for m in body.get("messages", [])) + 3
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": _count_tokens(text),
        "total_tokens": prompt_tokens + _count_tokens(text),
    }
    cid, created = f"chatcmpl-fake{len(state.requests)}", int(time.time())
    tool_call = (
        {
            "id": "call_fake1",
            "type": "function",
            "function": {"name": tools[0]["function"]["name"], "arguments": '{"city": "Paris"}'},
        }
        if use_tool
        else None
    )
    if not body.get("stream"):
        message = {"role": "assistant", "content": None if use_tool else text}
        if use_tool:
            message["tool_calls"] = [tool_call]
        out = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }
        return web.Response(body=orjson.dumps(out), content_type="application/json")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)

    async def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> None:
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
        }
        await resp.write(b"data: " + orjson.dumps(data) + b"\n\n")

    await chunk({"role": "assistant", "content": ""})
    fault = _mid_stream_fault(behavior)
    if use_tool:
        await chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_fake1",
                        "type": "function",
                        "function": {"name": tool_call["function"]["name"], "arguments": ""},
                    }
                ]
            }
        )
        for part in ('{"city": ', '"Paris"}'):
            await chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    else:
        for i, delta in enumerate(_deltas(text)):
            if fault and i == fault[1]:
                if fault[0] == "cut_stream":
                    request.transport.close()  # type: ignore[union-attr]
                    return resp
                message = "upstream overloaded" + echo
                err = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
                await resp.write(b"data: " + orjson.dumps(err) + b"\n\ndata: [DONE]\n\n")
                return resp
            if "slow" in behavior and "first" not in behavior:
                await asyncio.sleep(0.05)
            await chunk({"content": delta})
    await chunk({}, finish)
    if (body.get("stream_options") or {}).get("include_usage"):
        data = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await resp.write(b"data: " + orjson.dumps(data) + b"\n\n")
    await resp.write(b"data: [DONE]\n\n")
    return resp


async def openai_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [{"id": "ok", "object": "model", "owned_by": "fake"}]})


# -- rerank and transcription (Cohere/Jina and OpenAI shapes), for the router's fallbacks -------------------


async def fake_rerank(request: web.Request) -> web.Response:
    """Cohere/Jina /v1/rerank: the score of a document is the share of query words it contains."""
    body = await request.json()
    model = body.get("model", "")
    request.app[STATE].requests.append(
        Recorded(request.path, model, {k.lower(): v for k, v in request.headers.items()}, body)
    )
    if "error" in model:
        return web.json_response({"message": "reranker failed"}, status=500)
    words = set(body["query"].lower().split())
    docs = [d if isinstance(d, str) else d["text"] for d in body["documents"]]
    scores = [len(words & set(d.lower().split())) / max(1, len(words)) for d in docs]
    order = sorted(range(len(docs)), key=lambda i: -scores[i])[: body.get("top_n") or len(docs)]
    results = [
        {
            "index": i,
            "relevance_score": scores[i],
            **({"document": {"text": docs[i]}} if body.get("return_documents", True) else {}),
        }
        for i in order
    ]
    return web.json_response({"id": "rerank-fake", "model": model, "results": results, "usage": {"total_tokens": 7}})


async def fake_transcriptions(request: web.Request) -> web.Response:
    """OpenAI /v1/audio/transcriptions: answers with the uploaded file's size, in json or text."""
    form = await request.post()
    upload = form["file"]
    model = str(form.get("model", ""))
    fields = {k: str(v) for k, v in form.items() if k != "file"}
    request.app[STATE].requests.append(
        Recorded(request.path, model, {k.lower(): v for k, v in request.headers.items()}, fields)
    )
    size = len(upload.file.read())  # type: ignore[union-attr]
    text = f"fake transcript of {size} bytes"
    if fields.get("response_format") == "text":
        return web.Response(text=text + "\n", content_type="text/plain")
    return web.json_response({"text": text})


def add_audio_and_rerank(app: web.Application) -> None:
    app.router.add_post("/v1/rerank", fake_rerank)
    app.router.add_post("/v1/audio/transcriptions", fake_transcriptions)


def build_fake_app(state: FakeState | None = None) -> web.Application:
    app = web.Application()
    app[STATE] = state or FakeState()
    app.router.add_post("/v1/messages", anthropic_messages)
    app.router.add_post("/v1/messages/count_tokens", anthropic_count_tokens)
    app.router.add_post("/v1/chat/completions", openai_chat)
    app.router.add_get("/v1/models", openai_models)
    add_audio_and_rerank(app)
    return app


class FakeFrontier:
    """The fake upstream on a free port, in its own thread and event loop."""

    def __init__(self) -> None:
        self.state = FakeState()
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fake-frontier")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        runner = web.AppRunner(build_fake_app(self.state), handler_cancellation=True)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._runner = runner
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def start(self) -> FakeFrontier:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    def reset(self) -> None:
        self.state.requests.clear()
        self.state.counts.clear()
