"""The guard: what sentence embeddings cannot see, checked before a semantic hit is served.

Small sentence embeddings put minimal pairs within a hair of each other: "What is 17 times 23?" / "… 24?",
"Is it safe …" / "Is it unsafe …", "Give me 3 bullets" / "… 5 bullets", "Book a table for two" / "… for four"
all score 0.95-0.99 with all-MiniLM-L6-v2. So a candidate above the similarity threshold must also agree on the
details that change the answer; word order, synonyms and filler may differ freely ("What is the capital of
France?" / "Which city is the capital of France?" passes). Two prompts agree when they have

1. the same numbers (digits with their units, "6pm" ≠ "6am"; number words read as digits: "three" = "3");
2. the same number of negations ("not", "never", "n't", "without", …), and the same tense auxiliaries ("was",
   "did", "will", "'ll": "Who is …?" and "Who was …?" have other answers);
3. the same names: every name of one (a capitalised word inside a sentence, an all-caps word, a language name
   such as "french" or "python") appears in the other; two shared names that trade places keep the word before
   each ("flights from London to Paris" / "from Paris to London" fails, "to Paris from London" passes);
4. the same code: fenced or back-quoted spans and code-like tokens (identifiers with `_`, `.` or `()`, operators),
   compared as sets after whitespace folding;
5. the same output constraints: format words ("bullet", "table", "json", "paragraph", "haiku", …) in both or in
   neither, with the same numbers (rule 1: "3 bullets" ≠ "5 bullets");
   the same relative times ("tonight" ≠ "tomorrow", "summer" ≠ "winter"); and no opposites traded: a word one
   prompt has that is the listed opposite ("good"/"bad", "before"/"after", "buy"/"sell") or the un-/in-/il-/dis-
   negation ("legal"/"illegal") of a word only the other has;
6. the same language: a prompt in French does not take an English prompt's answer (script and function words).

What is left to the similarity threshold (and the learned thresholds, thresholds.py): any other changed word
("rows" / "columns", "my" / "your"). The old rule that demanded the same words in the same order refused nearly
every real rewording; a short list of opposites refuses few.

Cheap: one regex pass per prompt (an entry's anchors are computed once), run only on candidates above the
threshold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*[^\W\d_]*%?|[^\W\d_]+(?:['’][^\W\d_]+)*")
_QUOTED = re.compile(r"\"([^\"]{1,200})\"|“([^”]{1,200})”|(?<!\w)'([^']{1,200})'(?!\w)")
_FENCED = re.compile(r"```.*?(?:```|$)|`[^`\n]+`", re.DOTALL)
# Code-like tokens in prose: `os.path.join(`, `max_tokens`, `len()`, `x == y`, `a -> b`, braces.
# Addresses too: an e-mail address or a URL is a detail like a number.
_CODE_TOKEN = re.compile(
    r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|https?://\S+|\b[a-z_]\w*(?:\.[a-z_]\w*)+\(|\b[A-Za-z]\w*_\w+|\b\w+\(\)"
    r"|==|!=|<=|>=|->|=>|&&|\|\||[{};]"
)
_SENTENCE_END = frozenset(".!?;\n")  # not ":": "Extract the age from: Jane Smith …" names Jane

_SMALL_NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty"
)
# "one" is left out: mostly a pronoun ("How can one …?"), and "one example" vs "an example" asks the same; "one" vs
# "two" still differs ({} vs {2}).
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_SMALL_NUMBERS.split()) if w != "one"}
_NUMBER_WORDS.update(
    thirty="30", forty="40", fifty="50", sixty="60", seventy="70", eighty="80", ninety="90", hundred="100",
    thousand="1000", million="1000000", billion="1000000000", half="0.5", dozen="12", first="1st", second="2nd",
    third="3rd", fourth="4th", fifth="5th", once="1x", twice="2x", double="2x", triple="3x", single="1",
)  # fmt: skip
_NEGATION_WORDS = (
    "not no never none nothing nobody nowhere neither nor without cannot cant dont doesnt didnt isnt arent wasnt "
    "werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt neednt except unless lack lacks"
)
_NEGATIONS = frozenset(_NEGATION_WORDS.split())
# Auxiliaries that move a question in time: "Who is the prime minister?" and "Who was …?" have other answers.
_TENSE_OF = dict.fromkeys(("was", "wasn", "were", "weren", "did", "didn"), "past") | dict.fromkeys(
    ("will", "won", "shall"), "future"
)
# Output constraints: a request for a table is not a request for a list.
# Only words that name the shape of an answer; "code", "short" or "list" (a verb too) are everyday question words.
_FORMAT_WORDS = (
    "bullet bulleted numbered table json yaml xml csv markdown html paragraph sentence word haiku poem limerick "
    "sonnet essay tweet outline uppercase lowercase"
)
_FORMATS = frozenset(_FORMAT_WORDS.split())
# Relative times and seasons: "Book a table for tonight" is not "… for tomorrow".
_TIME_TEXT = "today tonight tomorrow yesterday morning afternoon evening weekend weekday summer winter autumn"
_TIME_WORDS = frozenset(_TIME_TEXT.split())
# Opposites a rewording never swaps: one prompt has one side, the other only the other side ("Is coffee good for
# you?" / "… bad …"). A short list of common pairs, not a thesaurus: the threshold handles the rest.
_OPPOSITE_PAIRS = (
    "good:bad best:worst better:worse more:less most:least before:after increase:decrease maximum:minimum max:min "
    "high:low higher:lower highest:lowest large:small larger:smaller largest:smallest big:small cheap:expensive "
    "cheapest:expensive fast:slow faster:slower fastest:slowest safe:dangerous advantage:disadvantage pro:con "
    "benefit:risk positive:negative true:false right:wrong start:stop open:close buy:sell add:remove enable:disable "
    "install:uninstall encrypt:decrypt upload:download import:export male:female man:woman boy:girl men:women "
    "husband:wife son:daughter father:mother brother:sister hot:cold rich:poor old:new young:old first:last "
    "early:late easy:hard easy:difficult love:hate like:dislike win:lose success:failure legal:illegal long:short "
    "longer:shorter open:closed on:off up:down ascending:descending increasing:decreasing increase:reduce "
    "strong:weak stronger:weaker odd:even hard:soft rise:fall rose:fell grow:shrink grew:fell similarity:difference "
    "similar:different synonym:antonym inside:outside push:pull north:south east:west left:right top:bottom "
    "above:below over:under plus:minus add:subtract multiply:divide past:future wet:dry light:dark light:heavy "
    "thin:thick accept:reject allow:deny include:exclude pass:fail beginner:advanced minimum:maximum"
)
_OPPOSITE: dict[str, frozenset[str]] = {}
for _pair in _OPPOSITE_PAIRS.split():
    _x, _y = _pair.split(":")
    _OPPOSITE[_x] = _OPPOSITE.get(_x, frozenset()) | {_y}
    _OPPOSITE[_y] = _OPPOSITE.get(_y, frozenset()) | {_x}
# Negating prefixes: "legal" / "illegal", "possible" / "impossible", "able" / "unable", "agree" / "disagree".
_NEGATING_PREFIXES = ("un", "in", "im", "il", "ir", "dis", "non")
_LANGUAGE_NAMES = (
    "english french german spanish italian portuguese dutch russian chinese mandarin cantonese japanese korean "
    "arabic hindi turkish polish swedish greek hebrew latin python javascript typescript java rust golang ruby php "
    "kotlin swift bash c++ haskell"
)
_LANGUAGES = frozenset(_LANGUAGE_NAMES.split())
# Function words that tell the language of a prompt written in Latin script.
_FUNCTION_WORDS = {
    "en": "the is are what how why which who of and to in for with does do can you my this that",
    "fr": "le la les est sont quel quelle comment pourquoi qui de et pour avec dans une des du vous je ce",
    "de": "der die das ist sind was wie warum welche wer und zu mit für ein eine nicht ich sie auf",
    "es": "el la los las es son qué cómo por porque quién de y para con en una un del usted yo",
    "it": "il lo la gli le è sono che come perché chi di e per con una un del non io",
    "pt": "o a os as é são que como porque quem de e para com em uma um do não eu você",
    "nl": "de het een is zijn wat hoe waarom welke wie en van voor met niet ik je",
}
_LANGUAGE_OF = {lang: frozenset(words.split()) for lang, words in _FUNCTION_WORDS.items()}
# A polite opening says nothing about the request: "Can you please explain X?" asks for "Explain X".
_POLITE = re.compile(r"^\W*(?:(?:can|could|would|will)\s+you\s+(?:please\s+)?|please\s+)", re.IGNORECASE)
_SKIP_BEFORE_NAME = frozenset(["a", "an", "the"])
# Function words: never one side of an adjacent content pair (the swap check).
_FUNCTION_TEXT = (
    "a an the and or but if then so as of to in on at by for with from into onto over under about between through "
    "during before after than that this these those there here it its is are was were be been being am do does did "
    "has have had can could would should will shall may might must i me my we our you your he him his she her they "
    "them their what which who whom whose when where why how whether not no nor also very just some any each every "
    "all both more most such only own same other"
)
_FUNCTION = frozenset(_FUNCTION_TEXT.split())


@dataclass(frozen=True, slots=True)
class Anchors:
    numbers: frozenset[str]
    negations: int
    tenses: frozenset[str]  # "past" (was, did, …) and "future" (will, 'll, …) auxiliaries; present says nothing
    names: frozenset[str]  # folded
    name_context: frozenset[tuple[str, str]]  # (word before, name)
    name_order: tuple[str, ...]  # names in the order of their first appearance
    quoted: frozenset[str]  # lower case
    code: frozenset[str]
    formats: frozenset[str]
    times: frozenset[str]  # "today", "tomorrow", "tonight", "summer", …
    language: str  # "en", "fr", …, a script name ("cyrillic", "cjk", …) or "" when unknown
    words: frozenset[str]  # every word, folded (to find the other prompt's names in)
    pairs: frozenset[tuple[str, str]]  # adjacent content words ("sharp temperament")


def _fold(word: str) -> str:
    """Plural and British/American spelling folded away: "summarises" → "summarize"."""
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
    context: set[tuple[str, str]] = set()
    order: list[str] = []
    words: set[str] = set()
    formats: set[str] = set()
    lowered: list[str] = []
    negations = 0
    tenses: set[str] = set()
    times: set[str] = set()
    code = {" ".join(m.group().strip("`").split()) for m in _FENCED.finditer(text)}
    prose = _FENCED.sub(" ", text)
    code.update(m.group() for m in _CODE_TOKEN.finditer(prose))
    prose = _POLITE.sub("", prose)
    previous = last_content = ""
    pairs: set[tuple[str, str]] = set()
    for match in _TOKEN.finditer(prose):
        token = match.group()
        lower = token.lower().replace("’", "'")
        lowered.append(lower)
        if token[0].isdigit():
            number = lower.replace(",", "")
            numbers.add(number)
            words.add(number)
            if last_content:
                pairs.add((last_content, number))
            previous = last_content = number
            continue
        stem, _, clitic = lower.partition("'")
        folded = _fold(stem)
        words.add(folded)
        if stem in _FUNCTION or clitic:
            last_content = ""
        else:
            if last_content:
                pairs.add((last_content, folded))
            last_content = folded
        if stem in _TENSE_OF or clitic == "ll":
            tenses.add(_TENSE_OF.get(stem, "future"))
        if clitic == "t" or stem in _NEGATIONS:  # "isn't", "don't", "not", "never", …
            negations += 1
            continue
        if stem in _NUMBER_WORDS:
            numbers.add(_NUMBER_WORDS[stem])
        if folded in _FORMATS:
            formats.add(folded)
        if folded in _TIME_WORDS:
            times.add(folded)
        name = stem in _LANGUAGES or (
            token[0].isupper() and stem != "i" and ((len(token) > 1 and token.isupper()) or not _opens(prose, match))
        )
        if name:
            if folded not in names:
                order.append(folded)
            names.add(folded)
            if previous and previous not in names:  # "to Paris": the word that gives the name its role
                context.add((previous, folded))
        if stem not in _SKIP_BEFORE_NAME:
            previous = folded
    quoted = {next(g for g in m.groups() if g).strip().lower() for m in _QUOTED.finditer(prose)}
    return Anchors(
        frozenset(numbers),
        negations,
        frozenset(tenses),
        frozenset(names),
        frozenset(context),
        tuple(order),
        frozenset(quoted),
        frozenset(code),
        frozenset(formats),
        frozenset(times),
        _language(prose, lowered),
        frozenset(words),
        frozenset(pairs),
    )


def _swapped(a: Anchors, b: Anchors) -> bool:
    """Whether two words both prompts have trade places next to a third: "a sharp temperament and strong
    individuality" / "a strong temperament and sharp individuality" (PAWS-style). Moving a phrase whole ("to Paris
    from London") keeps every pair of adjacent content words, so it passes."""
    only_a, only_b = a.pairs - b.pairs, b.pairs - a.pairs
    if not only_a or not only_b:
        return False
    for side, other, mine in ((only_a, only_b, a), (only_b, only_a, b)):
        theirs = b if mine is a else a
        left = {(n, x) for x, n in other}
        right = {(n, y) for n, y in other}
        for x, n in side:  # x before n here; another word before n there, and x is there too (elsewhere)
            if x in theirs.words and any(m == n and y != x and y in mine.words for m, y in left):
                return True
        for n, y in side:
            if y in theirs.words and any(m == n and z != y and z in mine.words for m, z in right):
                return True
    return False


