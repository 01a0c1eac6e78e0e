"""Wire-neutral request and response types.

The HTTP layer turns OpenAI or Anthropic JSON into these, the pipeline and engines only ever see these,
and the HTTP layer turns the results back into the caller's wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "cancelled", "error"]


@dataclass(slots=True)
class Message:
    role: Role
    content: str
    name: str | None = None


@dataclass(slots=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None  # None: the engine's default, bounded by the context window
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass(slots=True)
class ResponseFormat:
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None
    name: str | None = None


@dataclass(slots=True)
class ChatRequest:
    """One chat request, whatever API it came in through."""

    model: str
    messages: list[Message]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    stream: bool = False
    include_usage: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    request_id: str = ""
    api: Literal["openai", "anthropic"] = "openai"
    # Routing hints (metadata fields or x-router-* headers) and who is asking.
    task: str | None = None
    quality: str = "standard"
    tenant: str = "default"
    has_tools: bool = False
    # Event-loop time (`loop.time()`) by which the whole request must be done (None: no deadline).
    deadline: float | None = None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Chunk:
    """One streamed piece of an answer: a text delta, and on the last chunk the finish reason and usage."""

    text: str = ""
    logprob: float | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass(slots=True)
class Completion:
    """A whole answer, gathered from chunks (non-streaming responses, cache entries)."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    logprobs: list[float] | None = None

    @classmethod
    async def gather(cls, chunks: Any) -> Completion:
        parts: list[str] = []
        logprobs: list[float] = []
        finish: FinishReason = "stop"
        usage = Usage()
        async for chunk in chunks:
            if chunk.text:
                parts.append(chunk.text)
            if chunk.logprob is not None:
                logprobs.append(chunk.logprob)
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
        return cls("".join(parts), finish, usage, logprobs or None)
