"""Workload files → WorkItem.

Native JSONL, one request a line:
    {"id": "cls-1", "messages": [{"role": "user", "content": "…"}], "task": "classification",
     "expected_tier": "local", "max_tokens": 16}
`prompt` may stand in for `messages` (one user turn); everything but the messages is optional.

ShareGPT (a JSON array, or JSONL, of {"id", "conversations": [{"from": "human"|"gpt"|"system", "value"}]}):
the system turn and the first human turn become the request, and the first reply's length (≈4 chars a token)
becomes max_tokens, as vLLM's benchmark does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


@dataclass(frozen=True, slots=True)
class WorkItem:
    id: str
    messages: list[dict[str, str]]
    task: str | None = None
    expected_tier: str | None = None
    max_tokens: int | None = None


class WorkloadError(ValueError):
    pass


def load(path: str | Path) -> list[WorkItem]:
    """Read a native JSONL or ShareGPT workload; the format is detected per record."""
    p = Path(path)
    raw = p.read_bytes()
    if raw.lstrip().startswith(b"["):
        records: list[Any] = orjson.loads(raw)
    else:
        records = []
        for n, line in enumerate(raw.splitlines(), 1):
            if line.strip() and not line.lstrip().startswith(b"//"):
                try:
                    records.append(orjson.loads(line))
                except orjson.JSONDecodeError as e:
                    raise WorkloadError(f"{p}:{n}: not JSON: {e}") from None
    items = []
    for n, rec in enumerate(records, 1):
        item = _from_sharegpt(rec, n) if "conversations" in rec else _from_native(rec, n)
        if item is not None:
            items.append(item)
    if not items:
        raise WorkloadError(f"{p}: no usable requests")
    return items


def _from_native(rec: dict[str, Any], n: int) -> WorkItem:
    if "messages" in rec:
        messages = [{"role": m["role"], "content": m["content"]} for m in rec["messages"]]
    elif "prompt" in rec:
        messages = [{"role": "user", "content": rec["prompt"]}]
    else:
        raise WorkloadError(f"record {n}: needs `messages` or `prompt`")
    max_tokens = rec.get("max_tokens")
    return WorkItem(
        id=str(rec.get("id", n)),
        messages=messages,
        task=rec.get("task"),
        expected_tier=rec.get("expected_tier"),
        max_tokens=int(max_tokens) if max_tokens is not None else None,
    )


def _from_sharegpt(rec: dict[str, Any], n: int) -> WorkItem | None:
    messages: list[dict[str, str]] = []
    reply: str | None = None
    for turn in rec["conversations"]:
        role = _SHAREGPT_ROLES.get(turn.get("from", ""))
        if role == "system" and not messages:
            messages.append({"role": "system", "content": turn["value"]})
        elif role == "user" and not any(m["role"] == "user" for m in messages):
            messages.append({"role": "user", "content": turn["value"]})
        elif role == "assistant" and any(m["role"] == "user" for m in messages):
            reply = turn["value"]
            break
    if not any(m["role"] == "user" for m in messages):
        return None  # nothing to ask: skip, as other harnesses do
    return WorkItem(
        id=str(rec.get("id", n)),
        messages=messages,
        max_tokens=max(1, len(reply) // 4) if reply else None,
    )
