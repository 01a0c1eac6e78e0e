"""Answer writers: one per wire format, the same four calls for both, so the handler streams either alike."""

from __future__ import annotations

from typing import Protocol

from router.errors import RouterError
from router.http import anthropic as anthropic_wire
from router.http import openai as openai_wire
from router.http.errors import anthropic_type
from router.types import ChatRequest, Chunk, Completion


class Writer(Protocol):
    def body(self, result: Completion) -> bytes: ...  # a whole non-streaming answer

    def start(self) -> bytes: ...  # the stream's opening bytes

    def chunk(self, chunk: Chunk) -> bytes: ...

    def error(self, exc: RouterError) -> bytes: ...  # an in-band error that ends the stream


class OpenAIWriter:
    def __init__(self, request_id: str, model: str, include_usage: bool, logprobs: bool = False) -> None:
        self._id = "chatcmpl-" + request_id
        self._model = model
        self._logprobs = logprobs
        self._encoder = openai_wire.ChunkEncoder(self._id, model, include_usage)

    def body(self, result: Completion) -> bytes:
        return openai_wire.completion_body(self._id, self._model, result, self._logprobs)

    def start(self) -> bytes:
        return self._encoder.first()

    def chunk(self, chunk: Chunk) -> bytes:
        out = b""
        if chunk.text:
            out = self._encoder.delta(chunk.text, chunk.logprob if self._logprobs else None)
        if chunk.tool_call is not None:
            d = chunk.tool_call
            out += self._encoder.tool(d.index, d.id, d.name, d.arguments)
        if chunk.finish_reason is not None:
            out += self._encoder.finish(chunk.finish_reason, chunk.usage)
        return out

    def error(self, exc: RouterError) -> bytes:
        return self._encoder.error(exc.message, exc.type, exc.code)


class AnthropicWriter:
    def __init__(self, request_id: str, model: str, input_tokens: int = 0) -> None:
        self._id = "msg_" + request_id
        self._model = model
        self._encoder = anthropic_wire.EventEncoder(self._id, model, input_tokens)

    def body(self, result: Completion) -> bytes:
        return anthropic_wire.message_body(self._id, self._model, result)

    def start(self) -> bytes:
        return self._encoder.start()

    def chunk(self, chunk: Chunk) -> bytes:
        out = self._encoder.text(chunk.text) if chunk.text else b""
        if chunk.tool_call is not None:
            d = chunk.tool_call
            out += self._encoder.tool(d.index, d.id, d.name, d.arguments)
        if chunk.finish_reason is not None:
            out += self._encoder.finish(chunk.finish_reason, chunk.usage)
        return out

    def error(self, exc: RouterError) -> bytes:
        return self._encoder.error(anthropic_type(exc), exc.message)


def writer_for(request: ChatRequest, model: str, input_tokens: int = 0) -> Writer:
    """`input_tokens`: the prompt's count for an Anthropic stream's message_start (its true value comes up front)."""
    if request.api == "anthropic":
        return AnthropicWriter(request.request_id, model, input_tokens)
    return OpenAIWriter(request.request_id, model, request.include_usage, request.sampling.logprobs)