def _opposed(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether a word only one prompt has is the opposite, or the un-/in-/dis- negation, of one only the other has."""
    only_a, only_b = a - b, b - a
    if not only_a or not only_b:
        return False
    for word in only_a:
        if _OPPOSITE.get(word, frozenset()) & only_b:
            return True
        for prefix in _NEGATING_PREFIXES:
            if prefix + word in only_b or (word.startswith(prefix) and word[len(prefix) :] in only_b):
                return True
    return False


def _opens(text: str, match: re.Match[str]) -> bool:
    """Whether the token starts a sentence (then its capital letter says nothing)."""
    i = match.start() - 1
    while i >= 0 and text[i] in " \t\"'“(":
        i -= 1
    return i < 0 or text[i] in _SENTENCE_END


def _language(text: str, lowered: list[str]) -> str:
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return ""
    for name, lo, hi in (("cyrillic", 0x400, 0x4FF), ("greek", 0x370, 0x3FF), ("arabic", 0x600, 0x6FF),
                         ("hebrew", 0x590, 0x5FF), ("devanagari", 0x900, 0x97F), ("hangul", 0xAC00, 0xD7AF),
                         ("kana", 0x3040, 0x30FF), ("cjk", 0x4E00, 0x9FFF)):  # fmt: skip
        if sum(lo <= ord(c) <= hi for c in letters) * 3 >= len(letters):
            return name
    scores = {lang: sum(w in fw for w in lowered) for lang, fw in _LANGUAGE_OF.items()}
    best = max(scores, key=scores.__getitem__)
    ranked = sorted(scores.values(), reverse=True)
    return best if ranked[0] >= 2 and ranked[0] > ranked[1] else ""


def agree(a: Anchors, b: Anchors) -> bool:
    """Whether two prompts ask the same thing in other words (symmetric): word order, synonyms and filler may
    differ; numbers, negation, names, quotes, code, output format and language may not."""
    return not why_not(a, b)


def why_not(a: Anchors, b: Anchors) -> str:
    """The first check two prompts fail, or "" when they agree (for metrics and the benchmark's breakdown)."""
    if a.numbers != b.numbers:
        return "numbers"
    if a.negations != b.negations:
        return "negation"
    if a.tenses != b.tenses:
        return "tense"
    if a.quoted != b.quoted:
        return "quoted"
    if a.code != b.code:
        return "code"
    if a.formats != b.formats:
        return "format"
    if a.times != b.times:
        return "time"
    if _opposed(a.words, b.words):
        return "opposite"
    if a.language and b.language and a.language != b.language:
        return "language"
    if not (a.names <= b.words and b.names <= a.words):
        return "names"
    # Two names that trade places must keep their roles: a word before a name in one prompt is before it in the
    # other too ("the Earth orbits the Sun" / the reverse fails; "from London to Paris" / "to Paris from London"
    # passes). One name, or names in the same order, may take other words ("in Python" / "using Python").
    if _swapped(a, b):
        return "swap"
    return "name-role" if _role_changed(a, b) else ""


def _role_changed(a: Anchors, b: Anchors) -> bool:
    """Two shared names in another order, one of them after another word than before."""
    shared = a.names & b.names
    if len(shared) < 2 or [n for n in a.name_order if n in shared] == [n for n in b.name_order if n in shared]:
        return False
    for side, other in ((a, b), (b, a)):
        before: dict[str, set[str]] = {}
        for word, name in other.name_context:
            before.setdefault(name, set()).add(word)
        for word, name in side.name_context:
            if name in shared and name in before and word not in before[name]:
                return True
    return False


# With the pair verifier on (verifier.py), only these checks veto a semantic hit: what changes the answer for
# certain (a number, a negation, a name, code, the output format, the language). The others are softer signs
# (a tense, a time word, a listed opposite, a word swap) that the verifier weighs as features.
HARD_CHECKS = ("numbers", "negation", "quoted", "code", "format", "language", "names", "name-role")
SOFT_CHECKS = ("tense", "time", "opposite", "swap")


def soft_failures(a: Anchors, b: Anchors) -> tuple[bool, bool, bool, bool]:
    """The soft checks two prompts fail, each on its own, in SOFT_CHECKS order."""
    return (a.tenses != b.tenses, a.times != b.times, _opposed(a.words, b.words), _swapped(a, b))


def hard_agree(a: Anchors, b: Anchors) -> bool:
    """Whether two prompts pass every hard check (HARD_CHECKS)."""
    return (
        a.numbers == b.numbers
        and a.negations == b.negations
        and a.quoted == b.quoted
        and a.code == b.code
        and a.formats == b.formats
        and not (a.language and b.language and a.language != b.language)
        and a.names <= b.words
        and b.names <= a.words
        and not _role_changed(a, b)
    )
