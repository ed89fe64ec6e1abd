"""``btx_doses``: amounts of toxin — doses, volumes, concentrations, vials, totals and waste.

Labels added to ``doc.spans["btx"]``: DOSE (units; ``per_side``/``sites`` multipliers), VOLUME (mL),
CONC (units per mL), VIAL (units in the vial(s) opened), TOTAL (stated total administered),
WASTE (units discarded), NOWASTE (zero waste documented), REMAINDER_WASTED (the rest of the vial was
discarded without an amount).
"""

import re

from spacy.language import Language
from spacy.tokens import Doc

from nlp.components.base import doc_text, ensure_extensions
from nlp.components.entities import _add
from nlp.textutil import NUMD as NUM
from nlp.textutil import Taken, shadow_numbers, to_number

_U = r"(?:units?|untis|unts|unit's|iu|u|mu)(?![a-z])"
_ML = r"(?:ml|mls|cc|cc's|ccs)(?![a-z])"
_I = re.IGNORECASE

DOSE = re.compile(rf"(?<![\w.])(?P<n>{NUM})(?:\s*(?:-|to)\s*(?P<n2>{NUM}))?\s*-?\s*{_U}(?!\s*/|\s*per\s+(?:ml|cc|0\.1))", _I)
VOLUME = re.compile(rf"(?<![\w.])(?P<n>{NUM})\s*-?\s*{_ML}", _I)
CONC = re.compile(
    rf"(?P<u>{NUM})\s*-?\s*{_U}\s*(?:/|per|in|to|into|each)\s*(?:(?:each|every)\s+)?(?P<v>{NUM})?\s*{_ML}"
    rf"|(?:reconstituted|diluted|mixed|dilution)\s+(?:\w+\s+){{0,4}}?(?:with|in|using|to|:)\s+(?P<v2>{NUM})\s*{_ML}",
    _I,
)
_BRANDS = (
    r"(?:botox|dysport|xeomin|myobloc|daxxify|onabotulinumtoxina|abobotulinumtoxina|incobotulinumtoxina|"
    r"rimabotulinumtoxinb|daxibotulinumtoxina)"
)
VIAL = re.compile(
    rf"(?P<size>{NUM})[ \t]*-?[ \t]*{_U}[ \t]*-?[ \t]*"
    rf"(?:(?:single[- ](?:use|dose)|sdv|unit|{_BRANDS})[ \t]+)?\n?[ \t]*(?:vials?|bottles?)\b(?:[ \t]*[x×][ \t]*(?P<count3>\d+)\b)?"
    rf"|(?P<size4>{NUM})[ \t]*-?[ \t]*{_U}[ \t]*[x×][ \t]*(?P<count4>\d+)[ \t]*(?:vials?|bottles?)\b"
    rf"|(?P<size3>{NUM})[ \t]*-?[ \t]*{_U}[ \t]+(?:of[ \t]+{_BRANDS}[ \t]+)?(?:was[ \t]+|were[ \t]+)?(?:reconstituted|diluted|mixed)\b",
    _I,
)
VIAL_WORD = re.compile(
    rf"(?:vials?|bottles?)[ \t]*(?:size[ \t]*)?(?:of|:|=|x|@|containing|at)?[ \t]*(?:{_BRANDS}[ \t]+)?"
    rf"(?P<size2>{NUM})[ \t]*-?[ \t]*{_U}",
    _I,
)
_COUNT_BEFORE = re.compile(
    rf"(?:^|[^\w.])(?P<count>{NUM}|a|an|one)(?:[ \t]*[x×][ \t]*|[ \t]*\([ \t]*\d+[ \t]*\)[ \t]*|[ \t]+)$", _I
)
_VERB_WASTE = r"(?:discarded|wasted|waste|wastage|unused|not[ \t]+used|not[ \t]+administered|left[ \t]+over|d/c'?d|disposed)"
WASTE = re.compile(
    rf"(?P<n>{NUM})[ \t]*-?[ \t]*{_U}(?:[ \t]+of[ \t]+(?:\w+[ \t]+){{0,3}}?)?(?:[ \t]*\n[ \t]*(?-i:(?=[a-z]))|[ \t]*)"
    rf"(?:were[ \t]+|was[ \t]+|are[ \t]+|is[ \t]+)?(?:{_VERB_WASTE}|remaining[ \t]+(?:were[ \t]+|was[ \t]+)?discarded)(?![ \t]*:)"
    rf"|(?P<n5>{NUM})[ \t]*-?[ \t]*{_U}[ \t]+(?:\([^)\n]{{0,20}}\)[ \t]*)?(?:remain(?:ed|ing)?|left|were[ \t]+left)\b[^.;\n]{{0,30}}?\b(?:discarded|wasted|disposed)",
    _I,
)
WASTE_WORD = re.compile(
    rf"\b(?:waste|wastage|wasted|discarded|discard|drug[ \t]+wasted|amount[ \t]+wasted|amount[ \t]+discarded|jw)[ \t]*(?:amount|volume)?[ \t]*"
    rf"(?:[:=]|of|was|were|is)?[ \t]*(?:approximately[ \t]+)?(?:{_BRANDS}[ \t]+)?(?P<n2>{NUM})\s*-?\s*{_U}"
    rf"|\b(?:remainder|rest|balance|remaining|residual|leftover|unused)\b[^.;\d]{{0,30}}?[(,]?\s*(?P<n4>{NUM})\s*-?\s*{_U}\s*[),]?"
    rf"[^.;\d]{{0,40}}?\b(?:discarded|wasted|disposed|d/c'?d)"
    rf"|\b(?:remainder|rest|balance)\b[^.;\d]{{0,20}}?\b(?:discarded|wasted|disposed|d/c'?d)\s*\(\s*(?P<n6>{NUM})\s*-?\s*{_U}\s*\)",
    _I,
)
NOWASTE = re.compile(
    r"\bno[ \t]+(?:drug[ \t]+|product[ \t]+|medication[ \t]+|toxin[ \t]+)?(?:waste|wastage)\b|\b(?:waste|wastage|discarded|wasted)[ \t]*[:=]?[ \t]*(?:none|0|zero|nil|n/a)\b"
    r"|\b(?:0|zero|no)[ \t]*(?:units?|u)?[ \t]*(?:were[ \t]+|was[ \t]+)?(?:wasted|discarded)\b|\b(?:entire|whole|full|complete|all[ \t]+of[ \t]+the)[ \t]+(?:\d+[- ]?(?:units?|u)[ \t]+)?vials?[ \t]+"
    r"(?:\w+[ \t]+){0,2}?(?:was[ \t]+|were[ \t]+)?(?:used|administered|injected|utilized)|\bnothing[ \t]+(?:was[ \t]+)?(?:wasted|discarded)\b"
    r"|\bused[ \t]+in[ \t]+(?:its[ \t]+)?entirety\b|\bnone[ \t]+(?:was[ \t]+|were[ \t]+)?(?:wasted|discarded)\b|\bjz\b",
    _I,
)
WASTE_VOLUME = re.compile(
    rf"\b(?:remaining|remainder|rest|residual|leftover)\b[^.;\n\d]{{0,12}}?(?P<ml>{NUM})[ \t]*{_ML}[^.;\n\d]{{0,30}}?\b(?:discarded|wasted|disposed)"
    rf"|(?P<ml2>{NUM})[ \t]*{_ML}[ \t]+(?:remaining|left)\b[^.;\n\d]{{0,30}}?\b(?:discarded|wasted|disposed)",
    _I,
)
REMAINDER = re.compile(
    r"\b(?:remainder|rest|remaining(?:[ \t]+(?:drug|toxin|solution|amount|units?))?|residual|balance"
    r"|unused[ \t]+(?:portion|toxin|drug|product|medication|amount|solution))"
    r"(?:[ \t]+of[ \t]+(?:the[ \t]+)?(?:[\w-]+[ \t]+){0,2}?(?:vial|vials|drug|toxin|solution|botox|dysport|xeomin|myobloc|daxxify|product|medication))?[ \t]+"
    r"(?:was[ \t]+|were[ \t]+)?(?:discarded|wasted)",
    _I,
)
TOTAL = re.compile(
    r"\b(?:total|totals|totaling|totalling|in\s+all|altogether|combined|sum)\b|(?m:^[ \t]*=)"
    r"|\b(?:administered|given|injected|dose\s+given|amount\s+given|total\s+given)(?=[ \t]*:?[ \t]*\d)",
    _I,
)
PER_SIDE = re.compile(r"^\s*(?:per|each|to\s+each|on\s+each|for\s+each|/)\s*(?:side|eye|axilla|limb|muscle)\b|^\s*each\b", _I)
SITES = re.compile(
    rf"^[\s)]*(?:(?:was|were)\s+)?(?:(?:injected|given|placed|delivered)\s+)?(?:each\s+)?"
    rf"(?:x|×|times|at\s+each\s+of|into\s+each\s+of|in\s+each\s+of|to\s+each\s+of)\s*(?P<k>{NUM})\s*"
    rf"(?:sites?|injections?|points?|locations?|places?|quadrants?)?\b",
    _I,
)
SITES_BEFORE = re.compile(
    rf"(?P<k>{NUM})\s*(?:injection\s+)?(?:sites?|injections?|points?|locations?)\s*(?:of|x|×|@|at|with)\s*$", _I
)


