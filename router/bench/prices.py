"""Price table for "cost vs all-frontier": USD per million input / output tokens.

Defaults are the providers' published list prices for standard (non-batch, non-cached) tokens; Gemini 2.5 Pro's
are the ≤200k-token-prompt tier. Override with `--prices FILE` (JSON or YAML mapping of model → {input, output}).
The local tier costs `local` (default 0: the hardware is already paid for; set it to amortise it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

PRICES_AS_OF = "2025-11"


@dataclass(frozen=True, slots=True)
class Price:
    input: float  # USD per 1M tokens
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1e6


DEFAULT_PRICES: dict[str, Price] = {
    "claude-opus-4-1": Price(15.00, 75.00),
    "claude-opus-4-5": Price(5.00, 25.00),
    "gpt-5": Price(1.25, 10.00),
    "gemini-2.5-pro": Price(1.25, 10.00),
    "local": Price(0.0, 0.0),
}
# The cheapest of the three families, so the headline saving is the conservative one.
DEFAULT_REFERENCE = "gpt-5"
REFERENCE_MODELS = ("claude-opus-4-1", "claude-opus-4-5", "gpt-5", "gemini-2.5-pro")


def load_prices(path: str | Path | None) -> dict[str, Price]:
    table = dict(DEFAULT_PRICES)
    if path is None:
        return table
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    for model, p in data.items():
        table[model] = Price(float(p["input"]), float(p["output"]))
    return table


def request_cost(
    tier: str | None,
    model: str | None,
    cost_header: float | None,
    prompt_tokens: int,
    completion_tokens: int,
    table: dict[str, Price],
    reference: str,
    assume_tier: str = "local",
) -> float:
    """What one answered request cost: the server's own figure when it sends one, else priced by tier.

    A request without a tier header (a plain server, not this router) counts as `assume_tier`. A non-local tier
    is priced as the model the server named, or as the reference model when that is unknown.
    """
    if cost_header is not None:
        return cost_header
    tier = tier or assume_tier
    if tier == "local":
        return table["local"].cost(prompt_tokens, completion_tokens)
    price = table.get(model or "") or table[reference]
    return price.cost(prompt_tokens, completion_tokens)
