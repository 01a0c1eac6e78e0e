"""Task types, from the product brief: which work a small local model does well, and which needs a frontier model."""

from __future__ import annotations

from enum import StrEnum


class Task(StrEnum):
    # Local tier: narrow, high-volume, checkable.
    CLASSIFICATION = "classification"
    EXTRACTION = "extraction"
    SUMMARIZATION = "summarization"
    RERANKING = "reranking"
    EMBEDDING = "embedding"
    TRANSCRIPTION = "transcription"
    # Frontier tier: open-ended, multi-step, high-stakes.
    PLANNING = "planning"
    SYNTHESIS = "synthesis"
    CODE = "code"
    WRITING = "writing"
    REASONING = "reasoning"
    VALIDATION = "validation"
    # Nothing in the request says what it is.
    GENERAL = "general"


LOCAL_TASKS = frozenset(
    {Task.CLASSIFICATION, Task.EXTRACTION, Task.SUMMARIZATION, Task.RERANKING, Task.EMBEDDING, Task.TRANSCRIPTION}
)
FRONTIER_TASKS = frozenset({Task.PLANNING, Task.SYNTHESIS, Task.CODE, Task.WRITING, Task.REASONING, Task.VALIDATION})

# The order the scorer reports tasks in (its task index), shared by the compiled scorer and its twin.
SCORED_TASKS: tuple[Task, ...] = (
    Task.CLASSIFICATION,
    Task.EXTRACTION,
    Task.SUMMARIZATION,
    Task.RERANKING,
    Task.PLANNING,
    Task.SYNTHESIS,
    Task.CODE,
    Task.WRITING,
    Task.REASONING,
    Task.VALIDATION,
    Task.GENERAL,
)
