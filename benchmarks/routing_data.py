"""Rebuild the routing data set (train / heldout / report_*) from public GitHub repos fetched as bare mirrors.

Every record is one user prompt with the label the router should give it:
  local    = a narrow, checkable task over a given input (classify, extract, summarise, short rewrite);
  frontier = multi-step reasoning, code, open-ended writing, planning, open knowledge questions.
See benchmarks/ROUTING_DATA_CARD.md for sources, licences and the labelling rules.

    python benchmarks/routing_data.py [--mirrors /work/.mirror] [--out /work/shared/routing] [--seed 14]

Deterministic: every source samples with its own RNG seeded from (--seed, source name), files are read at a
pinned commit, and train/heldout is decided by a hash of the source group (T0 dataset family, template, task),
so held-out groups are never seen in training.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import random
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

HELDOUT_PERCENT = 15
SOURCE_CAP = 3000
# Below the cap: grade-school maths and code requests are homogeneous, and these keep train near 55% local.
GSM8K_N = 2200
CODEGEN_N = 2500


@dataclass(frozen=True)
class Repo:
    name: str  # owner/name on GitHub
    commit: str  # pinned: the data is read at exactly this commit
    licence: str


REPOS: dict[str, Repo] = {
    r.name: r
    for r in (
        Repo("yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23", "Apache-2.0"),
        Repo("openai/grade-school-math", "3101c7d5072418e28b9008a6636bde82a006892c", "MIT"),
        Repo("teknium1/GPTeacher", "481075123c29854bddb82655badeef6a438f2436", "MIT"),
        Repo("clinc/oos-eval", "828f8093932c8fe6ca7936c3d2e52903b1c523de", "CC-BY-3.0"),
        Repo("mainlp/xsid", "761d926c3f2e9f6bea13192d2f39cec1d04d9777", "CC-BY-SA-4.0"),
        Repo("google-research/url-nlp", "452a21ad3dae5668c06ceeac21ff073e1e40f9be", "CC-BY-4.0"),
        Repo("LianjiaTech/BELLE", "645084d36454cdeb4e7f1ce9b2f3426bac39f1f9", "ODC-By (data); Apache-2.0 (code)"),
        Repo("lm-sys/arena-hard-auto", "efc012e192b88024a5203f5a28ec8fc0342946df", "Apache-2.0"),
        Repo("lm-sys/FastChat", "0e6d3e4beaab66f4d3f93db72541a4abab8af28d", "Apache-2.0"),
        Repo("dadelani/sib-200", "593cea88519930f776c1a4a1980b6a35b39dca57", "CC-BY-SA-4.0 (FLORES-200 text)"),
        Repo("donnemartin/system-design-primer", "ae9bbd7b02d90b9866215de185217d33f39ab733", "CC-BY-4.0"),
        Repo("Open-Assistant/oasst-model-eval", "ce935dee6922ec75d5a4006dd1c3595b39a01fdf", "Apache-2.0"),
        # the first commit still has the data as one small file per record (later commits keep one large file)
        Repo("kunishou/databricks-dolly-15k-ja", "cd6c43db223ad274fd39737ea1b0b3add0956dba", "CC-BY-SA-3.0"),
        Repo("PolyAI-LDN/task-specific-datasets", "57ec275d8078af65b7731c2a98be812d844a6d6b", "CC-BY-4.0"),
    )
}


@dataclass(frozen=True)
class Record:
    id: str
    prompt: str
    label: str  # "local" | "frontier"
    task: str
    source: str  # repo:path#template-or-category
    licence: str
    lang: str
    group: str  # the unit of the train/heldout split


TASKS = frozenset(
    {
        "classification",
        "extraction",
        "summarization",
        "reranking",
        "planning",
        "synthesis",
        "code",
        "writing",
        "reasoning",
        "validation",
        "general",
    }
)


class Mirrors:
    """Reads files from bare git mirrors at the pinned commit (no work tree needed)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def git(self, repo: str, *args: str, stdin: bytes | None = None) -> bytes:
        git_dir = self.root / repo.replace("/", "+") / "repo"
        if not git_dir.is_dir():
            raise SystemExit(f"no mirror of {repo} at {git_dir}: fetch github:{repo} first")
        out = subprocess.run(["git", "-C", str(git_dir), *args], input=stdin, capture_output=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"git {' '.join(args)[:200]} failed in {repo}: {out.stderr.decode().strip()}")
        return out.stdout

    def text(self, repo: str, path: str) -> str:
        return self.git(repo, "show", f"{REPOS[repo].commit}:{path}").decode("utf-8")

    def listdir(self, repo: str, folder: str) -> list[str]:
        return sorted(self.git(repo, "ls-tree", "--name-only", f"{REPOS[repo].commit}:{folder}").decode().splitlines())

    def texts(self, repo: str, folder: str) -> Iterator[tuple[str, str]]:
        """(name, text) of every file in a folder, through one `git cat-file --batch` (thousands of small files).

        Asks by blob id: asking by commit:path makes git walk the 15k-entry tree once per file.
        """
        tree = self.git(repo, "ls-tree", f"{REPOS[repo].commit}:{folder}").decode()
        entries = sorted((line.split("\t")[1], line.split()[2]) for line in tree.splitlines())
        buf = self.git(repo, "cat-file", "--batch", stdin="".join(f"{blob}\n" for _, blob in entries).encode())
        pos = 0
        for name, _ in entries:
            header_end = buf.index(b"\n", pos)
            size = int(buf[pos:header_end].split()[2])
            yield name, buf[header_end + 1 : header_end + 1 + size].decode("utf-8")
            pos = header_end + 1 + size + 1

    def jsonl(self, repo: str, path: str) -> list[dict]:
        return [orjson.loads(line) for line in self.text(repo, path).splitlines() if line.strip()]


def rng_for(seed: int, name: str) -> random.Random:
    """One RNG per source, so adding or changing a source never reshuffles the others."""
    return random.Random(int(hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()[:16], 16))


def sample(rows: list, k: int, rng: random.Random) -> list:
    return list(rows) if len(rows) <= k else rng.sample(rows, k)


def make(prompt: str, label: str, task: str, repo: str, path: str, tag: str, lang: str, group: str, key: str) -> Record:
    if label not in ("local", "frontier") or task not in TASKS:
        raise ValueError(f"bad label/task {label!r}/{task!r} for {repo}:{path}#{tag}")
    source = f"{repo}:{path}#{tag}"
    rid = hashlib.sha256(f"{source}|{key}|{prompt}".encode()).hexdigest()[:16]
    return Record(rid, prompt.strip(), label, task, source, REPOS[repo].licence, lang, group)


def join_instruction(instruction: str, given: str, rng: random.Random) -> str:
    """Instruction + its input the way people paste them; the separator varies so it is not a label cue."""
    if not given.strip():
        return instruction.strip()
    sep = rng.choice(["\n\n", "\n", " ", "\n\n", ":\n"])
    head = instruction.strip().rstrip(":") if sep == ":\n" else instruction.strip()
    return f"{head}{sep}{given.strip()}"


# ---------------------------------------------------------------------------------------------- T0 / P3 (local)

T0_REPO = "yizhongw/self-instruct"
T0_DIR = "data/finetuning/t0_train_50k/data_per_template"
T0_PER_TEMPLATE = 30

