"""When a local answer is not good enough to send: low confidence, or output that breaks its JSON schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import orjson

from router.config import EscalationSettings
from router.types import Completion, ResponseFormat


def schema_failure(completion: Completion, fmt: ResponseFormat) -> str | None:
    """Why the answer does not satisfy the requested format, or None if it does (or none was requested)."""
    if fmt.type == "text":
        return None
    try:
        value: Any = orjson.loads(completion.text)
    except orjson.JSONDecodeError:
        return "not valid JSON"
    if fmt.type == "json_object":
        return None if isinstance(value, dict) else "not a JSON object"
    try:
        jsonschema.validate(value, fmt.json_schema or {})
    except jsonschema.ValidationError as exc:
        return f"schema violation: {exc.message}"
    except jsonschema.SchemaError:
        return None  # an invalid schema is the client's problem; the grammar already shaped the output
    return None


def low_confidence(completion: Completion, settings: EscalationSettings) -> bool:
    logprobs = completion.logprobs
    if not logprobs:
        return False  # the engine gave none: nothing to judge by
    if settings.min_mean_logprob is not None and sum(logprobs) / len(logprobs) < settings.min_mean_logprob:
        return True
    return settings.min_token_logprob is not None and min(logprobs) < settings.min_token_logprob
