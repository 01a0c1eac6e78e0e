"""Structured output on the local model: how often grammar-constrained JSON finishes, valid, within max_tokens.

Contenders, in the same process on the same engine, model, prompts, seeds and max_tokens (512, the default a
client like LangChain gets when it sends none), interleaved per schema:

- `before`: llama-cpp-python's own `json_schema_to_gbnf` as it is and no closing near the budget (the engine
  before issue 18).
- `after`:  `router/engines/json_grammar.py` (JSON string characters, capped strings/arrays, end at the value)
  and the engine's closing of the JSON in the last tokens of the budget.

Each at the temperatures given (1.0: the API default a client gets when it sends none, as before; 0.3: the new
`json_temperature` default). Five ordinary schemas (a person, an enum + number, a title + tag list, nested
objects in an array via $defs, two free-text fields), `--n` seeds each. An answer counts as good when it
finished with "stop", parses as strict JSON and validates against its schema.

    python benchmarks/structured_output.py --n 8

Results: benchmarks/RESULTS.md, section "Structured output on the local model".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from router.config import ModelSettings  # noqa: E402
from router.engines import llamacpp_batched, llamacpp_sampling  # noqa: E402
from router.types import ChatRequest, Completion, Message, ResponseFormat, SamplingParams  # noqa: E402
from tests.engines.test_json_grammar import SCHEMAS  # noqa: E402  (the same five schemas the tests use)


def before(schema, _chars, _items):  # type: ignore[no-untyped-def]
    from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

    return json_schema_to_gbnf(json.dumps(schema)) if schema else JSON_GBNF


def no_closing(max_tokens: int, depth: int) -> int:
    return 0


AFTER = llamacpp_sampling.schema_grammar, llamacpp_sampling.closing_reserve
BEFORE = before, no_closing


async def run(engine, name: str, temperature: float, seed: int) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    schema, text = SCHEMAS[name]
    request = ChatRequest(
        model="m",
        messages=[Message("user", text)],
        sampling=SamplingParams(temperature=temperature, seed=seed),  # no max_tokens: the default 512
        response_format=ResponseFormat("json_schema", schema, name),
    )
    answer = await Completion.gather(engine.generate(request))
    if answer.finish_reason != "stop":
        return answer.finish_reason, answer.usage.completion_tokens
    try:
        jsonschema.validate(json.loads(answer.text), schema)
    except (ValueError, jsonschema.ValidationError):
        return "invalid", answer.usage.completion_tokens
    return "ok", answer.usage.completion_tokens


async def main(n: int, temperatures: list[float], threads: int | None) -> None:
    engine = llamacpp_batched.BatchedLlamaCppEngine(
        ModelSettings(name="m", n_ctx=2048, n_parallel=8, default_max_tokens=512, n_threads=threads)
    )
    await engine.start()
    results: dict[tuple[str, float], list[tuple[str, int]]] = {}
    started = time.perf_counter()
    for name in SCHEMAS:
        for temperature in temperatures:
            for label, (grammar, reserve) in (("before", BEFORE), ("after", AFTER)):
                # The engine's grammar entry point and its closing reserve, swapped in place.
                llamacpp_sampling.schema_grammar, llamacpp_sampling.closing_reserve = grammar, reserve
                outcomes = await asyncio.gather(*(run(engine, name, temperature, 1000 + s) for s in range(n)))
                results.setdefault((label, temperature), []).extend(outcomes)
    llamacpp_sampling.schema_grammar, llamacpp_sampling.closing_reserve = AFTER
    await engine.aclose()
    print(f"{len(SCHEMAS)} schemas x {n} seeds per cell, max_tokens 512; {time.perf_counter() - started:.0f} s")
    print("| grammar | temperature | good | ran to max_tokens | invalid JSON / schema | mean tokens | max tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (label, temperature), outcomes in results.items():
        kinds = Counter(kind for kind, _ in outcomes)
        tokens = [t for _, t in outcomes]
        total = len(outcomes)
        print(
            f"| {label} | {temperature} | {kinds['ok']}/{total} | {kinds['length']} | {kinds['invalid']} | "
            f"{statistics.mean(tokens):.0f} | {max(tokens)} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=8, help="seeds per schema, grammar and temperature")
    parser.add_argument("--temperatures", default="1.0,0.3")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    asyncio.run(main(args.n, [float(t) for t in args.temperatures.split(",")], args.threads))
