"""Rebuild the public paraphrase sets the semantic cache is tuned and scored on (shared/paraphrase/).

Sources (fetched with the `fetch` tool into /work/.mirror, or any clone of the same repositories):

    PAWS-Wiki labeled final (Google, "may be freely used for any purpose"): data/final/dev.tsv and test.tsv
        as mirrored in github.com/hoangdzung/simmat (byte-identical copies of the official tar's files)
    MRPC (Microsoft Research Paraphrase Corpus): data/msr_paraphrase_train.txt and msr_paraphrase_test.txt
        in the same repository. Microsoft's own licence terms apply; its text is not shipped here, only rebuilt.

Output: one JSON line per pair {"id", "a", "b", "label"} (label 1 = paraphrase). PAWS is shipped (small, free
licence); MRPC is written only when you run this script.

    python benchmarks/cache_data.py [--mirror /work/.mirror/hoangdzung+simmat/repo]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "shared" / "paraphrase"
MIRROR = Path("/work/.mirror/hoangdzung+simmat/repo")
SETS = {
    # name: (path in the repository, column of text a, column of text b, column of the label)
    "paws_dev": ("data/final/dev.tsv", 1, 2, 3),
    "paws_test": ("data/final/test.tsv", 1, 2, 3),
    "mrpc_train": ("data/msr_paraphrase_train.txt", 3, 4, 0),
    "mrpc_test": ("data/msr_paraphrase_test.txt", 3, 4, 0),
}


def _show(repo: Path, path: str) -> str:
    if (repo / path).is_file():  # a working-tree clone
        return (repo / path).read_text(encoding="utf-8-sig")
    raw = subprocess.run(["git", "--git-dir", str(repo), "show", f"HEAD:{path}"], capture_output=True, check=True)
    return raw.stdout.decode("utf-8-sig")


def rows(text: str, a: int, b: int, label: int) -> list[dict]:
    out = []
    for i, line in enumerate(text.splitlines()):
        cols = line.split("\t")
        if len(cols) <= max(a, b, label) or cols[label].strip() not in ("0", "1"):
            continue  # a header line
        out.append({"id": i, "a": cols[a].strip(), "b": cols[b].strip(), "label": int(cols[label])})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=MIRROR, help="git dir or clone of hoangdzung/simmat")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (path, a, b, label) in SETS.items():
        pairs = rows(_show(args.mirror, path), a, b, label)
        with (OUT / f"{name}.jsonl").open("w") as f:
            for p in pairs:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        positives = sum(p["label"] for p in pairs)
        print(f"{name}: {len(pairs)} pairs ({positives} paraphrases) → {OUT / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
