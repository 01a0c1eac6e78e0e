"""Sampling side of the batched llama.cpp engine: each request's sampler chain, the JSON grammar (checked only
on the token the model chose unless it is rejected, or near the end of the budget), token pieces and logprobs.

A part of `BatchedLlamaCppEngine` (router/engines/llamacpp_batched.py); these run on the worker thread, except
building a request's samplers, which happens when its job is prepared.
"""

from __future__ import annotations

import ctypes
import math
import random
from typing import Any

import numpy as np

from router.config import ModelSettings
from router.engines.json_grammar import ClosingMasks, GrammarState, closing_masks, closing_reserve, schema_grammar
from router.engines.llamacpp_jobs import UNSEEN, BatchedStats, Job
from router.errors import InvalidRequest
from router.types import ChatRequest


class SamplingMixin:
    """Needs the engine's `settings`, `stats`, `_L`, `_vocab`, `_ctx`, `_n_vocab`, `_pieces` and the scratch
    candidate arrays `_one`, `_one_arr`, `_cand`, `_cand_arr`, `_cand_ids`."""

    settings: ModelSettings
    stats: BatchedStats
    _L: Any
    _vocab: Any
    _ctx: Any
    _n_vocab: int
    _pieces: dict[int, bytes | None]
    _one: Any
    _one_arr: Any
    _cand: Any
    _cand_arr: Any
    _cand_ids: Any

    def _grammar(self, request: ChatRequest) -> Any:
        import llama_cpp as L

        grammar = _grammar_text(request, self.settings)
        if grammar is None:
            return None
        g = L.llama_sampler_init_grammar(self._vocab, grammar.encode(), b"root")
        if not g:
            raise InvalidRequest(
                "response_format.json_schema cannot be turned into a grammar", param="response_format.json_schema"
            )
        return GrammarState(g)

    def _sampler(self, request: ChatRequest) -> Any:
        """The request's own sampler chain: top-k → top-p → min-p → temperature → seeded draw (or greedy).

        A grammar, when asked for, is a separate sampler (see `_constrain`)."""
        import llama_cpp as L

        sampling = request.sampling
        temperature = sampling.temperature
        if request.response_format.type != "text" and not sampling.temperature_given:
            temperature = self.settings.json_temperature
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        add = L.llama_sampler_chain_add
        if temperature <= 0:
            add(chain, L.llama_sampler_init_greedy())
            return chain
        s = self.settings
        if s.top_k > 0:
            add(chain, L.llama_sampler_init_top_k(s.top_k))
        add(chain, L.llama_sampler_init_top_p(sampling.top_p, 1))
        add(chain, L.llama_sampler_init_min_p(s.min_p, 1))
        add(chain, L.llama_sampler_init_temp(temperature))
        seed = sampling.seed if sampling.seed is not None else random.getrandbits(31)
        add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    @staticmethod
    def _free_sampler(job: Job) -> None:
        import llama_cpp as L

        if job.sampler is not None:
            L.llama_sampler_free(job.sampler)
            job.sampler = None
        if job.grammar is not None:
            L.llama_sampler_free(job.grammar)
            job.grammar = None

    def _constrain(self, job: Job, index: int, tok: int) -> int:
        """Grammar-constrained sampling without paying for the grammar on every token: check only the token the
        model chose; if the grammar rejects it, rank the whole vocabulary through the grammar, then the chain
        (llama.cpp's own common sampler does the same). The full pass costs ~20 ms on a 49k vocabulary.

        In the last few tokens of the budget every token takes the full pass, with the tokens that close the
        JSON preferred (see router/engines/json_grammar.py), so the answer ends complete within max_tokens."""
        L = self._L
        state: GrammarState = job.grammar
        closing = job.max_tokens - job.sampled <= closing_reserve(job.max_tokens, state.depth)
        if not closing:
            one, arr = self._one, self._one_arr
            one[0].id, one[0].logit, one[0].p = tok, 0.0, 0.0
            arr.size, arr.selected, arr.sorted = 1, -1, False
            L.llama_sampler_apply(state, ctypes.byref(arr))
            if one[0].logit != -math.inf:
                L.llama_sampler_accept(state, tok)
                state.track(self._piece_of(tok))
                return tok
            self.stats.grammar_resamples += 1
        cand, full = self._cand, self._cand_arr
        row = np.ctypeslib.as_array(L.llama_get_logits_ith(self._ctx, index), shape=(self._n_vocab,))
        cand["id"] = self._cand_ids
        cand["logit"] = row
        cand["p"] = 0.0
        full.data = cand.ctypes.data_as(L.llama_token_data_p)
        full.size, full.selected, full.sorted = self._n_vocab, -1, False
        L.llama_sampler_apply(state, ctypes.byref(full))
        if closing:
            logits = cand["logit"]
            preferred = state.preferred(self._closing_masks(), logits != -math.inf)
            if preferred.any():
                logits[~preferred] = -math.inf
        L.llama_sampler_apply(job.sampler, ctypes.byref(full))
        tok = int(full.data[full.selected].id)
        L.llama_sampler_accept(state, tok)
        state.track(self._piece_of(tok))
        return tok

    def _piece_of(self, tok: int) -> bytes | None:
        piece = self._pieces.get(tok, UNSEEN)
        if piece is UNSEEN:
            piece = self._pieces[tok] = self._piece(tok)
        return piece  # type: ignore[return-value]

    def _closing_masks(self) -> ClosingMasks:
        key = ctypes.cast(self._vocab, ctypes.c_void_p).value or 0
        return closing_masks(key, lambda: [self._piece(t) for t in range(self._n_vocab)])

    def _piece(self, tok: int) -> bytes | None:
        L = self._L
        if L.llama_vocab_is_eog(self._vocab, tok):
            return None
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self._vocab, tok, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = L.llama_token_to_piece(self._vocab, tok, buf, -n, 0, False)
        return buf.raw[:n]

    def _logprob(self, index: int, tok: int) -> float:
        # Log-probability under the model's own distribution (before temperature and truncation).
        row = np.ctypeslib.as_array(self._L.llama_get_logits_ith(self._ctx, index), shape=(self._n_vocab,))
        top = float(row.max())
        return float(row[tok]) - top - math.log(float(np.exp(row - top).sum()))


def _grammar_text(request: ChatRequest, settings: ModelSettings) -> str | None:
    fmt = request.response_format
    if fmt.type == "text":
        return None
    schema = fmt.json_schema if fmt.type == "json_schema" else None
    try:
        return schema_grammar(schema, settings.json_max_string_chars, settings.json_max_items)
    except Exception as exc:  # the converter raises assorted errors on schemas it cannot express
        raise InvalidRequest(
            f"response_format.json_schema cannot be turned into a grammar: {exc}",
            param="response_format.json_schema",
        ) from None
