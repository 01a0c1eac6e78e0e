"""/v1/embeddings with the real openai SDK against the real embedding model."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest

from tests.support.cache import wait_ready

pytestmark = pytest.mark.model

NAME = "all-minilm-l6-v2"


@pytest.fixture(scope="module")
def client(router_server):
    wait_ready(router_server.base_url)
    with openai.OpenAI(base_url=router_server.base_url + "/v1", api_key="x", max_retries=0, timeout=60) as c:
        yield c


def test_single_and_list_inputs(client) -> None:
    one = client.embeddings.create(model=NAME, input="The cat sat on the mat.")
    assert one.model == NAME and one.object == "list" and len(one.data) == 1
    assert len(one.data[0].embedding) == 384 and one.usage.prompt_tokens == one.usage.total_tokens > 0
    texts = ["The cat sat on the mat.", "A dog barked.", "Quarterly revenue grew."]
    many = client.embeddings.create(model=NAME, input=texts)
    assert [d.index for d in many.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in many.data])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert np.allclose(vectors[0], one.data[0].embedding, atol=1e-5)


def test_batched_results_equal_single_results(client) -> None:
    texts = [f"Sentence number {i} about {'cats ' * (i % 5)}and dogs." for i in range(16)]
    batched = np.array([d.embedding for d in client.embeddings.create(model=NAME, input=texts).data])
    with ThreadPoolExecutor(16) as pool:  # concurrent single calls: coalesced by the micro-batcher
        singles = list(pool.map(lambda t: client.embeddings.create(model=NAME, input=t).data[0].embedding, texts))
    assert np.allclose(batched, np.array(singles), atol=1e-5)


def test_float_and_base64_encodings_agree(client) -> None:
    floats = client.embeddings.create(model=NAME, input="hello", encoding_format="float").data[0].embedding
    raw = client.embeddings.with_raw_response.create(model=NAME, input="hello", encoding_format="base64")
    encoded = raw.http_response.json()["data"][0]["embedding"]
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert np.allclose(decoded, floats, atol=1e-6)
    # the SDK asks for base64 by default and decodes it itself
    assert np.allclose(client.embeddings.create(model=NAME, input="hello").data[0].embedding, floats, atol=1e-6)


def test_dimensions_equal_to_the_model_are_accepted(client) -> None:
    assert len(client.embeddings.create(model=NAME, input="x", dimensions=384).data[0].embedding) == 384


@pytest.mark.parametrize(
    ("kw", "param"),
    [
        ({"input": "x", "dimensions": 128}, "dimensions"),
        ({"input": [1, 2, 3]}, "input"),
        ({"input": [[1, 2], [3]]}, "input"),
        ({"input": []}, "input"),
        ({"input": ""}, "input"),
        ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ],
)
def test_bad_requests_are_clear_400s(client, kw, param) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=NAME, **kw)
    assert caught.value.body["param"] == param


def test_unknown_model_is_a_404(client) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert NAME in caught.value.body["message"]


def test_long_input_is_truncated_and_counted(client) -> None:
    raw = client.embeddings.with_raw_response.create(model=NAME, input=["word " * 600, "short"])
    assert raw.headers["x-router-truncated-inputs"] == "1"
    assert raw.parse().usage.prompt_tokens <= 256 + 8


def test_the_model_is_listed(client) -> None:
    assert NAME in {m.id for m in client.models.list()}