_UNIT_HEADER = re.compile(
    r"^\s*(?:units?|u|dose|dose\s*\(u(?:nits)?\)|units?\s*(?:given|injected)|total\s*units?|amount)\s*$", _I
)
_PLAIN_NUM = re.compile(rf"^\s*(?P<n>{NUM})\s*(?:{_U})?\s*$", _I)


_SEP = re.compile(r"\||\t+| {2,}")


def _cells(line: str, offset: int) -> list[tuple[int, int, str]]:
    """(start, end, text) of the cells of a table row split on |, tabs or runs of 2+ spaces."""
    out = []
    pos = 0
    for m in [*_SEP.finditer(line), None]:
        end = m.start() if m is not None else len(line)
        cell = line[pos:end]
        if cell.strip():
            lead = len(cell) - len(cell.lstrip())
            out.append((offset + pos + lead, offset + pos + len(cell.rstrip()), cell.strip()))
        if m is not None:
            pos = m.end()
    return out


def table_doses(text: str) -> list[tuple[int, int, float]]:
    """Doses written in the units column of a table ("Muscle | Side | Units"), one per row."""
    out: list[tuple[int, int, float]] = []
    pos = 0
    col: int | None = None
    for line in text.split("\n"):
        start = pos
        pos += len(line) + 1
        if not line.strip():
            col = None
            continue
        if "|" not in line and "\t" not in line and "  " not in line.strip():
            col = None
            continue
        cells = _cells(line, start)
        if len(cells) < 2:
            continue
        heads = [i for i, c in enumerate(cells) if _UNIT_HEADER.match(c[2])]
        if heads:
            col = heads[-1]
            continue
        if col is not None and col < len(cells):
            m = _PLAIN_NUM.match(cells[col][2])
            if m and (v := to_number(m.group("n"))) is not None:
                out.append((cells[col][0], cells[col][1], v))
    return out


