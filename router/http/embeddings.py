"""OpenAI embeddings wire format: POST /v1/embeddings.

Accepted: `input` as a string or an array of strings (token arrays are refused with a 400: this server embeds
text with its own tokenizer), `encoding_format` float or base64 (little-endian float32, what the openai SDK asks
for by default), `dimensions` only when it equals the model's own (the model cannot shorten its vectors), `user`
(ignored). Inputs longer than the model's window are truncated, as sentence-transformers does; the response
header x-router-truncated-inputs counts them.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from router.cache.embed import Embedded
from router.errors import InvalidRequest, NotFound
from router.http.validate import opt_int, opt_str


@dataclass(slots=True)
class EmbeddingRequest:
    model: str
    inputs: list[str]
    encoding: Literal["float", "base64"] = "float"


def parse_embedding_request(body: dict[str, Any], model: str, dim: int, max_inputs: int) -> EmbeddingRequest:
    """Validate against the served model (`model`, `dim`); NotFound for another model name."""
    name = opt_str(body, "model", required=True) or ""
    if name != model:
        raise NotFound(
            f"The model {name!r} does not exist or is not an embedding model. Embedding models: {model}",
            param="model",
            code="model_not_found",
        )
    raw = body.get("input")
    if type(raw) is str:
        inputs = [raw]
    elif type(raw) is list and raw and all(type(x) is str for x in raw):
        inputs = raw
    elif type(raw) is list and raw and all(type(x) is int or type(x) is list for x in raw):
        raise InvalidRequest(
            "token-array input is not supported: send the text (a string or an array of strings)", param="input"
        )
    elif raw == []:
        raise InvalidRequest("input must not be empty", param="input")
    else:
        raise InvalidRequest("input must be a string or an array of strings", param="input")
    if len(inputs) > max_inputs:
        raise InvalidRequest(f"input may hold at most {max_inputs} items, got {len(inputs)}", param="input")
    for i, text in enumerate(inputs):
        if not text:
            raise InvalidRequest(f"input[{i}] is an empty string", param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest(f"encoding_format must be float or base64, got {encoding!r}", param="encoding_format")
    dimensions = opt_int(body, "dimensions", lo=1)
    if dimensions is not None and dimensions != dim:
        raise InvalidRequest(
            f"model {model!r} does not support `dimensions` {dimensions}: its embeddings always have {dim} "
            "dimensions (omit the parameter)",
            param="dimensions",
        )
    return EmbeddingRequest(name, inputs, encoding)


def embeddings_body(request: EmbeddingRequest, result: Embedded) -> bytes:
    if request.encoding == "base64":
        vectors: list[Any] = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in result.vectors]
    else:
        vectors = list(result.vectors)  # numpy rows: orjson writes them natively
    tokens = sum(result.tokens)
    return orjson.dumps(
        {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        },
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