# Dataset family (file-name prefix) -> default (label, task). The family is the split group.
T0_FAMILIES: dict[str, tuple[str, str]] = {
    "adversarial_qa": ("local", "extraction"),
    "ag_news": ("local", "classification"),
    "amazon_polarity": ("local", "classification"),
    "app_reviews": ("local", "classification"),
    "cnn_dailymail": ("local", "summarization"),
    "common_gen": ("local", "writing"),
    "commonsense_qa": ("local", "classification"),
    "cosmos_qa": ("local", "classification"),
    "dbpedia_14": ("local", "classification"),
    "dream": ("local", "classification"),
    "duorc": ("local", "extraction"),
    "gigaword": ("local", "summarization"),
    "glue_mrpc": ("local", "classification"),
    "glue_qqp": ("local", "classification"),
    "imdb": ("local", "classification"),
    "kilt_tasks_hotpotqa": ("frontier", "general"),
    "multi_news": ("local", "summarization"),
    "paws_labeled_final": ("local", "classification"),
    "qasc": ("local", "classification"),
    "quarel": ("local", "classification"),
    "quartz": ("local", "classification"),
    "quoref": ("local", "extraction"),
    "ropes": ("local", "extraction"),
    "rotten_tomatoes": ("local", "classification"),
    "samsum": ("local", "summarization"),
    "sciq": ("local", "classification"),
    "social_i_qa": ("local", "classification"),
    "trec": ("local", "classification"),
    "wiki_bio": ("local", "extraction"),
    "wiki_hop": ("local", "extraction"),
    "wiki_qa": ("local", "classification"),
    "wiqa": ("local", "classification"),
    "xsum": ("local", "summarization"),
    "yelp_review_full": ("local", "classification"),
}

# Templates whose task differs from their family's default (first match wins).
T0_OVERRIDES: list[tuple[str, str, str]] = [
    # Open-ended generation of a whole story / article / dialogue: frontier writing.
    (r"cnn_dailymail_3_0_0_(generate_story|spice_up_story)", "frontier", "writing"),
    (r"gigaword_write_an_article|multi_news_expand_reverse_task_", "frontier", "writing"),
    (r"duorc_.*_build_story_around_qa|samsum_Write_a_dialogue", "frontier", "writing"),
    # Closed-book questions (no given text to work on): open knowledge, frontier.
    (r"commonsense_qa_answer_given_question_without_options|sciq_Direct_Question_Closed_Book_", "frontier", "general"),
    # Short, constrained generation over a given input: still local.
    (r"_generate_question|Generate_the_question_from_the_answer|_title_generation|Guess_Title", "local", "writing"),
    (r"gigaword_(reverse_writing|write_its_sentence)|glue_mrpc_generate_(paraphrase|sentence)", "local", "writing"),
    (r"cnn_dailymail_3_0_0_write_an_outline", "local", "summarization"),
    (r"dream_generate_(first|last)_utterance|app_reviews_generate_review", "local", "writing"),
    (r"sciq_Direct_Question$|cosmos_qa_.*_text$|duorc_.*_decide_worth_it", "local", "extraction"),
]


def t0_family(template: str) -> str:
    for family in sorted(T0_FAMILIES, key=len, reverse=True):
        if template.startswith(family):
            return family
    raise SystemExit(f"unknown T0 template family: {template} (add it to T0_FAMILIES)")


def t0_label(template: str) -> tuple[str, str]:
    for pattern, label, task in T0_OVERRIDES:
        if re.search(pattern, template):
            return label, task
    return T0_FAMILIES[t0_family(template)]


def t0_records(m: Mirrors, seed: int) -> Iterator[Record]:
    for name in m.listdir(T0_REPO, T0_DIR):
        template = name.removesuffix(".jsonl")
        rows = [r for r in m.jsonl(T0_REPO, f"{T0_DIR}/{name}") if r.get("prompt", "").strip()]
        label, task = t0_label(template)
        family = t0_family(template)
        for i, row in enumerate(sample(rows, T0_PER_TEMPLATE, rng_for(seed, template))):
            yield make(row["prompt"], label, task, T0_REPO, f"{T0_DIR}/{name}", template, "en", f"t0:{family}", str(i))


# ------------------------------------------------------------------------------------- frontier instruction sets


