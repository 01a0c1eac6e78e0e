"""The frames between the server and an engine worker process: msgpack arrays over a Unix socket pair.

msgpack streams need no length prefix (the unpacker finds frame boundaries itself), and small arrays cost about a
microsecond each way. Frames, by direction:

    server → worker   ["gen", id, request]   ["abort", id]   ["count", id, request]   ["stop"]
    worker → server   ["ready", info]        ["hb", stats]
                      ["c", id, text, logprob, finish, prompt_tokens, completion_tokens]   one chunk
                      ["end", id]            ["err", id, kind, message, param, code, retry_after]
                      ["n", id, tokens]      (answer to "count")

A request carries only what a local engine reads: messages, sampling, response format, and the time left until
its deadline (monotonic clocks are per machine, but a relative budget needs no shared clock).
"""

from __future__ import annotations

from typing import Any

from router import errors
from router.types import ChatRequest, Chunk, Message, ResponseFormat, SamplingParams, Usage

# Error classes that may cross the boundary by name; anything else arrives as an EngineError.
_ERRORS: dict[str, type[errors.RouterError]] = {
    cls.__name__: cls
    for cls in (
        errors.InvalidRequest,
        errors.Overloaded,
        errors.RateLimited,
        errors.EngineError,
        errors.Timeout,
        errors.NotFound,
    )
}


def encode_request(request: ChatRequest, now: float) -> dict[str, Any]:
    """`now`: the sender's event-loop time, the clock `request.deadline` is on."""
    s, fmt = request.sampling, request.response_format
    left = None if request.deadline is None else request.deadline - now
    return {
        "m": [[m.role, m.content] for m in request.messages],
        "s": [s.temperature, s.top_p, s.max_tokens, list(s.stop), s.seed, s.logprobs, s.temperature_given],
        "f": [fmt.type, fmt.json_schema, fmt.name],
        "t": left,
        "id": request.request_id,
    }


def decode_request(data: dict[str, Any], now: float) -> ChatRequest:
    temperature, top_p, max_tokens, stop, seed, logprobs, temperature_given = data["s"]
    ftype, schema, fname = data["f"]
    left = data["t"]
    return ChatRequest(
        model="",
        messages=[Message(role, content) for role, content in data["m"]],
        sampling=SamplingParams(
            temperature, top_p, max_tokens, tuple(stop), seed, logprobs, temperature_given=temperature_given
        ),
        response_format=ResponseFormat(ftype, schema, fname),
        request_id=data["id"],
        deadline=None if left is None else now + left,
    )


def chunk_frame(rid: int, chunk: Chunk) -> list[Any]:
    usage = chunk.usage
    if usage is None:
        return ["c", rid, chunk.text, chunk.logprob, chunk.finish_reason, None, None]
    return ["c", rid, chunk.text, chunk.logprob, chunk.finish_reason, usage.prompt_tokens, usage.completion_tokens]


def decode_chunk(frame: list[Any]) -> Chunk:
    _, _, text, logprob, finish, prompt, completion = frame
    usage = None if prompt is None else Usage(prompt, completion)
    return Chunk(text=text, logprob=logprob, finish_reason=finish, usage=usage)


def error_frame(rid: int, exc: BaseException) -> list[Any]:
    if isinstance(exc, errors.RouterError) and type(exc).__name__ in _ERRORS:
        return ["err", rid, type(exc).__name__, exc.message, exc.param, exc.code, exc.retry_after]
    return ["err", rid, "EngineError", f"generation failed: {type(exc).__name__}", None, None, None]


def decode_error(frame: list[Any]) -> errors.RouterError:
    _, _, kind, message, param, code, retry_after = frame
    cls = _ERRORS.get(kind, errors.EngineError)
    return cls(message, param=param, code=code, retry_after=retry_after)
