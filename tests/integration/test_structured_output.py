"""Structured output from the local model through real clients: LangChain's `with_structured_output` (json_schema
method) and the openai SDK's `chat.completions.parse`, on the real SmolLM2 behind the real server.

Both send a strict JSON schema, no max_tokens and no temperature, and raise on finish_reason "length" (the
openai SDK's LengthFinishReasonError) or on JSON that does not parse: the engine's grammar must close the JSON
within the default budget (tests/engines/test_json_grammar.py has the grammar itself).
"""

from __future__ import annotations

import openai
import pytest
from pydantic import BaseModel, Field

from tests.conftest import MODEL

pytestmark = pytest.mark.model

langchain_openai = pytest.importorskip("langchain_openai")


class Person(BaseModel):
    """A person mentioned in the text."""

    name: str = Field(description="The person's full name")
    age: int = Field(description="Age in years")
    city: str | None = Field(None, description="Where they live, if the text says")


class Tags(BaseModel):
    """A title and tags for a blog post."""

    title: str
    tags: list[str] = Field(description="Short topic tags")


def chat(base_url: str, model: str = MODEL):
    return langchain_openai.ChatOpenAI(model=model, base_url=base_url + "/v1", api_key="x", max_retries=0, timeout=60)


@pytest.mark.parametrize(
    "text",
    ["Bob Jones, aged 45, lives in Tokyo.", "Carla Diaz is 28 and lives in Lima.", "Dan Brown (60) is from Boston."],
)
def test_langchain_with_structured_output_returns_the_model(base_url: str, text: str) -> None:
    structured = chat(base_url).with_structured_output(Person, method="json_schema", include_raw=True)
    out = structured.invoke(text)
    assert out["parsing_error"] is None
    assert isinstance(out["parsed"], Person)
    assert out["raw"].response_metadata["finish_reason"] == "stop"


def test_langchain_structured_output_with_lists_and_auto_routing(base_url: str) -> None:
    # `auto`: the router picks the tier (local here, no frontier configured); lists are where a looping small
    # model used to run to max_tokens.
    structured = chat(base_url, "auto").with_structured_output(Tags, method="json_schema", include_raw=True)
    out = structured.invoke("Write a title and tags for a blog post about baking sourdough bread.")
    assert out["parsing_error"] is None and isinstance(out["parsed"], Tags)
    assert out["raw"].response_metadata["finish_reason"] == "stop"


def test_langchain_structured_output_streams(base_url: str) -> None:
    structured = chat(base_url).with_structured_output(Person, method="json_schema")
    parts = list(structured.stream("Erin Wu is 33 and lives in Oslo."))
    assert parts and isinstance(parts[-1], Person)


def test_langchain_structured_output_from_a_json_schema_dict(base_url: str) -> None:
    schema = {
        "title": "Place",
        "description": "A city and its country.",
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    out = chat(base_url).with_structured_output(schema, method="json_schema").invoke("Paris is in France.")
    assert isinstance(out, dict) and set(out) == {"city", "country"}
    assert all(isinstance(v, str) for v in out.values())


def test_openai_sdk_parse_returns_the_model(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.parse(
        model=MODEL,
        messages=[{"role": "user", "content": "Fay Lee is 52 and lives in Seoul."}],
        response_format=Person,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert isinstance(choice.message.parsed, Person)


def test_anthropic_sdk_parse_returns_the_model(base_url: str) -> None:
    """The Anthropic API's structured outputs (`output_config.format`, what `messages.parse` sends) on the local
    model take the same grammar path."""
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0, timeout=60)
    message = client.messages.parse(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Gus Hale is 41 and lives in Perth."}],
        output_format=Person,
    )
    assert message.stop_reason == "end_turn"
    assert isinstance(message.parsed_output, Person)


def test_anthropic_output_config_errors_are_anthropic_400s(base_url: str) -> None:
    import anthropic

    client = anthropic.Anthropic(base_url=base_url, api_key="x", max_retries=0, timeout=60)
    for config in ({"format": {"type": "xml"}}, {"format": {"type": "json_schema", "schema": "nope"}}, "x"):
        with pytest.raises(anthropic.BadRequestError) as err:
            client.messages.create(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}], output_config=config
            )
        assert err.value.body["error"]["type"] == "invalid_request_error"
