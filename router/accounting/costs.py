"""Prices: what a request cost on the frontier, what its local engine time cost, and what all-frontier would have."""

from __future__ import annotations

from router.config import Settings
from router.types import ChatRequest


class Pricing:
    def __init__(self, settings: Settings) -> None:
        self._frontier = {m.name: (m.input_price_per_mtok, m.output_price_per_mtok) for m in settings.frontier.models}
        self._max_tokens = {m.name: m.default_max_tokens for m in settings.frontier.models}
        acc = settings.accounting
        if acc.reference_model is not None:
            self._reference = self._frontier[acc.reference_model]
        else:
            self._reference = (acc.reference_input_per_mtok, acc.reference_output_per_mtok)
        # What "saved" is measured against, said wherever savings are shown.
        self.counterfactual = {
            "model": acc.reference_model or "reference prices (accounting.reference_*_per_mtok)",
            "input_usd_per_mtok": self._reference[0],
            "output_usd_per_mtok": self._reference[1],
            "basis": "the tokens each answered request really used, priced on this model",
        }
        self._local_per_s = acc.local_usd_per_hour / 3600.0
        self._slots = {m.name: m.n_parallel for m in settings.models}
        self.reserve_factor = acc.reserve_input_factor

    def frontier_usd(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self._frontier.get(model, (0.0, 0.0))
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6

    def counterfactual_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        price_in, price_out = self._reference
        return (prompt_tokens * price_in + completion_tokens * price_out) / 1e6

    def local_usd(self, model: str, seconds: float) -> float:
        # A batched engine serves n_parallel requests at once: one request holds one slot of its time.
        return seconds * self._local_per_s / max(1, self._slots.get(model, 1))

    def worst_case(self, request: ChatRequest, model: str) -> tuple[float, int]:
        """(USD, tokens) a frontier request can cost at most, for budget reservations."""
        prompt = int(request.prompt_tokens * self.reserve_factor) + 16
        completion = request.sampling.max_tokens or self._max_tokens.get(model, 4096)
        return self.frontier_usd(model, prompt, completion), prompt + completion
