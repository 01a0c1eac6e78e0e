"""Savings are booked only for answered requests, against what was really served (issue 17's accounting bug):
a refused 40,000-token body used to count as $0.60 "saved"."""

from __future__ import annotations

import re
import urllib.request

import openai
import pytest

from tests.conftest import MODEL

pytestmark = pytest.mark.model


def _saved(base_url: str) -> float:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(v) for v in re.findall(r"^router_saved_usd_total\{[^}]*\} ([0-9.e+-]+)$", text, re.M))


def test_refused_requests_book_no_savings(base_url: str, openai_client: openai.OpenAI) -> None:
    before = _saved(base_url)
    huge = "word " * 40_000  # far past the local model's context window: refused with a 400
    for _ in range(3):
        with pytest.raises(openai.BadRequestError):
            openai_client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": huge}], max_tokens=4
            )
    assert _saved(base_url) == pytest.approx(before), "refused requests were booked as savings"
    answer = openai_client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4
    )
    assert answer.usage.completion_tokens > 0
    after = _saved(base_url)
    assert before < after < before + 0.01, "an answered request of a few tokens saves a few tokens' worth"
