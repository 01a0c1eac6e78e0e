"""JSON schema → GBNF for constrained decoding, with the fixes that make a small model finish its JSON.

llama-cpp-python's converter (`llama_cpp.llama_grammar.SchemaConverter`) does the schema walk (refs, anyOf,
enums, required and optional properties); three of its rules are changed here:

- `char` allows raw control characters (a literal newline inside a string), which is not JSON: strict parsers
  (Python's json, pydantic, the openai SDK's `.parse()`) reject the output, and a small model uses the newline
  to wander off into prose inside a string until max_tokens runs out. Here `char` is JSON's own.
- strings and arrays are unbounded, so a model caught in a loop ("baking", "baking", …) never reaches the
  closing bracket. Strings without `maxLength` and arrays without `maxItems` get a cap (settings
  `json_max_string_chars`, `json_max_items`); the schema's own bounds stand where it has them.
- whitespace: one optional space between tokens (the converter's own choice), never a run of newlines.

`json_object` requests get the same rules over a generic JSON value with an object at the root.

And near the end of max_tokens the engine prefers the tokens that close the JSON (`GrammarState`), so an answer
whose free text would run past the budget still ends as complete JSON (with that text cut short) rather than
as a truncated, unparseable one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

# JSON's string character: anything but a quote, a backslash or a control character; or an escape.
CHAR = r'[^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})'


_SCHEMA_MAPS = ("properties", "$defs", "definitions")  # name → sub-schema
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONE = ("items", "additionalProperties", "not")


def _bounded(schema: Any, max_items: int) -> Any:
    """The schema with `maxItems` added to every array that has none (a copy; the request's schema is kept)."""
    if not isinstance(schema, dict):
        return schema
    if not schema:  # `{}` allows any value; the converter would allow only an object
        return {"anyOf": [{"type": t} for t in ("object", "array", "string", "number", "boolean", "null")]}
    out = dict(schema)
    for key in _SCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            out[key] = {name: _bounded(sub, max_items) for name, sub in schema[key].items()}
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            out[key] = [_bounded(sub, max_items) for sub in schema[key]]
    for key in _SCHEMA_ONE:
        if isinstance(schema.get(key), dict):
            out[key] = _bounded(schema[key], max_items)
    is_array = schema.get("type") == "array" or (schema.get("type") is None and isinstance(schema.get("items"), dict))
    if is_array and "maxItems" not in schema:
        out["maxItems"] = max(max_items, int(schema.get("minItems", 0)))
    return out


def schema_grammar(schema: dict[str, Any] | None, max_string_chars: int, max_items: int) -> str:
    """GBNF text for `schema` (None or {}: any JSON object). Raises on schemas the converter cannot express."""
    from llama_cpp.llama_grammar import SchemaConverter

    converter = SchemaConverter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    if not schema:  # json_object, or a schema of `{}`: any JSON object
        schema = {"type": "object"}
    resolved = converter.resolve_refs(_bounded(schema, max_items), "request")
    converter.visit(resolved, "")
    rules: dict[str, str] = converter._rules  # the converter's output before formatting: rule name → body
    if "char" in rules:
        rules["char"] = CHAR
    if "string" in rules:
        rules["string"] = rf'"\"" char{{0,{max_string_chars}}} "\"" space'
    for name, body in rules.items():
        rules[name] = _cap_repeats(body, max_items)
    _end_at_value(rules)
    return converter.format_grammar()


# `( "," space X )*`, as the converter writes unbounded repetition (generic values, additionalProperties maps).
_UNBOUNDED = re.compile(r'\(\s*"," space ([^()]+?)\s*\)\*')


def _cap_repeats(body: str, max_items: int) -> str:
    return _UNBOUNDED.sub(lambda m: f'("," space {m.group(1)}){{0,{max(max_items - 1, 0)}}}', body)


def _end_at_value(rules: dict[str, str]) -> None:
    """No optional space after the root value: when the value closes, only end-of-generation is left, so the
    answer stops at the grammar's end instead of waiting for the model to pick EOS over a space."""
    root = rules["root"]
    if root in rules:  # `root ::= object`: a named rule, maybe shared with nested values; copy it
        root = rules[root]
    if root.endswith(" space"):
        rules["root"] = root.removesuffix(" space")


# -- closing the JSON before max_tokens runs out --------------------------------------------------------------


def closing_reserve(max_tokens: int, depth: int) -> int:
    """Tokens kept back for closing: from then on the grammar's closing tokens are preferred. Enough for the
    open string, the containers and a few required keys still to come; a third of the budget at most, so a tiny
    max_tokens is left to the model (and cut off as asked)."""
    return min(max_tokens // 3, 32 + 4 * depth)


class ClosingMasks:
    """Per-token flags over the vocabulary: which tokens contain a quote, which a closing bracket (or end the
    generation), which are only whitespace. Built once per vocabulary (about 50k pieces)."""

    def __init__(self, pieces: list[bytes | None]) -> None:
        self.quote = np.array([p is not None and b'"' in p for p in pieces], dtype=bool)
        self.close = np.array([p is None or b"}" in p or b"]" in p for p in pieces], dtype=bool)
        self.blank = np.array([p is not None and not p.strip() for p in pieces], dtype=bool)


_MASKS: dict[int, ClosingMasks] = {}  # vocabulary address → its masks (one model per engine process)


def closing_masks(vocab_key: int, pieces: Callable[[], list[bytes | None]]) -> ClosingMasks:
    masks = _MASKS.get(vocab_key)
    if masks is None:
        masks = _MASKS[vocab_key] = ClosingMasks(pieces())
    return masks


class GrammarState:
    """One request's grammar sampler and where the JSON written so far stands (inside a string? how deep?).

    It goes to llama.cpp calls in place of the bare sampler pointer (`_as_parameter_`), so code that only frees
    or applies the sampler need not know about it."""

    __slots__ = ("_as_parameter_", "depth", "escaped", "in_string")

    def __init__(self, sampler: Any) -> None:
        self._as_parameter_ = sampler
        self.in_string = False
        self.escaped = False
        self.depth = 0

    def track(self, piece: bytes | None) -> None:
        for b in piece or b"":
            if self.in_string:
                if self.escaped:
                    self.escaped = False
                elif b == 0x5C:  # backslash
                    self.escaped = True
                elif b == 0x22:  # quote
                    self.in_string = False
            elif b == 0x22:
                self.in_string = True
            elif b in (0x7B, 0x5B):  # { [
                self.depth += 1
            elif b in (0x7D, 0x5D):  # } ]
                self.depth -= 1

    def preferred(self, masks: ClosingMasks, allowed: np.ndarray) -> np.ndarray:
        """Of the tokens the grammar allows, those that move toward the end: inside a string, one that closes it;
        outside, one that closes a container, else anything but optional whitespace (a key the schema requires
        must still be written)."""
        if self.in_string:
            return allowed & masks.quote
        closing = allowed & masks.close
        return closing if closing.any() else allowed & ~masks.blank
