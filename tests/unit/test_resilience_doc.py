"""docs/resilience.md names, for every row of its outcome table, the tests that check it: those tests must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "resilience.md").read_text()
TESTS = "".join(
    (ROOT / "tests" / path).read_text()
    for path in (
        "integration/test_resilience.py",
        "integration/test_credentials_and_metrics.py",
        "deploy/test_metrics_auth.py",
    )
)


def _tables() -> list[list[list[str]]]:
    """The doc's markdown tables: rows of cells, header and separator left out."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*DOC.splitlines(), ""]:
        if line.startswith("|"):
            current.append([c.strip() for c in line.strip("|").split("|")])
        elif current:
            tables.append(current[2:])
            current = []
    return tables


def test_every_named_test_exists() -> None:
    named = set(re.findall(r"`(test_\w+)`", DOC))
    assert len(named) >= 15
    defined = set(re.findall(r"^def (test_\w+)", TESTS, re.M))
    assert not named - defined, f"docs/resilience.md names tests that do not exist: {sorted(named - defined)}"


def test_every_outcome_row_has_tests() -> None:
    outcomes, tested = _tables()[:2]
    assert len(outcomes) == len(tested) >= 9  # one "tests" row per outcome row, in the same order
    for outcome, row in zip(outcomes, tested, strict=True):
        assert re.search(r"`test_\w+`", row[1]), f"no test named for {outcome[0]!r}"
