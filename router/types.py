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
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as both APIs carry it on the wire in the end


@dataclass(slots=True)
class ToolSpec:
    name: str
    description: str | None
    parameters: dict[str, Any]  # JSON schema of the arguments


@dataclass(slots=True)
class Message:
    role: Role
    content: str
    name: str | None = None
    tool_calls: list[ToolCall] | None = None  # assistant turns that called tools
    tool_call_id: str | None = None  # tool turns: which call this is the result of
    is_error: bool = False  # tool turns: the tool failed (Anthropic's tool_result.is_error; OpenAI has no such field)


@dataclass(slots=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int | None = None  # None: the engine's default, bounded by the context window
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    # False when the client gave no temperature (1.0, the APIs' default, stands in): constrained decoding then
    # uses the engine's own JSON temperature, as a small model sampled at 1.0 wanders inside JSON strings.
    temperature_given: bool = True


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
    workflow: str | None = None  # metadata.workflow / x-router-workflow: a budget and reporting tag
    allowed_tiers: tuple[str, ...] = ("local", "frontier", "advisor")  # the tenant's, set at admission
    budget_exhausted: str = "local"  # the tenant's on_budget_exhausted: local | reject
    has_tools: bool = False
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str | dict[str, Any] | None = None  # OpenAI form: "auto" | "none" | "required" | {function: …}
    parallel_tool_calls: bool | None = None  # False: one tool call at most (None: the upstream's default)
    # Event-loop time (`loop.time()`) by which the whole request must be done (None: no deadline).
    deadline: float | None = None
    # Response cache: may an answer be served from it (Cache-Control: no-cache clears this), may this answer be
    # stored in it (no-store clears this).
    cache_lookup: bool = True
    cache_store: bool = True
    # Computed once per request, on first use (admission, budgets, accounting, the advisor all read them).
    # init=False: `dataclasses.replace` (compression, sampling changes) starts a fresh copy without them.
    _prompt_text: str | None = field(default=None, init=False, repr=False, compare=False)
    _prompt_tokens: int | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def prompt_text(self) -> str:
        """Every message's text, one per line: the one join of the prompt per request."""
        if self._prompt_text is None:
            self._prompt_text = "\n".join(m.content for m in self.messages)
        return self._prompt_text

    @property
    def prompt_tokens(self) -> int:
        """The fast estimate of `prompt_text`'s tokens (router.fastpath.estimate_tokens), computed once."""
        if self._prompt_tokens is None:
            from router.fastpath import estimate_tokens

            self._prompt_tokens = estimate_tokens(self.prompt_text)
        return self._prompt_tokens


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of each call has id and name."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class Chunk:
    """One streamed piece of an answer: a text delta, and on the last chunk the finish reason and usage."""

    text: str = ""
    logprob: float | None = None
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    tool_call: ToolCallDelta | None = None
    # The prompt's size as the upstream counted it, when known before the answer ends (Anthropic's message_start):
    # lets an Anthropic stream report the true input_tokens in its own message_start.
    prompt_tokens: int | None = None


@dataclass(slots=True)
class Completion:
    """A whole answer, gathered from chunks (non-streaming responses, cache entries)."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    logprobs: list[float] | None = None
    tool_calls: list[ToolCall] | None = None
    logprob_texts: list[str] | None = None  # the text of each token in `logprobs`

    @classmethod
    async def gather(cls, chunks: Any) -> Completion:
        parts: list[str] = []
        logprobs: list[float] = []
        texts: list[str] = []
        calls: dict[int, ToolCall] = {}
        finish: FinishReason = "stop"
        usage = Usage()
        async for chunk in chunks:
            if chunk.text:
                parts.append(chunk.text)
            if chunk.logprob is not None:
                logprobs.append(chunk.logprob)
                texts.append(chunk.text)
            if chunk.tool_call is not None:
                d = chunk.tool_call
                call = calls.setdefault(d.index, ToolCall(d.id or "", d.name or "", ""))
                call.id = d.id or call.id
                call.name = d.name or call.name
                call.arguments += d.arguments
            if chunk.finish_reason is not None:
                finish = chunk.finish_reason
            if chunk.usage is not None:
                usage = chunk.usage
        tool_calls = [calls[i] for i in sorted(calls)] or None
        return cls("".join(parts), finish, usage, logprobs or None, tool_calls, texts or None)

    def chunks(self) -> list[Chunk]:
        """The completion as a stream again (cache hits, buffered local answers, advisor results)."""
        texts, logprobs = self.logprob_texts, self.logprobs
        if texts and logprobs and "".join(texts) == self.text:
            out = [Chunk(text=t, logprob=lp) for t, lp in zip(texts, logprobs, strict=True)]  # token by token
        else:
            out = [Chunk(text=self.text)] if self.text else []
        for i, call in enumerate(self.tool_calls or ()):
            out.append(Chunk(tool_call=ToolCallDelta(i, call.id, call.name, call.arguments)))
        out.append(Chunk(finish_reason=self.finish_reason, usage=self.usage))
        return out
