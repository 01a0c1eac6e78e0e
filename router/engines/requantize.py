"""Serve a GGUF in a faster weight format: the shipped 4-bit file requantised once, with llama.cpp's own quantiser.

On CPUs the decode step of a small model is bound by dequantisation, and llama.cpp's Q8_0 kernels batch better than
Q4_1's: the embedded SmolLM2 decodes 1.48x the tokens per CPU second as Q8_0 (benchmarks/RESULTS.md, soak
section), and Q8_0 holds every Q4_1 weight almost exactly (answers differ at numerical-noise level). The file is
made once per source file (keyed by its path, size and mtime) under the model cache, written to a temporary name
and renamed, so engines starting together never read half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = ("Q8_0",)


def cache_dir() -> Path:
    return Path(os.environ.get("HYBRID_ROUTER_MODEL_CACHE", Path.home() / ".cache" / "hybrid-router" / "models"))


def requantized(source: str, fmt: str) -> str:
    """The path of `source` in `fmt`, made now if it is not in the cache yet."""
    import llama_cpp as L

    if fmt not in FORMATS:
        raise ValueError(f"cannot requantise to {fmt!r}; known: {', '.join(FORMATS)}")
    stat = os.stat(source)
    key = hashlib.sha256(f"{os.path.abspath(source)}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    out = cache_dir() / f"{Path(source).stem}.{fmt}.{key}.gguf"
    if out.is_file():
        return str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.part")
    params = L.llama_model_quantize_default_params()
    params.ftype = getattr(L, f"LLAMA_FTYPE_MOSTLY_{fmt}")
    params.allow_requantize = True
    params.nthread = 1
    started = time.monotonic()
    try:
        if L.llama_model_quantize(source.encode(), str(tmp).encode(), params) != 0:
            raise OSError(f"llama.cpp could not requantise {source} to {fmt}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("requantised %s to %s in %.1f s: %s", Path(source).name, fmt, time.monotonic() - started, out)
    return str(out)
