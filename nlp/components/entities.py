"""``btx_entities``: lexicon mentions written to ``doc.spans["btx"]``.

Labels: MUSCLE, NERVE, PRODUCT, TOXIN (generic/serotype), AGENT (neurolytic or other injectate),
GUIDANCE, DX (diagnosis concept), CODE (a code listed in the note), DATE (date of service).
Each span's ``._.btx`` dict holds its attributes (ids, method, concept …).
"""

import functools
import re

from spacy.language import Language
from spacy.tokens import Doc

from nlp import lexicons
from nlp.components.base import MENTIONS, add_mention, add_mentions, doc_text, ensure_extensions

# codes a note may list: CPT (5 digits), HCPCS (letter + 4 digits), ICD-10-CM, ICD-9-CM
_CPT = re.compile(
    r"(?<![\w.,/-])(?P<code>\d{5}|[A-V]\d{4})(?:-(?P<mod>\d{2}|[A-Z]{2}|[A-Z]\d))?"
    r"(?:\s*(?:x|X|×|times|\*)\s*(?P<units>\d+|one|two|three|four|five|six)\b)?(?![\w/])"
)
_ICD10 = re.compile(r"(?<![\w.])(?P<code>[A-TV-Z]\d[0-9AB](?:\.[0-9A-Z]{1,4})?)(?!\w|\.\w)")
_ICD9 = re.compile(r"(?<![\w.])(?P<code>(?:V\d{2}|\d{3})\.\d{1,2})(?!\w|\.\d)")
_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec"
_DATE_VALUE = (
    r"(?P<value>\d{4}-\d{2}-\d{2}|\d{1,2}[/-]\d{1,2}[/-]\d{2,4}|"
    rf"(?:{_MONTHS})[a-z]*\.? \d{{1,2}},? \d{{4}}|\d{{1,2}} (?:{_MONTHS})[a-z]* \d{{4}})"
)
_DOS_LABELS = (
    "date of service|dos|date of procedure|procedure date|service date|date of visit|visit date|"
    "date of injection|injection date|encounter date|date"
)
_DOS = re.compile(r"\b(?:" + _DOS_LABELS + r")\b\s*[:#=-]?\s*" + _DATE_VALUE, re.IGNORECASE)

# The same patterns written to start with a character class, so the regex engine skips in C to the
# few characters a match can start with (a look-behind first makes it try every position): the
# look-behind moves after that character and looks at one more. Same matches (tests compare them).
_CPT_FAST = re.compile(
    r"(?P<code>[\dA-V](?<![\w.,/-][\dA-V])\d{4})(?:-(?P<mod>\d{2}|[A-Z]{2}|[A-Z]\d))?"
    r"(?:\s*(?:x|X|×|times|\*)\s*(?P<units>\d+|one|two|three|four|five|six)\b)?(?![\w/])"
)
_ICD10_FAST = re.compile(r"(?P<code>[A-TV-Z](?<![\w.][A-TV-Z])\d[0-9AB](?:\.[0-9A-Z]{1,4})?)(?!\w|\.\w)")
_ICD9_FAST = re.compile(r"(?P<code>[V\d](?<![\w.][V\d])\d{2}\.\d{1,2})(?!\w|\.\d)")


def _add(doc: Doc, spans: list, start: int, end: int, label: str, attrs: dict) -> None:
    add_mention(doc, spans, start, end, label, attrs)


_AGENT = "agent"
_GUIDANCE = "guidance"


@functools.cache
def _pattern_row(group: str) -> tuple[str, dict[str, str | None]]:
    """(label, attrs) of the agents/guidance/diagnoses row behind a scanner match's group name."""
    _, rows = lexicons.entity_patterns()
    kind, row = rows[int(group[1:].split("_")[0])]
    if kind == _AGENT:
        label = "TOXIN" if row["agent_class"] == "toxin" else "AGENT"
        return label, {"agent_class": row["agent_class"], "serotype": row["serotype"] or None, "rule_id": row["rule_id"]}
    if kind == _GUIDANCE:
        return "GUIDANCE", {"method": row["method"], "rule_id": row["rule_id"]}
    return "DX", {"concept": row["concept"], "rule_id": row["rule_id"]}


