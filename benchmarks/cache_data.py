"""Rebuild the public pair sets the semantic cache is tuned and scored on (benchmarks/out/paraphrase/, not committed).

Sources and licences: benchmarks/DATA_CARD.md. Each comes from a public GitHub repository brought here with the
`fetch` tool (a bare git mirror under /work/.mirror) or any clone of it:

    tuning   paws_dev    PAWS-Wiki labeled final dev.tsv      github.com/hoangdzung/simmat  data/final/dev.tsv
             mrpc_train  MRPC train                           github.com/hoangdzung/simmat  data/msr_paraphrase_train…
             mqp         Medical Question Pairs (Curai)       github.com/curai/medical-question-pair-dataset  mqp.csv
             corpus      this project's workloads/cache_corpus.jsonl as base/paraphrase, base/near-miss pairs
    report   qqp         Quora Question Pairs, test chunks    github.com/prannb/erogol  test/quora_test_*.tsv
             qqp_large   the same source, 8,000 pairs: more verified traffic for the learned-threshold run
    verifier qqp_train   Quora Question Pairs, train chunks   github.com/prannb/erogol  train/quora_train_*.tsv
                         (12,000 pairs, none sharing a question, by id or by text, with any test chunk pair)
    (also)   paws_test, mrpc_test: never used for tuning; the verifier's second and third report sets

Output: one JSON line per pair {"id", "a", "b", "label"} (label 1 = same request / paraphrase). `--sample N` keeps
a seeded random sample of N pairs per set (the embedding model runs at about 80 sentences/s on 2 shared cores).

    python benchmarks/cache_data.py [--sample 2000] [--mirrors /work/.mirror]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import subprocess
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "paraphrase"
MIRRORS = Path("/work/.mirror")
SIMMAT, CURAI, QUORA = "hoangdzung+simmat", "curai+medical-question-pair-dataset", "prannb+erogol"
# name: (mirror, path or glob in the repository, format, column of text a, text b, label)
SETS = {
    "paws_dev": (SIMMAT, "data/final/dev.tsv", "tsv", 1, 2, 3),
    "paws_test": (SIMMAT, "data/final/test.tsv", "tsv", 1, 2, 3),
    "mrpc_train": (SIMMAT, "data/msr_paraphrase_train.txt", "tsv", 3, 4, 0),
    "mrpc_test": (SIMMAT, "data/msr_paraphrase_test.txt", "tsv", 3, 4, 0),
    "mqp": (CURAI, "mqp.csv", "csv", 1, 2, 3),
    "qqp": (QUORA, "test/quora_test_*.tsv", "tsv", 3, 4, 5),
    "qqp_large": (QUORA, "test/quora_test_*.tsv", "tsv", 3, 4, 5),  # more traffic for the learned run
    "qqp_train": (QUORA, "train/quora_train_*.tsv", "tsv", 3, 4, 5),  # the verifier's (verifier_train.py)
    "corpus": ("", "", "", 0, 0, 0),  # this project's corpus (not public): a tuning set only, built in corpus_pairs
}
CORPUS = Path(__file__).resolve().parent / "workloads" / "cache_corpus.jsonl"
SAMPLE = {"qqp_large": 8000, "qqp_train": 12000}  # pairs kept instead of --sample
TUNING = ("paws_dev", "mrpc_train", "mqp", "corpus")
REPORT = ("qqp",)


def _git(repo: Path, *args: str) -> str:
    git_dir = repo / "repo"
    git_dir = git_dir / ".git" if (git_dir / ".git").is_dir() else git_dir
    done = subprocess.run(["git", "--git-dir", str(git_dir), *args], capture_output=True, check=True)
    return done.stdout.decode("utf-8-sig", errors="replace")


def _files(repo: Path, pattern: str) -> list[str]:
    if "*" not in pattern:
        return [pattern]
    names = _git(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    return sorted(n for n in names if Path(n).match(pattern))


def rows(text: str, fmt: str, a: int, b: int, label: int) -> list[tuple[str, str, int]]:
    lines = csv.reader(io.StringIO(text)) if fmt == "csv" else (line.split("\t") for line in text.splitlines())
    out = []
    for cols in lines:
        if len(cols) <= max(a, b, label) or cols[label].strip() not in ("0", "1"):
            continue  # a header or a broken line
        first, second = cols[a].strip(), cols[b].strip()
        if first and second:
            out.append((first, second, int(cols[label])))
    return out


def corpus_pairs() -> list[dict]:
    """This project's own corpus (benchmarks/workloads/cache_corpus.jsonl) as pairs: base/paraphrase is 1,
    base/near miss is 0."""
    out = []
    for line in CORPUS.read_text().splitlines():
        group = json.loads(line)
        out += [(group["base"], text, 1) for text in group["paraphrases"]]
        out += [(group["base"], text, 0) for _, text in group["near_misses"]]
    return [{"id": i, "a": a, "b": b, "label": label} for i, (a, b, label) in enumerate(out)]


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def qqp_disjoint(repo: Path) -> list[tuple[str, str, int]]:
    """QQP train-chunk pairs that share no question (by Quora's question id or by folded text) with any pair of
    the test chunks, which the report sets (qqp, qqp_large) are drawn from."""
    test_ids: set[str] = set()
    test_texts: set[str] = set()
    for path in _files(repo, SETS["qqp"][1]):
        for line in _git(repo, "show", f"HEAD:{path}").splitlines():
            cols = line.split("\t")
            if len(cols) >= 6:
                test_ids.update(cols[1:3])
                test_texts.update((_norm(cols[3]), _norm(cols[4])))
    out = []
    for path in _files(repo, SETS["qqp_train"][1]):
        for line in _git(repo, "show", f"HEAD:{path}").splitlines():
            cols = line.split("\t")
            if len(cols) < 6 or cols[5].strip() not in ("0", "1") or not cols[3].strip() or not cols[4].strip():
                continue
            if test_ids & set(cols[1:3]) or _norm(cols[3]) in test_texts or _norm(cols[4]) in test_texts:
                continue
            out.append((cols[3].strip(), cols[4].strip(), int(cols[5])))
    return out


def build(name: str, mirrors: Path, sample: int | None, seed: int = 15) -> list[dict]:
    if name == "corpus":
        return corpus_pairs()
    mirror, pattern, fmt, a, b, label = SETS[name]
    repo = mirrors / mirror
    if name == "qqp_train":
        pairs = qqp_disjoint(repo)
    else:
        files = _files(repo, pattern)
        pairs = [p for path in files for p in rows(_git(repo, "show", f"HEAD:{path}"), fmt, a, b, label)]
    ids = list(range(len(pairs)))
    if sample is not None and sample < len(ids):
        ids = sorted(random.Random(seed).sample(ids, sample))
    return [{"id": i, "a": pairs[i][0], "b": pairs[i][1], "label": pairs[i][2]} for i in ids]


def load(name: str) -> list[dict]:
    path = OUT / f"{name}.jsonl"
    if not path.exists():
        raise SystemExit(f"{path} is missing: run python benchmarks/cache_data.py first")
    return [json.loads(line) for line in path.open()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirrors", type=Path, default=MIRRORS, help="folder of the fetched repositories")
    parser.add_argument("--sample", type=int, default=2000, help="pairs kept per set (seeded); 0 keeps all")
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.sets:
        pairs = build(name, args.mirrors, SAMPLE.get(name, args.sample) or None)
        with (OUT / f"{name}.jsonl").open("w") as f:
            for p in pairs:
                f.write(json.dumps(p, ensure_ascii=False) + "\n")
        positives = sum(p["label"] for p in pairs)
        print(f"{name}: {len(pairs)} pairs ({positives} positive) -> {OUT / (name + '.jsonl')}")


if __name__ == "__main__":
    main()
