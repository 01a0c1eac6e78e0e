"""The lexical guard: what sentence embeddings cannot see, checked before a semantic hit is served.

Small sentence embeddings put minimal pairs within a hair of each other: "What is 17 times 23?" / "… 24?",
"Is it safe …" / "Is it unsafe …", "Book a table for two at 8pm tonight" / "… tomorrow", "Does the Earth orbit
the Sun?" / "Does the Sun orbit the Earth?" all score 0.95-0.99 with all-MiniLM-L6-v2 (benchmarks/cache_quality.py
measures it). A similarity threshold alone therefore serves wrong answers, so a candidate must also pass this:

1. anchors agree: the same numbers (digits with their units, "6pm" ≠ "6am"; number words read as digits),
   the same count of negations ("not", "never", "n't", "without", …), the same quoted text, and every name
   (a capitalised word inside a sentence, or an all-caps word) of either prompt appears in the other;
2. content words align: after dropping filler (articles, auxiliaries, "please", "can you", …) and folding case,
   plurals and -ise/-ize, one prompt's content words must be the other's in the same order, with at most
   `max_extra` words added on one side. A paraphrase reorders filler or adds a word ("Which city is the capital
   of France?"); a near miss swaps one word for another (good/bad, rows/columns, Earth/Sun), which never passes.

So the semantic tier catches rewordings of the same request, not different requests that look alike. Cheap:
one regex pass per prompt, run only on candidates above the similarity threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*[^\W\d_]*%?|[^\W\d_]+(?:['’][^\W\d_]+)*")
_QUOTED = re.compile(r"\"([^\"]{1,200})\"|“([^”]{1,200})”|(?<!\w)'([^']{1,200})'(?!\w)")
_SENTENCE_END = frozenset(".!?:;\n")

_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty"
)
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_SMALL_NUMBERS.split())}
_NUMBER_WORDS.update(
    thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80", ninety="90", hundred="100",
    thousand="1000", million="1000000", billion="1000000000", half="0.5", dozen="12", first="1st", second="2nd",
    third="3rd", fourth="4th", fifth="5th", once="1x", twice="2x", double="2x", triple="3x",
)  # fmt: skip
_NEGATION_WORDS = (
    "not no never none nothing nobody nowhere neither nor without cannot cant dont doesnt didnt isnt arent wasnt "
    "werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt neednt except unless lack lacks"
)
_NEGATIONS = frozenset(_NEGATION_WORDS.split())
# Words a rewording adds or drops without changing the request. Prepositions, pronouns, wh-words, tense and most
# modals stay content: "from London to Paris", "my account" vs "your account", "why" vs "when", "is" vs "was".
_FILLER_WORDS = "a an the is are am be been being do does has have there please kindly just can could would"
_FILLER = frozenset(_FILLER_WORDS.split())
# Interchangeable function words, folded to one spelling.
_SAME = {"which": "what", "whether": "if", "into": "to", "onto": "on", "were": "was", "did": "was", "had": "was"}
# A polite opening says nothing about the request: "Can you please explain X?" asks for "Explain X".
_POLITE = re.compile(r"^\W*(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?|please\s+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Anchors:
    numbers: frozenset[str]
    negations: int
    names: frozenset[str]  # folded
    quoted: frozenset[str]  # lower case
    words: frozenset[str]  # every word, folded (to find the other prompt's names in)
    content: tuple[str, ...]  # content words, folded, in order


def _fold(word: str) -> str:
    """Plural and British/American spelling folded away: "summarises" → "summarize"."""
    if word in _SAME:
        return _SAME[word]
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        word = word[:-1]
    for british, american in (("ise", "ize"), ("ised", "ized"), ("ising", "izing"), ("isation", "ization")):
        if word.endswith(british) and len(word) > len(british) + 3:
            return word[: -len(british)] + american
    return word


def anchors(text: str) -> Anchors:
    numbers: set[str] = set()
    names: set[str] = set()
    words: set[str] = set()
    content: list[str] = []
    negations = 0
    text = _POLITE.sub("", text)
    for match in _TOKEN.finditer(text):
        token = match.group()
        lower = token.lower().replace("’", "'")
        if token[0].isdigit():
            number = lower.replace(",", "")
            numbers.add(number)
            words.add(number)
            content.append(number)
            continue
        stem, _, clitic = lower.partition("'")
        folded = _fold(stem)
        words.add(folded)
        if clitic == "t" or stem in _NEGATIONS:  # "isn't", "don't", "not", "never", …
            negations += 1
            continue
        if stem in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[stem])
            content.append(_NUMBER_WORDS[stem])
            continue
        if stem in _FILLER:
            continue
        if token[0].isupper() and stem != "i" and ((len(token) > 1 and token.isupper()) or not _opens(text, match)):
            names.add(folded)
        content.append(folded)
    quoted = {next(g for g in m.groups() if g).strip().lower() for m in _QUOTED.finditer(text)}
    return Anchors(frozenset(numbers), negations, frozenset(names), frozenset(quoted), frozenset(words), tuple(content))


def _opens(text: str, match: re.Match[str]) -> bool:
    """Whether the token starts a sentence (then its capital letter says nothing)."""
    i = match.start() - 1
    while i >= 0 and text[i] in " \t\"'“(":
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def agree(a: Anchors, b: Anchors, max_extra: int = 0) -> bool:
    """Whether two prompts ask the same thing in other words (symmetric)."""
    if a.numbers != b.numbers or a.negations != b.negations or a.quoted != b.quoted:
        return False
    if not (a.names <= b.words and b.names <= a.words):
        return False
    short, long = sorted((a.content, b.content), key=len)
    if len(long) - len(short) > max_extra:
        return False
    rest = iter(long)
    return all(word in rest for word in short)  # `short` is a subsequence of `long`