# On an ASCII note every match of these patterns starts a word (a look-behind or \b excludes a
# letter or digit before it), and that word has a known shape: CPT/HCPCS starts with a code, an
# ICD code's word is its first three characters, a date of service starts with a label's first word.
# So the patterns run anchored only at such words, as finditer would meet them.
_CODE_SHAPES = (
    (re.compile(r"[0-9a-v][0-9]{4}"), _CPT),
    (re.compile(r"[a-tv-z][0-9][0-9ab]$"), _ICD10),
    (re.compile(r"[v0-9][0-9]{2}$"), _ICD9),
)
_DOS_WORDS = frozenset(label.split()[0] for label in _DOS_LABELS.split("|"))
# word → (" word ", the patterns that may start there: 0-2 codes, 3 date of service), or ()
_code_words: dict[str, tuple[str, tuple[int, ...]] | tuple[()]] = {}


def _code_word(word: str) -> tuple[str, tuple[int, ...]] | tuple[()]:
    kinds = tuple(k for k, (shape, _) in enumerate(_CODE_SHAPES) if shape.match(word))
    if word in _DOS_WORDS:
        kinds += (3,)
    return (f" {word} ", kinds) if kinds else ()


def _code_matches(text: str, ix: lexicons.Lowered) -> list[list[re.Match[str]]]:
    """finditer of _CPT, _ICD10, _ICD9 and _DOS on an ASCII note, tried only at the words that fit."""
    keys = lexicons.word_keys(ix.words, _code_words, _code_word)
    padded = ix.padded
    code_at: list[tuple[int, tuple[int, ...]]] = []
    cursor = 0
    for key, kinds in filter(None, keys):
        pos = padded.find(key, cursor)
        cursor = pos + len(key) - 1
        code_at.append((pos, kinds))
    return _codes_at(text, code_at)


def _codes_at(text: str, code_at: list[tuple[int, tuple[int, ...]]]) -> list[list[re.Match[str]]]:
    """_CPT, _ICD10, _ICD9 and _DOS matches tried at ``(position, pattern indexes)``, left to right, no
    overlaps within a pattern."""
    out: list[list[re.Match[str]]] = [[], [], [], []]
    ends = [0, 0, 0, 0]
    rxs = (_CPT, _ICD10, _ICD9, _DOS)
    for pos, kinds in code_at:
        for k in kinds:
            if pos >= ends[k]:
                m = rxs[k].match(text, pos)
                if m is not None:
                    out[k].append(m)
                    ends[k] = m.end()
    return out


# word → (" word ", len - 1, its nerve, muscle and product lexicon entries (``Lexicon.by_word``, or
# None), whether the entity scanner looks at it, the code patterns that may start there, whether the
# context scanner looks at it), or () when none does: the note's words are looked up once for the
# three lexicons, the two scanners and the codes (the context scanner's positions are offered to it)
_plans: dict[str, tuple] = {}
_plans_for: list = [None]  # the lexicons and scanners _plans was made for


def _plan(
    word: str,
    nerve: lexicons.Lexicon,
    muscle: lexicons.Lexicon,
    product: lexicons.Lexicon,
    scanner: lexicons.Scanner,
    context: lexicons.Scanner | None,
) -> tuple:
    key = f" {word} "
    n, m, p = nerve.by_word.get(word), muscle.by_word.get(word), product.by_word.get(word)
    s = scanner._word_key(word) != ""
    code = _code_word(word)
    c = code[1] if code else ()
    x = context is not None and context._word_key(word) != ""
    if n is None and m is None and p is None and not s and not c and not x:
        return ()
    return (key, len(key) - 1, n, m, p, s, c, x)