def _num(m: re.Match[str], *groups: str) -> float | None:
    for g in groups:
        if g not in m.re.groupindex:
            continue
        v = m.group(g)
        if v:
            return to_number(v)
    return None


_KEYS_VIAL = ("vial", "bottle", "reconstitut", "dilut", "mixed")
_KEYS_WASTE = (
    "discard",
    "wast",
    "unused",
    "not used",
    "not administered",
    "left over",
    "d/c",
    "dispos",
    "jw",
    "jz",
    "entire",
    "whole",
    "full",
    "complete",
    "entirety",
    "nothing",
    "none",
)
_KEYS_CONC = ("ml", "cc", "dilut", "reconstitut", "mixed", "dilution")
_KEYS_TOTAL = ("total", "in all", "altogether", "combined", "sum", "administered", "given", "injected", "=")


def _windows(lower: str, keys: tuple[str, ...], before: int = 140, after: int = 80) -> list[tuple[int, int]]:
    """Merged character windows around every occurrence of the keywords (a cheap prefilter: each amount
    pattern needs one of its keywords, so the regex engine only runs near them)."""
    raw = []
    for kw in keys:
        short = len(kw) <= 3 and kw.isalpha()  # "cc", "ml", "jw": only as words, not inside "occasional"
        i = lower.find(kw)
        while i >= 0:
            if not (short and i > 0 and lower[i - 1].isalpha()):
                raw.append((max(0, i - before), min(len(lower), i + len(kw) + after)))
            i = lower.find(kw, i + 1)
    raw.sort()
    merged: list[tuple[int, int]] = []
    for a, b in raw:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _near(pattern: re.Pattern[str], text: str, wins: list[tuple[int, int]] | None) -> list[re.Match[str]]:
    if wins is None:
        return list(pattern.finditer(text))
    return [m for a, b in wins for m in pattern.finditer(text, a, b)]


