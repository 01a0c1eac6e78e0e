"""Compression pieces without a server: lossless chunking, the question split, config checks, and the whole
compressor on the real SmolLM2 tokenizer with the word-overlap ranking (no embedding model)."""

from __future__ import annotations

import asyncio

import pytest

from router.config import ConfigError, ModelSettings, Settings, load_settings
from router.frontier.compress_split import chunk, pieces
from router.frontier.compress_tokens import EstimateCounter, counter_for
from router.frontier.compression import Compressor, split_question
from router.types import ChatRequest, Message

COUNTER = counter_for(ModelSettings(name="smollm2"))
TEXT = (
    "# Title\n\nIntro. Second sentence!\n\n```python\nx = 1\n\n\ny = 2\n```\nProse after code. " * 3
    + "word " * 700
    + "\n\n## Tail heading\nLast paragraph."
)


def test_chunks_join_back_to_the_text_and_fit() -> None:
    assert "".join(p for p, _ in pieces(TEXT)) == TEXT
    chunks = chunk(TEXT, 50, COUNTER.count)
    assert "".join(c.text for c in chunks) == TEXT
    assert all(c.tokens <= 50 for c in chunks if not c.pinned)
    pinned = [c.text for c in chunks if c.pinned]
    assert pinned.count("```python\nx = 1\n\n\ny = 2\n```\n") == 3  # the code block whole, blank lines and all
    assert "# Title\n" in pinned and "## Tail heading\n" in pinned


def test_the_question_is_the_last_paragraph_or_sentence() -> None:
    assert split_question("Doc one.\n\nDoc two.\n\nWhat is it?") == ("Doc one.\n\nDoc two.\n\n", "What is it?")
    assert split_question("A long line. Then the question?") == ("A long line. ", "Then the question?")
    assert split_question("just a question") == ("", "just a question")


def test_the_real_tokenizer_counts() -> None:
    assert COUNTER.name == "smollm2"
    assert COUNTER.count(["", "hello world"]) == [0, 2]
    assert counter_for(ModelSettings(name="x", engine="openai_http", base_url="http://h/v1")).name == "estimate"
    assert EstimateCounter().count(["hello world"])[0] > 0


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("{budget_tokens: 0}", "budget_tokens"),
        ("{chunk_tokens: 500, min_tokens: 400}", "chunk_tokens (500) must not exceed min_tokens (400)"),
        ("{min_tokens: 9000}", "min_tokens (9000) must not exceed budget_tokens (8000)"),
        ("{keep_first: 40}", "leaves no room"),
        ("{strategy: abstractive}", "strategy"),
        ("{max_prompt_tokens: 100}", "unknown key"),
        ("{enabled: yes please}", "enabled"),
    ],
)
def test_bad_compression_configs_are_rejected(tmp_path, section: str, message: str) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(f"frontier:\n  compression: {section}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, environ={})
    assert "frontier.compression" in str(err.value) and message in str(err.value)


def _compressor(**kw: object) -> Compressor:
    s = Settings.model_validate(
        {"frontier": {"compression": {"budget_tokens": 300, "min_tokens": 200, "chunk_tokens": 40, **kw}}}
    )
    return Compressor.build(s, s.local_model, None)


def test_word_overlap_ranking_keeps_the_answer_within_budget() -> None:
    filler = [
        f"Note {i}: the canteen serves soup number {i} on weekdays, and the queue is long.\n\n" for i in range(40)
    ]
    answer = "The vault code is 4471 and only Marta knows the vault code.\n\n"
    doc = "".join(filler[:25]) + answer + "".join(filler[25:])
    request = ChatRequest(model="m", messages=[Message("user", doc + "What is the vault code?")])
    compressor = _compressor()
    out, report = asyncio.run(compressor.compress(request))
    assert report is not None and report.scorer == "lexical" and report.tokenizer == "smollm2-135m-instruct"
    text = out.messages[0].content
    assert answer in text and filler[0] in text and text.endswith("\n\nWhat is the vault code?")
    assert report.tokens_before > 600 and report.tokens_after <= 300
    assert report.tokens_after == compressor.prompt_tokens(out.messages)
    assert request.messages[0].content == doc + "What is the vault code?"  # the caller's request is not changed


def test_under_budget_and_disabled_leave_the_request_alone() -> None:
    request = ChatRequest(model="m", messages=[Message("user", "word " * 2000 + "\n\nWhy?")])
    assert asyncio.run(_compressor(enabled=False).compress(request)) == (request, None)
    short = ChatRequest(model="m", messages=[Message("user", "Why?")])
    assert asyncio.run(_compressor().compress(short)) == (short, None)


def test_an_unreadable_vocabulary_falls_back_to_the_estimate(tmp_path) -> None:
    s = Settings.model_validate(
        {
            "models": [{"name": "m", "path": str(tmp_path / "missing.gguf")}],
            "frontier": {"compression": {"budget_tokens": 300, "min_tokens": 200, "chunk_tokens": 40}},
        }
    )
    compressor = Compressor.build(s, "m", None)
    doc = "".join(f"Paragraph {i} is about topic number {i} and nothing else at all.\n\n" for i in range(60))
    out, report = asyncio.run(compressor.compress(ChatRequest(model="m", messages=[Message("user", doc + "Why?")])))
    assert "tokens omitted" in out.messages[0].content
    assert report is not None and report.tokenizer == "estimate" and report.tokens_after < report.tokens_before


@pytest.mark.model
def test_chunk_vectors_are_reused_per_tenant_only() -> None:
    from router.cache import EmbeddingService
    from router.config import EmbeddingSettings

    async def run() -> list[int]:
        service = EmbeddingService(EmbeddingSettings())
        await service.start()
        compressor = _compressor()
        compressor.embed_with(service)
        doc = "".join(f"Paragraph {i} is about topic number {i} and nothing else.\n\n" for i in range(60))
        seen = []
        for tenant, question in (("a", "Why?"), ("a", "How?"), ("b", "Why?")):
            request = ChatRequest(model="m", messages=[Message("user", doc + question)], tenant=tenant)
            _, report = await compressor.compress(request)
            assert report is not None and report.scorer == "minilm"
            seen.append(compressor.embedded_chunks)
        await service.aclose()
        return seen

    first, second, third = asyncio.run(run())
    assert first > 10 and second == first  # tenant a's second question: its chunks were embedded already
    assert third == 2 * first  # tenant b gets no vectors of tenant a's
