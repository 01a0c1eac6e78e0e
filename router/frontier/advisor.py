"""Advisor mode: the local model drafts, a frontier model approves the draft or returns a corrected answer."""

from __future__ import annotations

from dataclasses import dataclass, replace

from router.config import AdvisorSettings
from router.fastpath import estimate_tokens
from router.types import ChatRequest, Completion, Message, SamplingParams

APPROVED = "APPROVED"


def review_request(request: ChatRequest, draft: Completion, settings: AdvisorSettings, model: str) -> ChatRequest:
    """The frontier sees the whole conversation, then the draft, and is asked for a verdict."""
    conversation = "\n\n".join(f"[{m.role}]\n{m.content}" for m in request.messages)
    prompt = f"Request:\n{conversation}\n\nDraft answer:\n{draft.text}"
    return replace(
        request,
        model=model,
        messages=[Message("system", settings.instructions), Message("user", prompt)],
        sampling=SamplingParams(temperature=0.0, max_tokens=request.sampling.max_tokens),
        stream=False,
        tools=[],
        has_tools=False,
    )


@dataclass(slots=True)
class Verdict:
    approved: bool
    answer: Completion
    frontier_tokens: int  # what the review actually cost, in and out
    from_scratch_tokens: int  # estimate: the prompt plus the final answer, had the frontier written it

    @property
    def saved_tokens(self) -> int:
        return self.from_scratch_tokens - self.frontier_tokens


def verdict(request: ChatRequest, draft: Completion, review: Completion) -> Verdict:
    approved = review.text.strip().rstrip(".").upper() == APPROVED
    answer = draft if approved else replace(review, usage=replace(review.usage))
    prompt_tokens = request.prompt_tokens
    from_scratch = prompt_tokens + estimate_tokens(answer.text)
    return Verdict(approved, answer, review.usage.total_tokens, from_scratch)