def _shared_pass(text: str, ix: lexicons.Lowered, nerve, muscle, product, scanner) -> tuple | None:
    """The nerve, muscle and product hits, scanner matches and code matches of an ASCII note, from one
    pass over its words; None when a lexicon or the scanner has no word-level path."""
    if nerve.by_word is None or muscle.by_word is None or product.by_word is None:
        return None
    if scanner.full_scan or scanner._fast is None:
        return None
    context: lexicons.Scanner | None = lexicons.context_patterns()[0]
    if context.full_scan or context._fast is None:
        context = None
    objs = (nerve, muscle, product, scanner, context)
    made_for = _plans_for[0]
    if made_for is None or any(a is not b for a, b in zip(made_for, objs, strict=True)) or len(_plans) > 200_000:
        _plans.clear()
        _plans_for[0] = objs
    keys = lexicons.word_keys(ix.words, _plans, lambda w: _plan(w, nerve, muscle, product, scanner, context))
    nerve_at: list = []
    muscle_at: list = []
    product_at: list = []
    scan_at: list[int] = []
    code_at: list = []
    context_at: list[int] = []
    find = ix.padded.find
    cursor = 0
    for key, step, n, m, p, s, c, x in filter(None, keys):
        # this key's next occurrence is the word: no word in between is a key (map listed it)
        pos = find(key, cursor)
        cursor = pos + step
        if m is not None:
            muscle_at.append((pos, m))
        if s:
            scan_at.append(pos)
        if c:
            code_at.append((pos, c))
        if p is not None:
            product_at.append((pos, p))
        if n is not None:
            nerve_at.append((pos, n))
        if x:
            context_at.append(pos)
    if context is not None:
        lexicons.offer_positions(context, text, context_at)
    low = ix.low
    return (
        nerve.find_located(text, low, nerve_at) if nerve_at else [],
        muscle.find_located(text, low, muscle_at) if muscle_at else [],
        product.find_located(text, low, product_at) if product_at else [],
        scanner.finditer_at(text, low, scan_at),
        _codes_at(text, code_at),
    )


def find_entities(doc: Doc) -> list:
    """All lexicon mentions of ``doc`` as labelled spans with attributes."""
    text = doc_text(doc)
    found: list[tuple[int, int, str, dict]] = []
    add = found.append
    nerve, muscle, product = lexicons.nerve_lexicon(), lexicons.muscle_lexicon(), lexicons.product_lexicon()
    scanner, _ = lexicons.entity_patterns()
    ix = lexicons.lowered(text) if text.isascii() else None
    shared = _shared_pass(text, ix, nerve, muscle, product, scanner) if ix is not None else None
    if shared is not None:
        nerve_hits, muscle_hits, product_hits, scanned, (cpt, icd10, icd9, dos) = shared
    else:
        nerve_hits, muscle_hits, product_hits = nerve.find(text), muscle.find(text), product.find(text)
        scanned = scanner.finditer(text)
        if ix is not None:
            cpt, icd10, icd9, dos = _code_matches(text, ix)
        else:
            cpt, icd10, icd9 = (list(rx.finditer(text)) for rx in (_CPT_FAST, _ICD10_FAST, _ICD9_FAST))
            dos = list(_DOS.finditer(text))
    for s, e, ids in nerve_hits:
        add((s, e, "NERVE", {"ids": ids}))
    muscles = lexicons.muscles()
    if nerve_hits:
        nerve_ranges = [(s, e) for s, e, _ in nerve_hits]
        muscle_hits = [h for h in muscle_hits if not any(ns <= h[0] < ne for ns, ne in nerve_ranges)]
    for s, e, ids in muscle_hits:
        add((s, e, "MUSCLE", {"ids": ids, "regions": sorted({muscles[i].region for i in ids})}))
    for s, e, ids in product_hits:
        add((s, e, "PRODUCT", {"product": ids[0]}))
    for m in scanned:
        label, attrs = _pattern_row(m.lastgroup)
        add((m.start(), m.end(), label, dict(attrs)))
    for m in cpt:
        code, mod, units = m.group("code", "mod", "units")
        add((m.start(), m.end(), "CODE", {"code": code, "modifier": mod, "units_text": units, "kind": "procedure"}))
    for ms, kind in ((icd10, "ICD-10-CM"), (icd9, "ICD-9-CM")):
        for m in ms:
            add((m.start(), m.end(), "CODE", {"code": m.group("code"), "kind": kind}))
    for m in dos:
        add((m.start("value"), m.end("value"), "DATE", {"value": m.group("value")}))
    return add_mentions(doc, found)


class EntityTagger:
    """Writes lexicon mentions to ``doc.spans[spans_key]``."""

    def __init__(self, spans_key: str = "btx"):
        self.spans_key = spans_key
        ensure_extensions()

    def __call__(self, doc: Doc) -> Doc:
        doc.user_data[MENTIONS] = []
        doc.spans[self.spans_key] = find_entities(doc)
        return doc


@Language.factory("btx_entities", assigns=["doc.spans"], default_config={"spans_key": "btx"})
def make_entity_tagger(nlp: Language, name: str, spans_key: str) -> EntityTagger:
    return EntityTagger(spans_key=spans_key)