def find_amounts(doc: Doc) -> list:
    """DOSE, VOLUME, CONC, VIAL, TOTAL, WASTE, NOWASTE and REMAINDER_WASTED spans."""
    text = shadow_numbers(doc_text(doc))
    lower = text.lower()
    same = len(lower) == len(text)  # keyword windows need offsets that match (true for ASCII and most text)
    w_vial = _windows(lower, _KEYS_VIAL) if same else None
    w_waste = _windows(lower, _KEYS_WASTE) if same else None
    w_conc = _windows(lower, _KEYS_CONC) if same else None
    w_total = _windows(lower, _KEYS_TOTAL, before=10, after=10) if same else None
    spans: list = []
    claimed = Taken()

    def free(s: int, e: int) -> bool:
        return not claimed.overlaps(s, e)

    vials = sorted([*_near(VIAL, text, w_vial), *_near(VIAL_WORD, text, w_vial)], key=lambda m: m.start())
    for m in vials:
        if not free(m.start(), m.end()):
            continue
        size = _num(m, "size", "size2", "size3", "size4")
        start = m.start()
        count = _num(m, "count3", "count4") if m.re is VIAL else None
        if count is None:
            cm = _COUNT_BEFORE.search(text[max(0, start - 14) : start])
            if cm:
                count = to_number(cm.group("count"))
                start -= len(cm.group(0)) - (1 if cm.group(0)[:1] and not cm.group(0)[:1].isalnum() else 0)
        count = count or 1.0
        if not size or size < 10:
            continue
        if count > 10:
            count = 1.0
        _add(doc, spans, start, m.end(), "VIAL", {"units": size * count, "size": size, "count": count})
        claimed.add(start, m.end())
    for m in sorted([*_near(WASTE, text, w_waste), *_near(WASTE_WORD, text, w_waste)], key=lambda m: m.start()):
        if not free(m.start(), m.end()) and not re.search(r"discard|wast|unused", m.group(0), _I):
            continue
        n = _num(m, *[g for g in ("n", "n2", "n4", "n5", "n6") if g in m.re.groupindex])
        if n is None:
            continue
        label = "WASTE" if n > 0 else "NOWASTE"
        _add(doc, spans, m.start(), m.end(), label, {"units": n})
        claimed.add(m.start(), m.end())
    for m in _near(WASTE_VOLUME, text, w_waste):
        if free(m.start(), m.end()):
            _add(doc, spans, m.start(), m.end(), "WASTE", {"units": None, "ml": _num(m, "ml", "ml2")})
            claimed.add(m.start(), m.end())
    for m in _near(NOWASTE, text, w_waste):
        if free(m.start(), m.end()):
            _add(doc, spans, m.start(), m.end(), "NOWASTE", {"units": 0.0})
            claimed.add(m.start(), m.end())
    for m in _near(REMAINDER, text, w_waste):
        if free(m.start(), m.end()):
            _add(doc, spans, m.start(), m.end(), "REMAINDER_WASTED", {})
    for m in _near(CONC, text, w_conc):
        u = _num(m, "u")
        v = _num(m, "v", "v2")
        if m.group("v2"):
            _add(doc, spans, m.start(), m.end(), "CONC", {"units_per_ml": None, "diluent_ml": v})
        elif u:
            per = v if v else 1.0
            if per > 0:
                _add(doc, spans, m.start(), m.end(), "CONC", {"units_per_ml": u / per})
                if re.match(rf"{NUM}\s*-?\s*{_U}\s*(?:in|into)\s", m.group(0), _I):
                    # "2.5 units in 0.1 mL was injected", "Botox 100 units in 10 mL": a dose with its volume
                    _add(
                        doc,
                        spans,
                        m.start(),
                        m.end(),
                        "DOSE",
                        {"units": u, "per_side": False, "sites": 1, "total_units": u, "preparation": True},
                    )
        claimed.add(m.start(), m.end())
    for m in DOSE.finditer(text):
        if not free(m.start(), m.end()):
            continue
        n = _num(m, "n2", "n") if m.group("n2") else _num(m, "n")
        if n is None:
            continue
        after = text[m.end() : m.end() + 40]
        attrs: dict = {"units": n, "per_side": bool(PER_SIDE.match(after)), "sites": 1}
        sm = SITES.match(after)
        if sm and (k := to_number(sm.group("k"))) and 1 < k <= 40:
            attrs["sites"] = int(k)
        else:
            bm = SITES_BEFORE.search(text[max(0, m.start() - 30) : m.start()])
            if bm and (k := to_number(bm.group("k"))) and 1 < k <= 40:
                attrs["sites"] = int(k)
        attrs["total_units"] = n * attrs["sites"]
        _add(doc, spans, m.start(), m.end(), "DOSE", attrs)
    for s0, e0, v in table_doses(text):
        if free(s0, e0):
            _add(doc, spans, s0, e0, "DOSE", {"units": v, "per_side": False, "sites": 1, "total_units": v, "table": True})
            claimed.add(s0, e0)
    for m in VOLUME.finditer(text):
        if free(m.start(), m.end()):
            _add(doc, spans, m.start(), m.end(), "VOLUME", {"ml": to_number(m.group("n"))})
    for m in _near(TOTAL, text, w_total):
        _add(doc, spans, m.start(), m.end(), "TOTAL_CUE", {})
    return spans


class AmountTagger:
    """Adds amount spans to ``doc.spans[spans_key]``."""

    def __init__(self, spans_key: str = "btx"):
        self.spans_key = spans_key
        ensure_extensions()

    def __call__(self, doc: Doc) -> Doc:
        existing = list(doc.spans[self.spans_key]) if self.spans_key in doc.spans else []
        doc.spans[self.spans_key] = existing + find_amounts(doc)
        return doc


@Language.factory("btx_doses", assigns=["doc.spans"], requires=["doc.spans"], default_config={"spans_key": "btx"})
def make_amount_tagger(nlp: Language, name: str, spans_key: str) -> AmountTagger:
    return AmountTagger(spans_key=spans_key)
