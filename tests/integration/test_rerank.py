"""POST /v1/rerank over HTTP against the real embedding model; fallback to the fake upstream's reranker."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from router.config import Settings
from tests.support.cache import wait_ready
from tests.support.http import JsonClient
from tests.support.server import running

pytestmark = pytest.mark.model

QUERY = "What is the capital of France?"
DOCS = [
    "Bananas are rich in potassium and grow in tropical climates.",
    "Paris is the capital and largest city of France.",
    "The stock market fell sharply on Tuesday.",
    "France borders Spain, Italy, Germany and Belgium.",
]


@pytest.fixture(scope="module")
def http(router_server):
    wait_ready(router_server.base_url)
    with JsonClient(router_server.base_url) as client:
        yield client


def test_relevant_document_ranks_first(http) -> None:
    r = http.post("/v1/rerank", json={"model": "minilm-rerank", "query": QUERY, "documents": DOCS})
    assert r.status_code == 200, r.text
    assert r.headers["x-router-tier"] == "local"
    body = r.json()
    assert body["model"] == "minilm-rerank" and body["id"].startswith("rerank-")
    results = body["results"]
    assert [x["index"] for x in results][:2] == [1, 3]  # the answer, then the other France sentence
    scores = [x["relevance_score"] for x in results]
    assert scores == sorted(scores, reverse=True) and len(results) == 4
    assert results[0]["document"] == {"text": DOCS[1]}
    assert body["usage"]["total_tokens"] > 10


def test_long_documents_are_counted_as_truncated(http) -> None:
    long = "Paris is the capital of France. " + "Filler words about nothing in particular. " * 80
    r = http.post("/v1/rerank", json={"query": QUERY, "documents": [long, DOCS[0]]})
    assert r.status_code == 200 and r.headers["x-router-truncated-inputs"] == "1"
    assert r.json()["results"][0]["index"] == 0
    short = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
    assert "x-router-truncated-inputs" not in short.headers


def test_top_n_objects_and_no_documents(http) -> None:
    docs = [{"text": d} for d in DOCS]
    r = http.post("/v1/rerank", json={"query": QUERY, "documents": docs, "top_n": 2, "return_documents": False})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [1, 3]
    assert all("document" not in x for x in results)


def test_concurrent_requests_score_as_single_ones(http) -> None:
    queries = [QUERY, "Which fruit has potassium?", "How did stocks do?", "What countries border France?"] * 2
    single = [http.post("/v1/rerank", json={"query": q, "documents": DOCS}).json()["results"] for q in queries]
    with ThreadPoolExecutor(8) as pool:  # coalesced by the embedding micro-batcher
        together = list(pool.map(lambda q: http.post("/v1/rerank", json={"query": q, "documents": DOCS}), queries))
    for one, many in zip(single, together, strict=True):
        assert [x["index"] for x in one] == [x["index"] for x in many.json()["results"]]
        for a, b in zip(one, many.json()["results"], strict=True):
            assert a["relevance_score"] == pytest.approx(b["relevance_score"], abs=1e-5)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"documents": DOCS}, 400, "query"),
        ({"query": "  ", "documents": DOCS}, 400, "query"),
        ({"query": 3, "documents": DOCS}, 400, "query"),
        ({"query": QUERY}, 400, "documents"),
        ({"query": QUERY, "documents": []}, 400, "documents"),
        ({"query": QUERY, "documents": "Paris"}, 400, "documents"),
        ({"query": QUERY, "documents": ["ok", 7]}, 400, "documents"),
        ({"query": QUERY, "documents": [{"content": "x"}]}, 400, "documents"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, 400, "top_n"),
        ({"query": QUERY, "documents": DOCS, "top_n": "2"}, 400, "top_n"),
        ({"query": QUERY, "documents": DOCS, "return_documents": "yes"}, 400, "return_documents"),
        ({"model": "bge-reranker-v2", "query": QUERY, "documents": DOCS}, 404, "model"),
    ],
)
def test_bad_input_is_an_openai_error_naming_the_field(http, body, status, param) -> None:
    r = http.post("/v1/rerank", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"]


def test_not_json_is_a_400(http) -> None:
    r = http.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


def _fallback_settings(fake, **rerank) -> Settings:
    return Settings(
        rerank={"fallback_url": fake.url + "/v1/rerank", "fallback_model": "remote-rerank", **rerank},
        cache={"enabled": False},
    )


def test_fallback_model_goes_to_the_remote_reranker(fake) -> None:
    with running(_fallback_settings(fake)) as server, JsonClient(server.base_url) as http:
        wait_ready(server.base_url)
        fake.reset()
        r = http.post("/v1/rerank", json={"model": "remote-rerank", "query": "capital France", "documents": DOCS})
        assert r.status_code == 200, r.text
        assert r.headers["x-router-tier"] == "frontier"
        assert r.json()["results"][0]["index"] == 1
        assert fake.requests[-1].path == "/v1/rerank" and fake.requests[-1].model == "remote-rerank"
        # the local name is still answered locally
        local = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        assert local.headers["x-router-tier"] == "local" and len(fake.requests) == 1


def test_a_local_model_that_cannot_load_falls_back(fake, tmp_path: Path) -> None:
    settings = _fallback_settings(fake, engine="cross-encoder", path=str(tmp_path / "missing.onnx"))
    with running(settings) as server, JsonClient(server.base_url) as http:
        fake.reset()
        r = http.post("/v1/rerank", json={"query": "capital France", "documents": DOCS, "top_n": 1})
        assert r.status_code == 200, r.text
        assert r.headers["x-router-tier"] == "frontier" and r.headers["x-router-fallback"] == "engine_error"
        assert [x["index"] for x in r.json()["results"]] == [1]
        assert fake.requests[-1].body["top_n"] == 1


def test_without_a_fallback_a_model_that_cannot_load_is_a_clear_500(tmp_path: Path) -> None:
    settings = Settings(rerank={"engine": "cross-encoder", "path": str(tmp_path / "missing.onnx")})
    with running(settings) as server, JsonClient(server.base_url) as http:
        r = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        assert r.status_code == 500
        assert "missing.onnx" in r.json()["error"]["message"]


def test_without_embeddings_the_default_rerank_is_off_and_the_server_is_ready() -> None:
    # The default rerank engine is the embedding model: with embeddings off it is simply not served, and it
    # must not make /readyz fail (it did: a gateway run without the cache and embeddings never became ready).
    settings = Settings(embeddings={"enabled": False}, cache={"enabled": False})
    assert not settings.rerank_served
    with running(settings) as server, JsonClient(server.base_url) as http:
        wait_ready(server.base_url)
        readyz = http.get("/readyz")
        assert readyz.status_code == 200, readyz.text
        assert settings.rerank.name not in readyz.json().get("models", {})
        assert settings.rerank.name not in {m["id"] for m in http.get("/v1/models").json()["data"]}
        r = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        assert r.status_code == 404 and "embeddings.enabled: false" in r.json()["error"]["message"]


CROSS_ENCODER = os.environ.get("HYBRID_ROUTER_TEST_CROSS_ENCODER")


@pytest.mark.skipif(
    not CROSS_ENCODER,
    reason="no cross-encoder weights install from PyPI (searched the package lists: flashrank, swiftrank, "
    "small-hybrid-reranker, tinyintent ship none or no cross-encoder); set HYBRID_ROUTER_TEST_CROSS_ENCODER to an "
    "ONNX export such as ms-marco-MiniLM-L-6-v2 with its tokenizer.json beside it",
)
def test_cross_encoder_with_real_weights() -> None:
    settings = Settings(rerank={"engine": "cross-encoder", "path": CROSS_ENCODER}, cache={"enabled": False})
    with running(settings) as server, JsonClient(server.base_url) as http:
        r = http.post("/v1/rerank", json={"query": QUERY, "documents": DOCS})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert results[0]["index"] == 1 and 0 <= results[-1]["relevance_score"] <= results[0]["relevance_score"] <= 1