def gsm8k_records(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "openai/grade-school-math", "grade_school_math/data/train.jsonl"
    for row in sample(m.jsonl(repo, path), GSM8K_N, rng_for(seed, "gsm8k")):
        q = row["question"]
        yield make(q, "frontier", "reasoning", repo, path, "train", "en", f"gsm8k:{digest(q)}", q)


def gpteacher_records(m: Mirrors, seed: int) -> Iterator[Record]:
    repo = "teknium1/GPTeacher"
    files = [
        ("Codegen/codegen-instruct.json", "codegen", "code", CODEGEN_N),
        ("Roleplay/roleplay-simple-deduped-roleplay-instruct.json", "roleplay", "writing", SOURCE_CAP),
    ]
    for path, tag, task, n in files:
        rng = rng_for(seed, f"gpteacher:{tag}")
        rows = [r for r in json.loads(m.text(repo, path)) if r.get("instruction", "").strip()]
        for row in sample(rows, n, rng):
            prompt = join_instruction(row["instruction"], row.get("input", ""), rng)
            yield make(prompt, "frontier", task, repo, path, tag, "en", f"gpteacher:{tag}:{digest(prompt)}", prompt)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# ----------------------------------------------------------------------- self-instruct style seeds (rule-labelled)

# The stated rule for instruction sets without a difficulty label: LOCAL iff the task works on a given input and is
# classification, extraction, summarisation or a short rewrite whose reference answer is short; everything else
# (open questions, writing, planning, code, maths) is FRONTIER.
NARROW_CUES: list[tuple[str, str]] = [
    (
        r"\b(rewrite|rewritten|rephrase|paraphrase|proofread|translate|correct the|fix the (grammar|spelling))\b"
        r"|改写|重写|纠正|润色|翻译|转述",
        "writing",
    ),
    (
        r"classif|categori[sz]e|(which|what|correct|right|best) category|sentiment|\btones?\b|\blabel\b"
        r"|is (it|this|the \w+) (positive|negative)|\bdetect|分类|类别|情感|判断|检测|词性",
        "classification",
    ),
    (
        r"\bextract|\bidentify\b|find (all|every)|\blist (all|the) \w+ (in|from|mentioned)|\bparse\b"
        r"|提取|抽取|找出|识别",
        "extraction",
    ),
    (r"summar|\btl;?dr\b|\bgist\b|总结|摘要|概括", "summarization"),
]
OPEN_CUES: list[tuple[str, str]] = [
    (r"\b(code|program|function|python|javascript|sql|regex|java|c\+\+|script|algorithm)\b|代码|程序|函数", "code"),
    (r"\b(solve|calculate|compute|prove|puzzle|how many|probability|equation)\b|计算|证明|数学", "reasoning"),
    (
        r"\b(plan|itinerary|schedule|design|strategy|roadmap|steps to|how (can|do|should) i)\b|计划|方案|设计|步骤",
        "planning",
    ),
    (
        r"\b(write|compose|story|poem|essay|letter|email|blog|tweet|slogan|joke|lyrics)\b|写|创作|诗|故事|文章",
        "writing",
    ),
]
SHORT_ANSWER_CHARS = 200
MIN_TEXT_TO_SUMMARISE = 100
MAX_TEXT_TO_REWRITE = 1000


def first_match(text: str, cues: list[tuple[str, str]]) -> str | None:
    low = text.lower()
    return next((task for pattern, task in cues if re.search(pattern, low)), None)


# Cues that make a request open-ended even when it also names a narrow operation ("explain ... sentiment",
# "rewrite this python function"): code anywhere, or an instruction that opens with an open-ended verb.
OPEN_VETO = re.compile(
    r"```|\b(def|class|function|python|javascript|typescript|sql|java|c\+\+|rust|golang|code)\b"
    r"|^\s*(please\s+)?(explain|why|discuss|argue|compare|design|plan|imagine|brainstorm|propose"
    r"|write an? (essay|story))"
    r"|解释|为什么|讨论|设计",
    re.IGNORECASE,
)


def text_size(text: str) -> int:
    """Length in Latin-character equivalents: a CJK character carries about as much as three Latin ones."""
    text = text.strip()
    return len(text) + 2 * sum(1 for ch in text if ord(ch) >= 0x2E80)


def rule_label(instruction: str, given: str, answer: str, is_classification: bool) -> tuple[str, str]:
    narrow = "classification" if is_classification else first_match(instruction, NARROW_CUES)
    # a rewrite/translation is narrow only when short: of a sentence or a paragraph, not of a whole document
    short = narrow != "writing" or (len(answer) <= SHORT_ANSWER_CHARS and len(given) <= MAX_TEXT_TO_REWRITE)
    # a summary needs a text to summarise: a bare title ("The Shining") means recalling the plot from knowledge
    enough = text_size(given) >= (MIN_TEXT_TO_SUMMARISE if narrow == "summarization" else 1)
    if narrow and enough and short and not OPEN_VETO.search(instruction + "\n" + given[:2000]):
        return "local", narrow
    return "frontier", first_match(instruction, OPEN_CUES) or "general"


def seed_task_records(m: Mirrors, seed: int, repo: str, path: str, lang: str, tag: str) -> Iterator[Record]:
    """Self-instruct style tasks (instruction + instances), labelled by the stated rule."""
    rng = rng_for(seed, f"{tag}:{path}")
    for row in m.jsonl(repo, path):
        instance = (row.get("instances") or [{}])[0]
        given, answer = instance.get("input", ""), instance.get("output", "")
        label, task = rule_label(row["instruction"], given, answer, bool(row.get("is_classification")))
        prompt = join_instruction(row["instruction"], given, rng)
        group = f"{tag}:{row.get('name') or row.get('id')}"
        category = row.get("name") or row.get("motivation_app") or "task"
        yield make(prompt, label, task, repo, path, f"{tag}/{category}", lang, group, str(row.get("id")))


def self_instruct_seed_records(m: Mirrors, seed: int) -> Iterator[Record]:
    yield from seed_task_records(m, seed, "yizhongw/self-instruct", "data/seed_tasks.jsonl", "en", "seed")


def belle_seed_records(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "LianjiaTech/BELLE", "data/1.5M/zh_seed_tasks.json"
    yield from seed_task_records(m, seed, repo, path, "zh", "zh_seed")


# -------------------------------------------------------------------- inline-label classification (built prompts)

# Training phrasings. The banking77 report set uses a disjoint list (REPORT_CLASSIFY_TEMPLATES) so that the report
# measures unseen phrasings too. {labels} and {text} are filled in; {labels} is rendered by one of LABEL_STYLES.
TRAIN_CLASSIFY_TEMPLATES: list[str] = [
    "Classify the following customer message into one of these intents: {labels}.\n\nMessage: {text}",
    'Which category does this query belong to? Options: {labels}\nQuery: "{text}"\nAnswer with the category only.',
    "You are an intent classifier. Possible intents:\n{labels}\n\nUser utterance: {text}\nIntent:",
    "Label the text with exactly one label from the list.\nLabels: {labels}\nText: {text}",
    "Text: {text}\n\nPick the best matching intent from {labels}. Reply with just the label.",
    "Route this support request to one queue. Queues: {labels}\nRequest: {text}",
    'Return JSON {{"intent": <one of the labels>}} for the utterance below.\nlabels = {labels}\nutterance: {text}',
    'Determine the user\'s intent.\n\nAllowed values: {labels}\n\n"{text}"',
    'Categorize: "{text}"\nChoose from: {labels}',
    "Given the list of intents {labels}, what is the intent of: {text}",
    "Tag this chatbot message with its intent ({labels}).\n{text}",
    "Is the following request about {labels}? Say which one.\n\n{text}",
]
LABEL_STYLES: list[Callable[[list[str]], str]] = [
    lambda ls: ", ".join(ls),
    lambda ls: "\n".join(f"- {x}" for x in ls),
    lambda ls: json.dumps(ls, ensure_ascii=False),
    lambda ls: " | ".join(ls),
    lambda ls: "\n".join(f"{i}. {x}" for i, x in enumerate(ls, 1)),
]

# Instructions in the utterance's own language (xSID): a short, faithful translation of the first template.
LOCAL_LANG_TEMPLATES: dict[str, str] = {
    "de": "Ordne die folgende Nachricht genau einer dieser Absichten zu: {labels}.\n\nNachricht: {text}",
    "it": "Classifica il seguente messaggio in una di queste intenzioni: {labels}.\n\nMessaggio: {text}",
    "nl": "Classificeer het volgende bericht in een van deze intenties: {labels}.\n\nBericht: {text}",
    "da": "Klassificer følgende besked i en af disse hensigter: {labels}.\n\nBesked: {text}",
    "id": "Klasifikasikan pesan berikut ke dalam salah satu maksud ini: {labels}.\n\nPesan: {text}",
    "tr": "Aşağıdaki mesajı şu niyetlerden birine sınıflandırın: {labels}.\n\nMesaj: {text}",
    "ja": "次のメッセージを、これらの意図のいずれか1つに分類してください: {labels}\n\nメッセージ: {text}",
    "zh": "请将下面的消息归类到以下意图之一：{labels}\n\n消息：{text}",
    "ar": "صنّف الرسالة التالية ضمن أحد هذه المقاصد: {labels}\n\nالرسالة: {text}",
    "sr": "Klasifikuj sledeću poruku u jednu od ovih namera: {labels}.\n\nPoruka: {text}",
    "lt": "Priskirk šią žinutę vienam iš šių ketinimų: {labels}.\n\nŽinutė: {text}",
    "kk": "Келесі хабарламаны осы ниеттердің біріне жатқызыңыз: {labels}.\n\nХабарлама: {text}",
}


def label_names(labels: list[str], rng: random.Random) -> list[str]:
    """Labels as people write them: snake_case, spaces, or Title Case."""
    style = rng.randrange(3)
    if style == 0:
        return labels
    spaced = [x.replace("_", " ").replace("/", " / ") for x in labels]
    return spaced if style == 1 else [x.title() for x in spaced]


def choose_labels(true: str, pool: list[str], rng: random.Random, low: int = 3, high: int = 20) -> list[str]:
    others = [x for x in pool if x != true]
    chosen = [*rng.sample(others, min(len(others), rng.randint(low, high) - 1)), true]
    rng.shuffle(chosen)
    return chosen


def classify_prompt(template: str, text: str, labels: list[str], rng: random.Random) -> str:
    rendered = rng.choice(LABEL_STYLES)(label_names(labels, rng))
    if "\n" in rendered and "{labels}\n" not in template:
        # a bulleted list inside a sentence: put it on its own lines, as a person would
        template, rendered = template.replace("{labels}.", "{labels}"), f"\n{rendered}\n"
    return template.format(labels=rendered, text=text)


def clinc_records(m: Mirrors, seed: int, n: int = 1500) -> Iterator[Record]:
    repo, path = "clinc/oos-eval", "data/data_full.json"
    rng = rng_for(seed, "clinc")
    data = json.loads(m.text(repo, path))
    domains: dict[str, list[str]] = json.loads(m.text(repo, "data/domains.json"))
    every = sorted({intent for _, intent in data["train"]})
    for text, intent in sample(sorted(data["train"]), n, rng):
        t = rng.randrange(len(TRAIN_CLASSIFY_TEMPLATES))
        domain = next((d for d, names in domains.items() if intent in names), None)
        pool = domains[domain] if domain and rng.random() < 0.5 else every
        prompt = classify_prompt(TRAIN_CLASSIFY_TEMPLATES[t], text, choose_labels(intent, pool, rng), rng)
        yield make(prompt, "local", "classification", repo, path, f"train/template{t}", "en", f"clinc:t{t}", text)


XSID_DIR = "data/xSID-0.7"


XSID_META = re.compile(r"^# (text|intent)\s*[:=]\s*(.*)$")


def xsid_utterances(conll: str) -> Iterator[tuple[str, str]]:
    """(text, intent) per sentence; xSID writes '# text: ...' in old releases and '# text = ...' in new ones."""
    meta: dict[str, str] = {}
    for line in [*conll.splitlines(), ""]:
        found = XSID_META.match(line)
        if found:
            meta[found.group(1)] = found.group(2).strip()
        elif not line.strip():
            if meta.get("text") and meta.get("intent"):
                yield meta["text"], meta["intent"]
            meta = {}


def xsid_records(m: Mirrors, seed: int, per_lang: int = 100) -> Iterator[Record]:
    repo = "mainlp/xsid"
    for name in m.listdir(repo, XSID_DIR):
        if not name.endswith(".valid.conll"):
            continue  # the training files are not in the mirror; the test split is never used
        lang = name.split(".")[0]
        rng = rng_for(seed, f"xsid:{lang}")
        rows = list(xsid_utterances(m.text(repo, f"{XSID_DIR}/{name}")))
        pool = sorted({intent for _, intent in rows})
        base = lang.split("-")[0]
        for text, intent in sample(rows, per_lang, rng):
            own = base in LOCAL_LANG_TEMPLATES and rng.random() < 0.5
            template = LOCAL_LANG_TEMPLATES[base] if own else rng.choice(TRAIN_CLASSIFY_TEMPLATES)
            tag = f"{lang}/{'native' if own else 'en'}-template"
            labels = choose_labels(intent, pool, rng, 3, len(pool))
            prompt = classify_prompt(template, text, labels, rng)
            # group by language: held-out languages are never seen in training
            yield make(prompt, "local", "classification", repo, f"{XSID_DIR}/{name}", tag, base, f"xsid:{lang}", text)


# SIB-200: one FLORES-200 sentence with its topic, in 200+ languages. We take the train split of a spread of
# major languages; the instruction is English or, where we wrote one, in the sentence's own language.
SIB_DIR = "data/annotated"
SIB_LANGS = {
    "arb_Arab": "ar",
    "ben_Beng": "bn",
    "ces_Latn": "cs",
    "dan_Latn": "da",
    "deu_Latn": "de",
    "ell_Grek": "el",
    "fin_Latn": "fi",
    "fra_Latn": "fr",
    "heb_Hebr": "he",
    "hin_Deva": "hi",
    "hun_Latn": "hu",
    "ind_Latn": "id",
    "ita_Latn": "it",
    "jpn_Jpan": "ja",
    "kor_Hang": "ko",
    "nld_Latn": "nl",
    "pes_Arab": "fa",
    "pol_Latn": "pl",
    "por_Latn": "pt",
    "ron_Latn": "ro",
    "rus_Cyrl": "ru",
    "spa_Latn": "es",
    "swe_Latn": "sv",
    "swh_Latn": "sw",
    "tam_Taml": "ta",
    "tha_Thai": "th",
    "tur_Latn": "tr",
    "ukr_Cyrl": "uk",
    "urd_Arab": "ur",
    "vie_Latn": "vi",
    "zho_Hans": "zh",
    "zho_Hant": "zh",
}
TOPIC_TEMPLATES: list[str] = [
    "What is the topic of this sentence? Choose one of: {labels}\n\n{text}",
    "Classify the text by topic.\nTopics: {labels}\nText: {text}\nTopic:",
    "Sentence: {text}\nWhich category fits best ({labels})? Answer with one word.",
    'Assign a topic label from {labels} to the following passage.\n\n"{text}"',
]
NATIVE_TOPIC_TEMPLATES: dict[str, str] = {
    "de": "Welches Thema hat dieser Satz? Wähle eines von: {labels}\n\n{text}",
    "fr": "Quel est le thème de cette phrase ? Choisis parmi : {labels}\n\n{text}",
    "es": "¿Cuál es el tema de esta oración? Elige uno de: {labels}\n\n{text}",
    "it": "Qual è l'argomento di questa frase? Scegli tra: {labels}\n\n{text}",
    "pt": "Qual é o tema desta frase? Escolha um de: {labels}\n\n{text}",
    "nl": "Wat is het onderwerp van deze zin? Kies uit: {labels}\n\n{text}",
    "ru": "Какова тема этого предложения? Выбери одну из: {labels}\n\n{text}",
    "pl": "Jaki jest temat tego zdania? Wybierz jeden z: {labels}\n\n{text}",
    "zh": "这句话的主题是什么？请从以下选项中选择：{labels}\n\n{text}",
    "ja": "この文のトピックは何ですか？次から1つ選んでください: {labels}\n\n{text}",
    "ko": "이 문장의 주제는 무엇입니까? 다음 중 하나를 고르세요: {labels}\n\n{text}",
    "tr": "Bu cümlenin konusu nedir? Şunlardan birini seçin: {labels}\n\n{text}",
    "vi": "Chủ đề của câu này là gì? Hãy chọn một trong: {labels}\n\n{text}",
    "id": "Apa topik kalimat ini? Pilih salah satu dari: {labels}\n\n{text}",
}


def sib_records(m: Mirrors, seed: int, per_lang: int = 40) -> Iterator[Record]:
    repo = "dadelani/sib-200"
    for code, lang in sorted(SIB_LANGS.items()):
        path = f"{SIB_DIR}/{code}/train.tsv"
        rng = rng_for(seed, f"sib:{code}")
        rows = [(r["text"], r["category"]) for r in csv.DictReader(io.StringIO(m.text(repo, path)), delimiter="\t")]
        pool = sorted({c for _, c in rows})
        for text, topic in sample(rows, per_lang, rng):
            own = lang in NATIVE_TOPIC_TEMPLATES and rng.random() < 0.5
            template = NATIVE_TOPIC_TEMPLATES[lang] if own else rng.choice(TOPIC_TEMPLATES)
            labels = choose_labels(topic, pool, rng, 3, len(pool))
            prompt = classify_prompt(template, text, labels, rng)
            tag = f"train/{code}/{'native' if own else 'en'}-template"
            yield make(prompt, "local", "classification", repo, path, tag, lang, f"sib:{lang}", text)


# ------------------------------------------------------------------- real user prompts (Open-Assistant, English)

OASST_REPO = "Open-Assistant/oasst-model-eval"
OASST_FILES = ["model_eval/manual/data/en_100_text.jsonl", "model_eval/manual/data/prompt_lottery_en_250_text.jsonl"]
OASST_REPORTS = "sampling_reports/oasst-sft/1k-prompts"


def oasst_prompts(m: Mirrors) -> Iterator[tuple[str, str]]:
    """(path, prompt): prompts people typed into Open-Assistant, as sampled by its evaluation tooling."""
    for path in OASST_FILES:
        for line in m.text(OASST_REPO, path).splitlines():
            if line.strip():
                yield path, orjson.loads(line)
    for name in m.listdir(OASST_REPO, OASST_REPORTS):
        path = f"{OASST_REPORTS}/{name}"
        for row in orjson.loads(m.text(OASST_REPO, path))["prompts"]:
            yield path, row["prompt"]


def split_given(prompt: str) -> tuple[str, str]:
    """A prompt's instruction and the text it works on (after the first blank line or 'xxx:' line break)."""
    for sep in ("\n\n", ":\n"):
        head, found, rest = prompt.partition(sep)
        if found and len(rest) >= 80:
            return head, rest
    return prompt, ""


def oasst_records(m: Mirrors, seed: int) -> Iterator[Record]:
    for path, prompt in oasst_prompts(m):
        instruction, given = split_given(prompt)
        label, task = rule_label(instruction, given, "", False)
        yield make(prompt, label, task, OASST_REPO, path, "prompt", "en", f"oasst:{digest(prompt)}", prompt)


# Dolly-15k in Japanese: human-written instructions with a task category, which decides the label.
DOLLY_LABELS: dict[str, tuple[str, str]] = {
    "closed_qa": ("local", "extraction"),
    "information_extraction": ("local", "extraction"),
    "summarization": ("local", "summarization"),
    "classification": ("local", "classification"),
    "open_qa": ("frontier", "general"),
    "general_qa": ("frontier", "general"),
    "brainstorming": ("frontier", "planning"),
    "creative_writing": ("frontier", "writing"),
}
DOLLY_PER_CATEGORY = 200


def dolly_ja_records(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, folder = "kunishou/databricks-dolly-15k-ja", "data"
    rng = rng_for(seed, "dolly-ja")
    by_category: dict[str, list[tuple[str, dict]]] = {}
    for name, text in m.texts(repo, folder):
        for line in text.splitlines():
            if line.strip():
                row = orjson.loads(line)
                by_category.setdefault(row["category"], []).append((name, row))
    for category in sorted(by_category):
        label, task = DOLLY_LABELS[category]
        for name, row in sample(by_category[category], DOLLY_PER_CATEGORY, rng):
            prompt = join_instruction(row["instruction"], row.get("input", ""), rng)
            path = f"{folder}/{name}"
            yield make(prompt, label, task, repo, path, category, "ja", f"dolly_ja:{digest(prompt)}", row["index"])


# --------------------------------------------------------- composed: a public text + an instruction of ours
#
# Without these, every long prompt in the corpus is local (T0 puts a whole article before a narrow question) and
# every non-English European prompt is local (xSID, SIB-200): a learned router would route by length or language.
# Here the given text is public (news articles from T0's CNN/DailyMail and XSum templates, GPTeacher code answers,
# SIB-200 sentences) and the instruction is ours: open-ended (an essay, a plan, an analysis, a port) -> frontier,
# or, for the SIB sentences, also narrow (translate it, list its names) -> local. The instruction alone decides the
# label. Split groups are the templates (English) and the languages (SIB).

ARTICLE_TEMPLATES: list[str] = [
    "Write a detailed op-ed (about 800 words) responding to the article below and arguing for the opposite "
    "position.\n\n{ctx}",
    "{ctx}\n\nBased on this, design a week-long lesson plan for high-school students, with goals, activities and "
    "an assessment for each day.",
    "Critically analyse the following text: identify its implicit assumptions, weigh the evidence, and propose "
    "three counterarguments with reasoning.\n\n{ctx}",
    "Here is a news story:\n{ctx}\n\nWrite a short fictional story (at least five paragraphs) told from the "
    "perspective of one of the people involved.",
    "{ctx}\n\nWhat are the likely second-order consequences of these events over the next ten years? Reason step "
    "by step through the economic, political and social angles.",
    "Using the passage below as background, draft a project proposal with milestones, risks and a budget outline."
    "\n\n{ctx}",
    "Turn the following text into the opening scene of a screenplay, with dialogue and stage directions.\n\n{ctx}",
    "Read this and then write a persuasive five-minute speech for a city council meeting that uses its facts.\n\n{ctx}",
]
CODE_TEMPLATES: list[str] = [
    "Refactor this code for readability and performance, explain every change, and add unit tests:\n```\n{ctx}\n```",
    "```\n{ctx}\n```\nPort this to Rust, keeping the behaviour identical, and explain your ownership decisions.",
    "Find the bugs and unhandled edge cases in the following code, then give a corrected version and explain each "
    "fix.\n\n{ctx}",
    "Explain step by step what this code does, what its time complexity is, and how it could be made faster:\n{ctx}",
    "{ctx}\n\nExtend this into a small command-line tool with argument parsing, error handling, logging and tests.",
]
# Open-ended requests written in the sentence's language: an essay, a plan, an argued opinion.
NATIVE_OPEN_TEMPLATES: dict[str, list[str]] = {
    "de": [
        "Schreibe einen ausführlichen Essay (mindestens 600 Wörter), der von diesem Satz ausgeht und ihn "
        "kritisch diskutiert:\n\n{ctx}",
        "{ctx}\n\nEntwirf auf dieser Grundlage einen detaillierten Projektplan mit Zielen, Meilensteinen und Risiken.",
    ],
    "fr": [
        "Rédige un essai argumenté (au moins 600 mots) à partir de cette phrase, en examinant les arguments pour "
        "et contre :\n\n{ctx}",
        "{ctx}\n\nÀ partir de cela, élabore un plan de cours détaillé sur une "
        "semaine, avec objectifs, activités et évaluation.",
    ],
    "es": [
        "Escribe un ensayo detallado (al menos 600 palabras) que parta de esta frase y la analice críticamente:"
        "\n\n{ctx}",
        "{ctx}\n\nCon base en esto, diseña un plan de proyecto con objetivos, hitos, riesgos y presupuesto.",
    ],
    "it": [
        "Scrivi un saggio argomentativo (almeno 600 parole) partendo da questa frase:\n\n{ctx}",
        "{ctx}\n\nSulla base di questo, progetta un piano dettagliato con obiettivi, tappe e rischi.",
    ],
    "pt": [
        "Escreva um ensaio detalhado (pelo menos 600 palavras) a partir desta frase, discutindo-a criticamente:"
        "\n\n{ctx}",
        "{ctx}\n\nCom base nisso, elabore um plano de projeto com metas, etapas e riscos.",
    ],
    "nl": [
        "Schrijf een uitgebreid betoog (minstens 600 woorden) dat vertrekt vanuit deze zin:\n\n{ctx}",
        "{ctx}\n\nOntwerp op basis hiervan een gedetailleerd projectplan met doelen, mijlpalen en risico's.",
    ],
    "ru": [
        "Напиши подробное эссе (не меньше 600 слов), отталкиваясь от этого предложения и критически его "
        "обсуждая:\n\n{ctx}",
        "{ctx}\n\nНа основе этого составь подробный план проекта с целями, этапами и рисками.",
    ],
    "pl": [
        "Napisz szczegółowy esej (co najmniej 600 słów), wychodząc od tego zdania:\n\n{ctx}",
        "{ctx}\n\nNa tej podstawie opracuj szczegółowy plan projektu z celami, etapami i ryzykami.",
    ],
    "tr": [
        "Bu cümleden yola çıkarak ayrıntılı bir deneme yaz (en az 600 kelime) ve eleştirel olarak tartış:\n\n{ctx}",
        "{ctx}\n\nBuna dayanarak hedefler, aşamalar ve risklerle ayrıntılı bir proje planı hazırla.",
    ],
    "zh": [
        "以这句话为出发点，写一篇不少于800字的议论文，并进行批判性分析：\n\n{ctx}",
        "{ctx}\n\n请据此制定一份详细的项目计划，包括目标、里程碑和风险。",
    ],
    "ja": [
        "この文を出発点として、批判的に論じる800字以上の小論文を書いてください。\n\n{ctx}",
        "{ctx}\n\nこれをもとに、目標・マイルストーン・リスクを含む詳細なプロジェクト計画を立ててください。",
    ],
    "ko": [
        "이 문장을 출발점으로 삼아 비판적으로 논하는 600단어 이상의 에세이를 써 주세요.\n\n{ctx}",
        "{ctx}\n\n이를 바탕으로 목표, 단계, 위험 요소를 포함한 상세한 프로젝트 계획을 세워 주세요.",
    ],
    "vi": [
        "Hãy viết một bài luận chi tiết (ít nhất 600 từ) xuất phát từ câu này và phân tích nó một cách phản biện:"
        "\n\n{ctx}",
        "{ctx}\n\nDựa vào đó, hãy lập một kế hoạch dự án chi tiết với mục tiêu, các mốc và rủi ro.",
    ],
    "id": [
        "Tulislah esai yang mendalam (minimal 600 kata) yang berangkat dari kalimat ini:\n\n{ctx}",
        "{ctx}\n\nBerdasarkan hal ini, susun rencana proyek terperinci dengan tujuan, tahapan, dan risiko.",
    ],
}
# Narrow requests in the same languages, over the same sentences: translate one sentence, pull out its names and
# numbers. With NATIVE_OPEN_TEMPLATES this makes the instruction, not the language, decide the label.
NATIVE_NARROW_TEMPLATES: dict[str, list[tuple[str, str]]] = {
    "de": [
        ("Übersetze diesen Satz ins Englische:\n{ctx}", "writing"),
        ("Nenne alle Personen, Orte und Zahlen, die in diesem Satz vorkommen:\n{ctx}", "extraction"),
    ],
    "fr": [
        ("Traduis cette phrase en anglais :\n{ctx}", "writing"),
        ("Liste toutes les personnes, lieux et nombres mentionnés dans cette phrase :\n{ctx}", "extraction"),
    ],
    "es": [
        ("Traduce esta frase al inglés:\n{ctx}", "writing"),
        ("Enumera todas las personas, lugares y cifras que aparecen en esta frase:\n{ctx}", "extraction"),
    ],
    "it": [
        ("Traduci questa frase in inglese:\n{ctx}", "writing"),
        ("Elenca tutte le persone, i luoghi e i numeri citati in questa frase:\n{ctx}", "extraction"),
    ],
    "pt": [
        ("Traduza esta frase para o inglês:\n{ctx}", "writing"),
        ("Liste todas as pessoas, lugares e números mencionados nesta frase:\n{ctx}", "extraction"),
    ],
    "nl": [
        ("Vertaal deze zin naar het Engels:\n{ctx}", "writing"),
        ("Noem alle personen, plaatsen en getallen die in deze zin voorkomen:\n{ctx}", "extraction"),
    ],
    "ru": [
        ("Переведи это предложение на английский:\n{ctx}", "writing"),
        ("Перечисли всех людей, места и числа, упомянутые в этом предложении:\n{ctx}", "extraction"),
    ],
    "pl": [
        ("Przetłumacz to zdanie na angielski:\n{ctx}", "writing"),
        ("Wypisz wszystkie osoby, miejsca i liczby wymienione w tym zdaniu:\n{ctx}", "extraction"),
    ],
    "tr": [
        ("Bu cümleyi İngilizceye çevir:\n{ctx}", "writing"),
        ("Bu cümlede geçen tüm kişileri, yerleri ve sayıları listele:\n{ctx}", "extraction"),
    ],
    "zh": [
        ("把这句话翻译成英文：\n{ctx}", "writing"),
        ("提取这句话中出现的所有人名、地名和数字：\n{ctx}", "extraction"),
    ],
    "ja": [
        ("この文を英語に翻訳してください：\n{ctx}", "writing"),
        ("この文に出てくる人名・地名・数字をすべて抜き出してください：\n{ctx}", "extraction"),
    ],
    "ko": [
        ("이 문장을 영어로 번역해 주세요:\n{ctx}", "writing"),
        ("이 문장에 나오는 사람, 장소, 숫자를 모두 뽑아 주세요:\n{ctx}", "extraction"),
    ],
    "vi": [
        ("Dịch câu này sang tiếng Anh:\n{ctx}", "writing"),
        ("Liệt kê tất cả tên người, địa danh và con số xuất hiện trong câu này:\n{ctx}", "extraction"),
    ],
    "id": [
        ("Terjemahkan kalimat ini ke dalam bahasa Inggris:\n{ctx}", "writing"),
        ("Sebutkan semua nama orang, tempat, dan angka yang muncul dalam kalimat ini:\n{ctx}", "extraction"),
    ],
}
ARTICLE_SOURCES = [  # (T0 template file, prefix to strip, suffix to strip)
    ("cnn_dailymail_3_0_0_news_summary.jsonl", "Summarise the article:\n\n", ""),
    ("xsum_DOC_tldr.jsonl", "", "\n\nTL;DR:"),
]


def t0_articles(m: Mirrors) -> list[str]:
    articles = []
    for name, prefix, suffix in ARTICLE_SOURCES:
        for row in m.jsonl(T0_REPO, f"{T0_DIR}/{name}"):
            text = row["prompt"].strip()
            if text.startswith(prefix.strip()) and text.endswith(suffix.strip()):
                articles.append(text.removeprefix(prefix.strip()).removesuffix(suffix.strip()).strip())
    return articles


def composed_article_records(m: Mirrors, seed: int, n: int = 500) -> Iterator[Record]:
    rng = rng_for(seed, "composed:articles")
    path = f"{T0_DIR}/{{{','.join(name for name, _, _ in ARTICLE_SOURCES)}}}"
    for i, article in enumerate(sample(t0_articles(m), n, rng)):
        t = rng.randrange(len(ARTICLE_TEMPLATES))
        prompt = ARTICLE_TEMPLATES[t].format(ctx=article)
        task = ("writing", "planning", "reasoning", "writing", "reasoning", "planning", "writing", "writing")[t]
        yield make(
            prompt,
            "frontier",
            task,
            T0_REPO,
            path,
            f"composed/article-template{t}",
            "en",
            f"composed_article:t{t}",
            str(i),
        )


# Extraction with an output format over a whole article: the same articles as above with a narrow instruction
# (pull fields out, count, list, return JSON / CSV / a table) are local. Without these, a long article with a
# detailed instruction reads as open-ended. Added by the lead after a first report run: the MT-bench extraction
# and self-instruct report sets are therefore not fully blind any more (see RESULTS.md).
ARTICLE_EXTRACT_TEMPLATES: list[str] = [
    "Extract every person and organisation named in the article below and return them as a JSON object with the "
    'keys "people" and "organisations".\n\n{ctx}',
    "{ctx}\n\nFrom the text above, list all dates and numbers with what each refers to, as a two-column CSV "
    "(value,meaning).",
    "Read the article and fill in this template, one line each: Where:, When:, Who:, What happened:\n\n{ctx}",
    "Return a JSON array of the places mentioned in this news story, in the order they appear.\n{ctx}",
    "{ctx}\n\nWhich of these topics does the article cover: politics, business, sports, science, health, crime, "
    "entertainment? Answer with the matching labels only, comma-separated.",
    "Count how many times each named person is mentioned in the text below and present the result as a table with "
    "columns name and mentions.\n\n{ctx}",
    "Pull out the direct quotes in this article and who said each one, formatted as JSON lines "
    '{{"speaker": ..., "quote": ...}}.\n\n{ctx}',
    "{ctx}\n\nIdentify the main event, the location and the date in the article above. Reply in the format "
    "event | location | date.",
]


def composed_extract_records(m: Mirrors, seed: int, n: int = 400) -> Iterator[Record]:
    rng = rng_for(seed, "composed:extract")
    path = f"{T0_DIR}/{{{','.join(name for name, _, _ in ARTICLE_SOURCES)}}}"
    for i, article in enumerate(sample(t0_articles(m), n, rng)):
        t = rng.randrange(len(ARTICLE_EXTRACT_TEMPLATES))
        task = "classification" if t == 4 else "extraction"
        prompt = ARTICLE_EXTRACT_TEMPLATES[t].format(ctx=article)
        tag, group = f"composed/extract-template{t}", f"composed_extract:t{t}"
        yield make(prompt, "local", task, T0_REPO, path, tag, "en", group, str(i))


def composed_code_records(m: Mirrors, seed: int, n: int = 400) -> Iterator[Record]:
    repo, path = "teknium1/GPTeacher", "Codegen/codegen-instruct.json"
    rng = rng_for(seed, "composed:code")
    answers = [r["response"] for r in json.loads(m.text(repo, path)) if r.get("response", "").count("\n") >= 4]
    for i, code in enumerate(sample(answers, n, rng)):
        t = rng.randrange(len(CODE_TEMPLATES))
        prompt = CODE_TEMPLATES[t].format(ctx=code.strip())
        yield make(
            prompt, "frontier", "code", repo, path, f"composed/code-template{t}", "en", f"composed_code:t{t}", str(i)
        )


def composed_native_records(m: Mirrors, seed: int, per_lang: int = 25) -> Iterator[Record]:
    """Per language: open-ended (frontier) and narrow (local) requests written around SIB-200 sentences."""
    repo = "dadelani/sib-200"
    for code, lang in sorted(SIB_LANGS.items()):
        if lang not in NATIVE_OPEN_TEMPLATES:
            continue
        path = f"{SIB_DIR}/{code}/train.tsv"
        rng = rng_for(seed, f"composed:sib:{code}")
        rows = [r["text"] for r in csv.DictReader(io.StringIO(m.text(repo, path)), delimiter="\t")]
        chosen = sample(rows, 2 * per_lang, rng)
        # same groups as the SIB classification prompts: a held-out language is held out for all three kinds
        for i, text in enumerate(chosen[:per_lang]):
            t = rng.randrange(len(NATIVE_OPEN_TEMPLATES[lang]))
            prompt = NATIVE_OPEN_TEMPLATES[lang][t].format(ctx=text)
            tag = f"composed/{code}/open-template{t}"
            yield make(prompt, "frontier", ("writing", "planning")[t], repo, path, tag, lang, f"sib:{lang}", str(i))
        for i, text in enumerate(chosen[per_lang:]):
            t = rng.randrange(len(NATIVE_NARROW_TEMPLATES[lang]))
            template, task = NATIVE_NARROW_TEMPLATES[lang][t]
            tag = f"composed/{code}/narrow-template{t}"
            yield make(template.format(ctx=text), "local", task, repo, path, tag, lang, f"sib:{lang}", str(i))


# Short narrow requests: real traffic sends "Translate to French: ..." or "Extract the dates: ..." around one
# sentence, not only T0's long passages. Without these, a short prompt reads as open-ended. The sentences are
# SIB-200's English (FLORES-200) text; the instructions are ours; each template is a split group.
SHORT_NARROW_TEMPLATES: list[tuple[str, str]] = [
    ("Extract the dates mentioned in: {ctx}", "extraction"),
    ("List the people, places and organisations named in this sentence:\n{ctx}", "extraction"),
    ("Return every number in this text as a JSON array.\n{ctx}", "extraction"),
    ("Translate to French: {ctx}", "general"),
    ("Translate this sentence into German:\n{ctx}", "general"),
    ("Fix the grammar and spelling, change nothing else: {ctx}", "general"),
    ("Summarize in at most ten words: {ctx}", "summarization"),
    ("Give this sentence a short headline.\n\n{ctx}", "summarization"),
    ("Sentiment (positive, negative or neutral)? {ctx}", "classification"),
    ("Does this sentence mention a country? Answer yes or no.\n{ctx}", "classification"),
    ("Topic of this sentence (science, politics, sports, travel, health, entertainment, geography): {ctx}",
     "classification"),
    ("Rewrite in plain English for a ten-year-old, one sentence only: {ctx}", "general"),
    ("{ctx}\n\nIs the sentence above a fact, an opinion or a question? One word.", "classification"),
]  # fmt: skip


def composed_short_records(m: Mirrors, seed: int, n: int = 650) -> Iterator[Record]:
    repo, path = "dadelani/sib-200", f"{SIB_DIR}/eng_Latn/train.tsv"
    rng = rng_for(seed, "composed:short")
    rows = [r["text"] for r in csv.DictReader(io.StringIO(m.text(repo, path)), delimiter="\t")]
    for i, text in enumerate(sample(rows, n, rng)):
        t = rng.randrange(len(SHORT_NARROW_TEMPLATES))
        template, task = SHORT_NARROW_TEMPLATES[t]
        tag = f"composed/short-template{t}"
        yield make(template.format(ctx=text), "local", task, repo, path, tag, "en", f"composed_short:t{t}", str(i))


# System design interview questions ("Design a web crawler"), English and Simplified Chinese: short prompts that
# need a frontier model (planning), the counterweight to the short narrow requests above.
SYSTEM_DESIGN_FILES = {"en": ("README.md", "| Design "), "zh": ("README-zh-Hans.md", "| 设计")}


def system_design_records(m: Mirrors, seed: int) -> Iterator[Record]:
    repo = "donnemartin/system-design-primer"
    for lang, (path, prefix) in SYSTEM_DESIGN_FILES.items():
        for i, line in enumerate(m.text(repo, path).splitlines()):
            if not line.startswith(prefix):
                continue
            question = line.split("|")[1].strip()
            group = f"sysdesign:{lang}"
            yield make(question, "frontier", "planning", repo, path, "design-questions", lang, group, str(i))


# ------------------------------------------------------------------------------- multilingual maths (MGSM train)

MGSM_DIR = "mgsm"


def mgsm_exemplars(source: str) -> dict[str, dict[str, dict[str, str]]]:
    """MGSM_EXEMPLARS in exemplars.py is a plain dict literal: parse it without executing the module."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "MGSM_EXEMPLARS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit("MGSM_EXEMPLARS not found in mgsm/exemplars.py")


def strip_question_prefix(q: str) -> str:
    """Exemplars start with a translated 'Question:' label; a user would not type it."""
    head, sep, rest = q.partition(":")
    if not sep:
        head, sep, rest = q.partition("：")
    return rest.strip() if sep and len(head) <= 20 else q.strip()


def mgsm_train_records(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "google-research/url-nlp", f"{MGSM_DIR}/exemplars.py"
    for lang, shots in sorted(mgsm_exemplars(m.text(repo, path)).items()):
        for k, shot in sorted(shots.items()):
            q = strip_question_prefix(shot["q"])
            yield make(q, "frontier", "reasoning", repo, path, f"exemplars/{lang}", lang, f"mgsm:{lang}", k)


# ------------------------------------------------------------------------------------------------- report sets


def arena_hard_report(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "lm-sys/arena-hard-auto", "data/arena-hard-v0.1/question.jsonl"
    for row in m.jsonl(repo, path):
        prompt = row["turns"][0]["content"]
        yield make(
            prompt,
            "frontier",
            arena_task(row.get("cluster", "")),
            repo,
            path,
            row.get("cluster", ""),
            "en",
            "arena-hard",
            row["question_id"],
        )


def arena_task(cluster: str) -> str:
    """A rough task tag from the arena-hard topic cluster name (the label is frontier regardless)."""
    return first_match(cluster, OPEN_CUES) or "general"


MT_BENCH_TASKS = {
    "writing": "writing",
    "roleplay": "writing",
    "reasoning": "reasoning",
    "math": "reasoning",
    "coding": "code",
    "extraction": "extraction",
    "stem": "general",
    "humanities": "general",
}
VICUNA_TASKS = {
    "generic": "general",
    "knowledge": "general",
    "roleplay": "writing",
    "common-sense": "reasoning",
    "fermi": "reasoning",
    "counterfactual": "reasoning",
    "coding": "code",
    "math": "reasoning",
    "writing": "writing",
}


def mt_bench_report(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "lm-sys/FastChat", "fastchat/llm_judge/data/mt_bench/question.jsonl"
    for row in m.jsonl(repo, path):
        cat = row["category"]
        label = "local" if cat == "extraction" else "frontier"
        yield make(
            row["turns"][0], label, MT_BENCH_TASKS[cat], repo, path, cat, "en", "mt-bench", str(row["question_id"])
        )


def vicuna_report(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "lm-sys/FastChat", "fastchat/llm_judge/data/vicuna_bench/question.jsonl"
    for row in m.jsonl(repo, path):
        cat = row["category"]
        yield make(
            row["turns"][0], "frontier", VICUNA_TASKS[cat], repo, path, cat, "en", "vicuna", str(row["question_id"])
        )


def user_oriented_report(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "yizhongw/self-instruct", "human_eval/user_oriented_instructions.jsonl"
    yield from seed_task_records(m, seed, repo, path, "en", "user_oriented")


REPORT_CLASSIFY_TEMPLATES: list[str] = [
    "What is the category of this banking customer query? Possible categories: {labels}\n\nQuery: {text}",
    "Assign one of the following labels to the message and output only the label.\n{labels}\n\nMessage:\n{text}",
    "{text}\n\nWhich of these best describes the message above? {labels}",
    "Choose the correct intent label for the customer text.\nText: {text}\nLabel set: {labels}\nLabel:",
    "Please classify the support ticket below. Valid classes are {labels}.\n\nTicket: {text}",
    "Output a single word or label from [{labels}] that matches this request: {text}",
]


def banking77_report(m: Mirrors, seed: int, n: int = 500) -> Iterator[Record]:
    repo, path = "PolyAI-LDN/task-specific-datasets", "banking_data/test.csv"
    rng = rng_for(seed, "banking77")
    rows = [(r["text"], r["category"]) for r in csv.DictReader(io.StringIO(m.text(repo, path)))]
    pool = sorted({c for _, c in rows})
    for text, category in sample(rows, n, rng):
        t = rng.randrange(len(REPORT_CLASSIFY_TEMPLATES))
        labels = pool if rng.random() < 0.2 else choose_labels(category, pool, rng, 4, 25)
        prompt = classify_prompt(REPORT_CLASSIFY_TEMPLATES[t], text, labels, rng)
        yield make(prompt, "local", "classification", repo, path, f"test/template{t}", "en", "banking77", text)


def mgsm_test_report(m: Mirrors, seed: int, per_lang: int = 100) -> Iterator[Record]:
    repo = "google-research/url-nlp"
    for name in m.listdir(repo, MGSM_DIR):
        if not name.startswith("mgsm_") or name == "mgsm_en.tsv":
            continue
        lang = name.removeprefix("mgsm_").removesuffix(".tsv")
        rows = [line.split("\t")[0] for line in m.text(repo, f"{MGSM_DIR}/{name}").splitlines() if line.strip()]
        for q in sample(rows, per_lang, rng_for(seed, f"mgsm-test:{lang}")):
            yield make(q, "frontier", "reasoning", repo, f"{MGSM_DIR}/{name}", f"test/{lang}", lang, "mgsm-test", q)


BELLE_LOCAL = {
    "classification": "classification",
    "extract": "extraction",
    "closed qa": "extraction",
    "summarization": "summarization",
    "rewrite": "writing",
}
BELLE_EXPAND = re.compile(r"扩写|续写|扩展|扩充")
BELLE_FRONTIER = {
    "open qa": "general",
    "brainstorming": "planning",
    "generation": "writing",
    "math": "reasoning",
    "code": "code",
}


def belle_eval_report(m: Mirrors, seed: int) -> Iterator[Record]:
    repo, path = "LianjiaTech/BELLE", "eval/eval_set.json"
    for i, row in enumerate(m.jsonl(repo, path)):
        cat = row["class"].replace("\xa0", " ")
        label, task = ("local", BELLE_LOCAL[cat]) if cat in BELLE_LOCAL else ("frontier", BELLE_FRONTIER[cat])
        if cat == "rewrite" and BELLE_EXPAND.search(row["question"]):
            label, task = "frontier", "writing"  # "expand / continue this text" is open-ended generation
        yield make(row["question"], label, task, repo, path, cat, "zh", "belle-eval", str(i))


# ------------------------------------------------------------------------------------------------ assembly

TRAIN_SOURCES: dict[str, Callable[[Mirrors, int], Iterable[Record]]] = {
    "t0": t0_records,
    "gsm8k": gsm8k_records,
    "gpteacher": gpteacher_records,
    "self_instruct_seed": self_instruct_seed_records,
    "belle_zh_seed": belle_seed_records,
    "clinc": clinc_records,
    "xsid": xsid_records,
    "sib200": sib_records,
    "oasst": oasst_records,
    "dolly_ja": dolly_ja_records,
    "composed_articles": composed_article_records,
    "composed_code": composed_code_records,
    "composed_native": composed_native_records,
    "composed_short": composed_short_records,
    "composed_extract": composed_extract_records,
    "system_design": system_design_records,
    "mgsm_train": mgsm_train_records,
}
REPORT_SOURCES: dict[str, Callable[[Mirrors, int], Iterable[Record]]] = {
    "arena_hard": arena_hard_report,
    "mt_bench": mt_bench_report,
    "vicuna": vicuna_report,
    "self_instruct_user_oriented": user_oriented_report,
    "banking77_inline_labels": banking77_report,
    "mgsm_test": mgsm_test_report,
    "belle_eval_zh": belle_eval_report,
}


def source_key(r: Record) -> str:
    return source_key_of(r.group)


def heldout_groups(pool: list[Record], seed: int) -> set[str]:
    """Per source, walk its groups in hash order and hold out whole groups until ~HELDOUT_PERCENT of its records.

    Hash order makes the choice deterministic and content-blind; filling per source keeps every source (and so the
    label balance) near the same share even when groups differ in size (T0 families, xSID languages).
    """
    sizes: dict[str, Counter[str]] = {}
    for r in pool:
        sizes.setdefault(source_key(r), Counter())[r.group] += 1
    held: set[str] = set()
    for counts in sizes.values():
        target, taken = sum(counts.values()) * HELDOUT_PERCENT / 100, 0
        for group in sorted(counts, key=lambda g: hashlib.sha256(f"split:{seed}:{g}".encode()).digest()):
            if taken + counts[group] / 2 > target:
                continue  # would overshoot: try smaller groups later in the order
            held.add(group)
            taken += counts[group]
    return held


def dedupe(records: Iterable[Record]) -> list[Record]:
    seen: set[str] = set()
    out = []
    for r in records:
        if r.prompt and r.prompt not in seen:
            seen.add(r.prompt)
            out.append(r)
    return out


def write_jsonl(path: Path, records: list[Record]) -> None:
    with path.open("wb") as f:
        for r in records:
            f.write(orjson.dumps(asdict(r)) + b"\n")


def summary(name: str, records: list[Record]) -> list[str]:
    labels = Counter(r.label for r in records)
    by_source = Counter((source_key(r), r.source.split(":")[0], r.label) for r in records)
    lines = [f"{name}: {len(records)} records, local {labels['local']}, frontier {labels['frontier']}"]
    lines += [f"    {n:6d}  {label:8s}  {key:12s} {repo}" for (key, repo, label), n in sorted(by_source.items())]
    return lines


def markdown_counts(files: dict[str, list[Record]]) -> str:
    """Counts per file, source and label, as the Markdown table pasted into ROUTING_DATA_CARD.md."""
    lines = ["| file | source | local | frontier |", "|---|---|---:|---:|"]
    for name, records in files.items():
        per = Counter((source_key(r), r.label) for r in records)
        for key in sorted({k for k, _ in per}):
            lines.append(f"| {name} | {key} | {per[key, 'local']} | {per[key, 'frontier']} |")
        total = Counter(r.label for r in records)
        lines.append(f"| **{name}** | **all** | **{total['local']}** | **{total['frontier']}** |")
    return "\n".join(lines) + "\n"


def build(mirrors: Path, out: Path, seed: int) -> None:
    m = Mirrors(mirrors)
    out.mkdir(parents=True, exist_ok=True)
    pool = dedupe(r for fn in TRAIN_SOURCES.values() for r in fn(m, seed))
    held = heldout_groups(pool, seed)
    train = [r for r in pool if r.group not in held]
    heldout = [r for r in pool if r.group in held]
    rng_for(seed, "order:train").shuffle(train)
    rng_for(seed, "order:heldout").shuffle(heldout)
    write_jsonl(out / "train.jsonl", train)
    write_jsonl(out / "heldout.jsonl", heldout)
    files = {"train": train, "heldout": heldout}
    train_prompts = {r.prompt for r in pool}
    for name, fn in REPORT_SOURCES.items():
        report = [r for r in dedupe(fn(m, seed)) if r.prompt not in train_prompts]
        write_jsonl(out / f"report_{name}.jsonl", report)
        files[f"report_{name}"] = report
    (out / "counts.md").write_text(markdown_counts(files))
    print("\n".join(line for name, records in files.items() for line in summary(name, records)))
    named = sorted(g for g in held if source_key_of(g) in ("t0", "clinc", "xsid", "sib", "mgsm"))
    print("held-out groups (T0 families, clinc templates, languages):", ", ".join(named))


def source_key_of(group: str) -> str:
    return group.split(":")[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"), help="root of the fetched bare mirrors")
    ap.add_argument("--out", type=Path, default=Path("/work/shared/routing"), help="output directory")
    ap.add_argument("--seed", type=int, default=14)
    args = ap.parse_args(argv)
    build(args.mirrors, args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
