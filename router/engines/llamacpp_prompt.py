"""Prompt side of the batched llama.cpp engine: chat template, tokenising, the shareable prefix, the job.

A part of `BatchedLlamaCppEngine` (router/engines/llamacpp_batched.py), kept apart because it runs on the event
loop (or a helper thread for long prompts) and never touches the decode loop's state.
"""

from __future__ import annotations

import asyncio
from typing import Any

from router.engines.llamacpp_jobs import UNSEEN, Job
from router.engines.llamacpp_sampling import SamplingMixin
from router.engines.textstream import TextStream
from router.errors import EngineError, InvalidRequest
from router.types import ChatRequest, Message

MIN_PREFIX_TOKENS = 16  # shorter prefixes are cheaper to recompute than to copy
PROBE = "\ue000"  # a private-use character: marks where the first user message starts in a rendered prompt


class PromptMixin(SamplingMixin):
    """Needs the engine's `settings`, `name`, `_template`, `_vocab`, `_ctx`, `_closed`, `_prefix_streams` and
    `_prefix_text`."""

    name: str
    _template: Any
    _vocab: Any
    _ctx: Any
    _closed: bool
    _prefix_streams: int
    _prefix_text: dict[Any, Any]

    def count_prompt_tokens(self, request: ChatRequest) -> int:
        return len(self._prompt_tokens(self._render(request.messages)))

    def _render(self, messages: list[Message]) -> str:
        if self._template is None:
            raise EngineError(f"model {self.name!r} is not loaded")
        try:
            return self._template.render(messages)
        except ValueError as exc:  # the template's own raise_exception: e.g. roles out of order
            raise InvalidRequest(
                f"messages rejected by the chat template of {self.name}: {exc}", param="messages"
            ) from None

    def _prompt_tokens(self, prompt: str) -> list[int]:
        import llama_cpp as L

        data = prompt.encode("utf-8")
        cap = len(data) + 8  # a token is at least one byte, plus BOS/EOS
        buf = (L.llama_token * cap)()
        n = L.llama_tokenize(self._vocab, data, len(data), buf, cap, True, True)
        if n < 0:
            raise EngineError(f"model {self.name!r}: tokenization failed")
        return buf[:n]

    def _prefix_len(self, messages: list[Message], prompt: str, tokens: list[int]) -> int:
        """Tokens of the prompt before the first user message's text: what requests with this system prompt share."""
        lead = 0
        while lead < len(messages) and messages[lead].role == "system":
            lead += 1
        system = tuple(m.content for m in messages[:lead])
        preamble = self._prefix_text.get(system, UNSEEN)
        if preamble is UNSEEN:
            assert self._template is not None
            try:
                probe = self._template.render([*messages[:lead], Message("user", PROBE)])
                preamble = probe[: probe.index(PROBE)]
            except ValueError:  # the template refused, or dropped the probe
                preamble = None
            if len(self._prefix_text) >= 256:
                self._prefix_text.clear()
            self._prefix_text[system] = preamble
        if not preamble or not prompt.startswith(preamble):
            return 0
        head = self._prompt_tokens(preamble)
        n = 0
        for a, b in zip(head, tokens, strict=False):  # the tokenizer may merge across the boundary: stop there
            if a != b:
                break
            n += 1
        n = min(n, len(tokens) - 1)  # at least one token must run to get logits
        return n if n >= MIN_PREFIX_TOKENS else 0

    def _prepare(self, request: ChatRequest, loop: asyncio.AbstractEventLoop) -> Job:
        if self._ctx is None or self._closed:
            raise EngineError(f"model {self.name!r} is not loaded")
        n_ctx = self.settings.n_ctx
        prompt = self._render(request.messages)
        tokens = self._prompt_tokens(prompt)
        requested = request.sampling.max_tokens
        if len(tokens) >= n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens, but the messages use {len(tokens)} tokens.",
                param="messages",
                code="context_length_exceeded",
            )
        if requested is not None and len(tokens) + requested > n_ctx:
            raise InvalidRequest(
                f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                f"{len(tokens) + requested} tokens ({len(tokens)} in the messages, {requested} in the completion). "
                "Please reduce the length of the messages or max_tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        max_tokens = requested if requested is not None else self.settings.default_max_tokens
        max_tokens = min(max_tokens, n_ctx - len(tokens))
        prefix = self._prefix_len(request.messages, prompt, tokens) if self._prefix_streams else 0
        grammar = self._grammar(request)
        sampler = self._sampler(request)
        text = TextStream(request.sampling.stop)
        return Job(tokens, max_tokens, prefix, sampler, grammar, text, request.sampling.logprobs, loop)
