"""``btx_doses``: amounts of toxin — doses, volumes, concentrations, vials, totals and waste.

Labels added to ``doc.spans["btx"]``: DOSE (units; ``per_side``/``sites`` multipliers), VOLUME (mL),
CONC (units per mL), VIAL (units in the vial(s) opened), TOTAL (stated total administered),
WASTE (units discarded), NOWASTE (zero waste documented), REMAINDER_WASTED (the rest of the vial was
discarded without an amount).
"""

import bisect
import re

from spacy.language import Language
from spacy.tokens import Doc

from nlp.components.base import add_mentions, doc_text, ensure_extensions
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
# a units header as a cell of its own (preceded and followed by a separator, blank or the line's edge):
# what a line needs to start a table's units column
_HEADER_ANY = re.compile(
    r"(?<![^|\s])(?:units?|u|dose|dose\s*\(u(?:nits)?\)|units?\s*(?:given|injected)|total\s*units?|amount)(?![^|\s])", _I
)
_PLAIN_NUM = re.compile(rf"^\s*(?P<n>{NUM})\s*(?:{_U})?\s*$", _I)


_SEP = re.compile(r"(\||\t+| {2,})")  # captured: split() gives cell, separator, cell, ...


def _cells(line: str, offset: int) -> list[tuple[int, int, str]]:
    """(start, end, text) of the cells of a table row split on |, tabs or runs of 2+ spaces."""
    out = []
    pos = offset
    sep = False
    for part in _SEP.split(line):
        if not sep:
            ls = part.lstrip()
            if ls:
                cell = ls.rstrip()
                s0 = pos + len(part) - len(ls)
                out.append((s0, s0 + len(cell), cell))
        pos += len(part)
        sep = not sep
    return out


def table_doses(text: str) -> list[tuple[int, int, float]]:
    """Doses written in the units column of a table ("Muscle | Side | Units"), one per row."""
    out: list[tuple[int, int, float]] = []
    if "|" not in text and "\t" not in text and "  " not in text:
        return out  # no line can be a table row
    pos = 0
    col: int | None = None
    for line in text.split("\n"):
        start = pos
        pos += len(line) + 1
        if "|" not in line and "\t" not in line:
            stripped = line.strip()
            if not stripped or "  " not in stripped:
                col = None
                continue
        elif not line.strip():
            col = None
            continue
        if col is None and not _HEADER_ANY.search(line):
            continue  # neither a header nor under one: nothing to read
        cells = _cells(line, start)
        if len(cells) < 2:
            continue
        heads = [i for i, c in enumerate(cells) if _UNIT_HEADER.match(c[2])]
        if heads:
            col = heads[-1]
            continue
        if col is not None and col < len(cells):
            m = _PLAIN_NUM.match(cells[col][2])
            if m and (v := _number(m.group("n"))) is not None:
                out.append((cells[col][0], cells[col][1], v))
    return out


_NUMBERS: dict[str, float | None] = {}


def _number(s: str) -> float | None:
    """``to_number(s)``, remembered (the same few amounts recur in every note)."""
    try:
        return _NUMBERS[s]
    except KeyError:
        pass
    if len(_NUMBERS) >= 4096:
        _NUMBERS.clear()
    v = _NUMBERS[s] = to_number(s)
    return v


def _num(m: re.Match[str], *groups: str) -> float | None:
    for g in groups:
        if g not in m.re.groupindex:
            continue
        v = m.group(g)
        if v:
            return _number(v)
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


def _near(pattern: re.Pattern[str], text: str, wins: list[tuple[int, int]] | None) -> list[re.Match[str]]:
    if wins is None:
        return list(pattern.finditer(text))
    return [m for a, b in wins for m in pattern.finditer(text, a, b)]


def _find_all(lower: str, lit: str, start: int = 0, end: int | None = None) -> list[int]:
    """Every position of ``lit`` in ``lower[start:end]``."""
    find = lower.find
    if end is None:
        end = len(lower)
    out = []
    i = find(lit, start, end)
    while i >= 0:
        out.append(i)
        i = find(lit, i + 1, end)
    return out


def _key_windows(lower: str, occ: dict[str, list[int]], keys: tuple[str, ...], before: int, after: int) -> list[tuple[int, int]]:
    """Merged character windows around every occurrence of the keywords (a cheap prefilter: each amount
    pattern needs one of its keywords, so the regex engine only runs near them). ``occ`` caches the
    keyword positions."""
    n = len(lower)
    find = lower.find
    raw = []
    for kw in keys:
        hits = occ.get(kw)
        if hits is None:
            i = find(kw)
            if i < 0:
                occ[kw] = []
                continue
            hits = occ[kw] = []
            while i >= 0:
                hits.append(i)
                i = find(kw, i + 1)
        elif not hits:
            continue
        short = len(kw) <= 3 and kw.isalpha()  # "cc", "ml", "jw": only as words, not inside "occasional"
        k = len(kw) + after
        for i in hits:
            if not (short and i > 0 and lower[i - 1].isalpha()):
                raw.append((i - before if i > before else 0, min(n, i + k)))
    if len(raw) < 2:
        return raw
    raw.sort()
    merged: list[tuple[int, int]] = []
    for a, b in raw:
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    return merged


def _slow_matches(text: str, lower: str) -> list[list[re.Match[str]]]:
    """:func:`_all_matches` for any text: every pattern runs at every position of its windows."""
    occ: dict[str, list[int]] = {}
    same = len(lower) == len(text)  # keyword windows need offsets that match (true for ASCII and most text)
    w_vial = _key_windows(lower, occ, _KEYS_VIAL, 140, 80) if same else None
    w_waste = _key_windows(lower, occ, _KEYS_WASTE, 140, 80) if same else None
    w_conc = _key_windows(lower, occ, _KEYS_CONC, 140, 80) if same else None
    w_total = _key_windows(lower, occ, _KEYS_TOTAL, 10, 10) if same else None
    return [
        _near(VIAL, text, w_vial) + _near(VIAL_WORD, text, w_vial),
        _near(WASTE, text, w_waste) + _near(WASTE_WORD, text, w_waste),
        _near(WASTE_VOLUME, text, w_waste),
        _near(NOWASTE, text, w_waste),
        _near(REMAINDER, text, w_waste),
        _near(CONC, text, w_conc),
        list(DOSE.finditer(text)),
        list(VOLUME.finditer(text)),
        [m.span() for m in _near(TOTAL, text, w_total)],
    ]


# ---- the fast path, for ASCII text (nearly every note) ----
#
# Where a pattern can start. ``pattern.finditer(text, a, b)`` tries every position of [a, b); the scan
# below tries only candidate intervals (start, end, pure) that hold every position where a match can
# start, and gets the same matches (``match(text, q, b)`` sees the same look-behinds and the same end).
#
# Number runs: every pattern alternative that starts with a number (NUM) goes on, after optional
# blanks, a dash or a "- NUM"/"to NUM" range, with a unit (u/i/m: units, iu, mu) or a volume (m/c: mL,
# cc). That continuation cannot start with a digit, "." or ",", so NUM ends where the run of number
# characters ends, whichever position of the run it starts at: _RUN finds the runs whose next letter
# (past blanks, digits, dashes and a "to") is a unit letter, and captures that letter. In a run of digits
# only, NUM matches from any position to the end of the run and the rest of the pattern is tried from
# the same place, so when the first position tried fails every later one fails too (look-behinds and \b
# only fail more inside a run): such runs are "pure" and tried once. The captured start of the unit
# sorts the runs: "u" (not followed by another letter), "un", "iu" or "mu" start a unit (_U), "ml" or "cc"
# a volume (_ML); a run followed by anything else ("mg", "minutes", "injections") starts no match.
_RUN = re.compile(
    r"[0-9.,][0-9.,]*+(?=[\s0-9.,\-]*+(?:[tT][oO][\s0-9.,\-]*+)?([uU](?![a-zA-Z])|[uU][nN]|[iImM][uU]|[mM][lL]|[cC][cC]))"
)


def _ascii(p: re.Pattern[str]) -> re.Pattern[str]:
    """The same pattern with ASCII classes and case folding: the same matches on ASCII text, cheaper."""
    return re.compile(p.pattern, (p.flags & ~re.UNICODE) | re.ASCII)


_WASTE_A = _ascii(WASTE)


def _lc(p: re.Pattern[str]) -> re.Pattern[str]:
    """The same pattern, case-sensitive with ASCII classes: on the lower-cased ASCII note it finds the same
    spans and numbers as ``p`` on the note (its literals are lower case; cheaper than case folding). Not
    for WASTE, whose ``(?-i:(?=[a-z]))`` tells the case of the note."""
    return re.compile(p.pattern, re.ASCII)


_VIAL_L, _VIAL_WORD_L, _WASTE_WORD_L, _WASTE_VOLUME_L, _NOWASTE_L, _REMAINDER_L, _CONC_L, _DOSE_L, _VOLUME_L = map(
    _lc, (VIAL, VIAL_WORD, WASTE_WORD, WASTE_VOLUME, NOWASTE, REMAINDER, CONC, DOSE, VOLUME)
)
# TOTAL in two parts, on the lower-cased note: its words, and the "=" starting a line (their matches
# cannot overlap: the words start with a letter, the "=" cue is blanks and "=")
_TOTAL_WORDS_L = re.compile(
    r"\b(?:total|totals|totaling|totalling|in\s+all|altogether|combined|sum)\b"
    r"|\b(?:administered|given|injected|dose\s+given|amount\s+given|total\s+given)(?=[ \t]*:?[ \t]*\d)",
    re.ASCII,
)
_TOTAL_EQ_L = re.compile(r"(?m:^[ \t]*=)", re.ASCII)
assert TOTAL.pattern == _TOTAL_WORDS_L.pattern.replace("|\\b(?:administered", "|(?m:^[ \\t]*=)|\\b(?:administered")

# Word alternatives: the literal starts of each pattern's alternatives (lower case); they all begin
# with \b, so a candidate must not follow a word character.
_WORD_STARTS: dict[str, tuple[str, ...]] = {
    "WASTE_WORD": ("wast", "discard", "drug", "amount", "jw", "remain", "rest", "balance", "residual", "leftover", "unused"),
    "NOWASTE": ("no", "wast", "discard", "0", "zero", "entire", "whole", "full", "complete", "all", "used", "jz"),
    "WASTE_VOLUME": ("remain", "rest", "residual", "leftover"),
    "REMAINDER": ("remain", "rest", "residual", "balance", "unused"),
}
_WORDCH = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")

# Necessary conditions on a number run (cheaper than a failed attempt of the long patterns): what
# can stand between the end of the number and the keyword every match of the pattern contains.
# VIAL: the unit, blanks, a dash, a few words ("single-use", a brand, "of", "was") or "x 2", one line
# break, then vial/bottle or reconstituted/diluted/mixed.
_GAP_VIAL = re.compile(r"[ \t\n\-'A-Za-z0-9]*")
# WASTE, first alternative: the unit, "of" and a few words, "was", blanks and one line break before the
# verb (discarded, wasted, unused, not used/administered, left over, d/c'd, disposed); second
# alternative: anything but a line break before discarded/wasted/disposed.
_GAP_WASTE = re.compile(r"[ \t\n\-'A-Za-z0-9_]*")
_WASTE_VERBS = ("discard", "wast", "used", "administered", "left", "d/c", "dispos")


def _scan(pattern: re.Pattern[str], text: str, cands: list[tuple[int, int, bool]], wins: list[tuple[int, int]]) -> list:
    """``[m for a, b in wins for m in pattern.finditer(text, a, b)]``, trying only the candidates."""
    out: list[re.Match[str]] = []
    if not cands or not wins:
        return out
    match = pattern.match
    n = len(cands)
    for a, b in wins:
        j = bisect.bisect_right(cands, (a, a, True))
        if j:
            j -= 1  # the interval before may reach into the window
        last = a
        while j < n:
            cs, ce, pure = cands[j]
            if cs >= b:
                break
            j += 1
            q = cs if cs > last else last
            if ce > b:
                ce = b
            while q < ce:
                m = match(text, q, b)
                if m is not None:
                    out.append(m)
                    last = q = m.end()
                elif pure:
                    break
                else:
                    q += 1
    return out


def _inside(runs: list[tuple[int, int, bool]], wins: list[tuple[int, int]]) -> list[tuple[int, int, bool]]:
    """The runs that reach into a window."""
    out = []
    j = 0
    nw = len(wins)
    for run in runs:
        while j < nw and wins[j][1] <= run[0]:
            j += 1
        if j == nw:
            break
        if run[1] > wins[j][0]:
            out.append(run)
    return out


def _followed(
    runs: list[tuple[int, int, bool]], keys: list[int], text: str, gap: re.Pattern[str], line: bool = False
) -> list[tuple[int, int, bool]]:
    """The runs with a keyword position in ``keys`` (sorted) after their end, reachable through ``gap``
    (or, with ``line``, on the same line)."""
    out = []
    nk = len(keys)
    for run in runs:
        e = run[1]
        i = bisect.bisect_left(keys, e)
        if i == nk:
            continue
        k = keys[i]
        if k < gap.match(text, e).end() or (line and text.find("\n", e, k) < 0):
            out.append(run)
    return out


def _words(
    lower: str, occ: dict[str, list[int]], name: str, wins: list[tuple[int, int]], wocc: dict[str, list[int]]
) -> list[tuple[int, int, bool]]:
    """Candidate positions (as intervals) of a pattern's word alternatives in the windows (and between
    them: :func:`_scan` tries only what lies inside a window). ``wocc`` caches the positions found from
    the first window to the last (the same windows on every call that shares it)."""
    pos: set[int] = set()
    for lit in _WORD_STARTS[name]:
        hits = occ.get(lit)
        if hits is None:
            hits = wocc.get(lit)
            if hits is None:
                hits = wocc[lit] = _find_all(lower, lit, wins[0][0], wins[-1][1])
        for i in hits:
            if not (i > 0 and lower[i - 1] in _WORDCH):
                pos.add(i)
    return [(i, i + 1, True) for i in sorted(pos)]


def _fast_matches(text: str, lower: str) -> list[list[re.Match[str]]]:
    """:func:`_all_matches` for ASCII text: the patterns are tried only where a match can start."""
    occ: dict[str, list[int]] = {}
    w_vial = _key_windows(lower, occ, _KEYS_VIAL, 140, 80)
    w_waste = _key_windows(lower, occ, _KEYS_WASTE, 140, 80)
    w_conc = _key_windows(lower, occ, _KEYS_CONC, 140, 80)
    w_total = _key_windows(lower, occ, _KEYS_TOTAL, 10, 10)
    u_runs: list[tuple[int, int, bool]] = []
    ml_runs: list[tuple[int, int, bool]] = []
    for m in _RUN.finditer(text):
        if m[1][-1] in "lLcC":
            ml_runs.append((*m.span(), m[0].isdigit()))
        else:
            u_runs.append((*m.span(), m[0].isdigit()))
    m_vial = m_waste = m_waste_volume = m_nowaste = m_remainder = m_conc = []
    if w_vial:
        runs = _inside(u_runs, w_vial)
        if runs:
            keys = sorted(i for kw in _KEYS_VIAL for i in occ[kw])
            runs = _followed(runs, keys, text, _GAP_VIAL)
        words = sorted({i for kw in ("vial", "bottle") for i in occ[kw]})
        m_vial = _scan(_VIAL_L, lower, runs, w_vial) + _scan(_VIAL_WORD_L, lower, [(i, i + 1, True) for i in words], w_vial)
    if w_waste:
        wocc: dict[str, list[int]] = {}
        runs = _inside(u_runs, w_waste)
        if runs:
            for kw in _WASTE_VERBS:
                if kw not in occ:
                    occ[kw] = _find_all(lower, kw)
            keys = sorted(i for kw in _WASTE_VERBS for i in occ[kw])
            runs = _followed(runs, keys, text, _GAP_WASTE, line=True)
        m_waste = _scan(_WASTE_A, text, runs, w_waste) + _scan(
            _WASTE_WORD_L, lower, _words(lower, occ, "WASTE_WORD", w_waste, wocc), w_waste
        )
        cands = _words(lower, occ, "WASTE_VOLUME", w_waste, wocc)
        runs = _inside(ml_runs, w_waste)
        m_waste_volume = _scan(_WASTE_VOLUME_L, lower, sorted(cands + runs) if runs else cands, w_waste)
        m_nowaste = _scan(_NOWASTE_L, lower, _words(lower, occ, "NOWASTE", w_waste, wocc), w_waste)
        m_remainder = _scan(_REMAINDER_L, lower, _words(lower, occ, "REMAINDER", w_waste, wocc), w_waste)
    if w_conc:
        runs = _inside(u_runs, w_conc)
        words = [(i, i + 1, True) for i in sorted({i for kw in ("reconstitut", "dilut", "mixed") for i in occ[kw]})]
        m_conc = _scan(_CONC_L, lower, sorted(words + runs) if runs else words, w_conc)
    whole = [(0, len(text))]
    m_total = [m.span() for a, b in w_total for m in _TOTAL_WORDS_L.finditer(lower, a, b)]
    if occ["="]:
        eq = [m.span() for a, b in w_total for m in _TOTAL_EQ_L.finditer(lower, a, b)]
        if eq:
            m_total = sorted(m_total + eq)
    return [
        m_vial,
        m_waste,
        m_waste_volume,
        m_nowaste,
        m_remainder,
        m_conc,
        _scan(_DOSE_L, lower, u_runs, whole),
        _scan(_VOLUME_L, lower, ml_runs, whole),
        m_total,
    ]


def _all_matches(text: str) -> list[list[re.Match[str]]]:
    """The matches of every amount pattern, in the order :func:`find_amounts` reads them: VIAL,
    WASTE, WASTE_VOLUME, NOWASTE, REMAINDER, CONC, DOSE, VOLUME and TOTAL (each pattern runs in the
    keyword windows of its kind, DOSE and VOLUME over the whole note)."""
    lower = text.lower()
    if text.isascii():
        return _fast_matches(text, lower)
    return _slow_matches(text, lower)


# Number words written as digits (``textutil.shadow_numbers``), faster on ASCII text: the same trie of
# number phrases, matched case-sensitively on the lower-cased note and anchored on the character before
# the word (a class the regex engine can skip to), instead of a look-behind tried at every position.
_LB, _LA = "(?<![A-Za-z0-9])", "(?![A-Za-z0-9])"


def _shadow_regexes() -> tuple[re.Pattern[str], re.Pattern[str]] | None:
    from nlp import textutil

    words = getattr(textutil, "_word_num_regex", None)
    pat = words().pattern if words is not None else ""
    if not (pat.startswith(_LB) and pat.endswith(_LA)) or pat[len(_LB) : -len(_LA)] != pat[len(_LB) : -len(_LA)].lower():
        return None
    trie = pat[len(_LB) : -len(_LA)]
    return re.compile(rf"(?:{trie})(?![a-z0-9])"), re.compile(rf"[^a-z0-9]((?:{trie}))(?![a-z0-9])")


_SHADOW: list = []


def _shadow(text: str) -> str:
    """``shadow_numbers(text)``: number words replaced in place by digits padded to the same length."""
    if not _SHADOW:
        _SHADOW.append(_shadow_regexes())
    regexes = _SHADOW[0]
    if regexes is None or not text.isascii():
        return shadow_numbers(text)
    at_start, after_boundary = regexes
    lower = text.lower()
    hits = []
    m = at_start.match(lower)
    if m is not None:
        hits.append((0, m.end()))
    hits.extend(m.span(1) for m in after_boundary.finditer(lower, hits[0][1] if hits else 0))
    if not hits:
        return text
    parts = []
    last = 0
    for s, e in hits:
        value = to_number(lower[s:e])
        if value is None:
            continue
        digits = str(int(value)) if value == int(value) else str(value)
        if len(digits) > e - s:
            continue
        parts.append(text[last:s])
        parts.append(digits.ljust(e - s))
        last = e
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


_WASTE_VERB_IN = re.compile(r"discard|wast|unused", _I)
_DOSE_WITH_VOLUME = re.compile(rf"{NUM}\s*-?\s*{_U}\s*(?:in|into)\s", _I)
_WASTE_GROUPS = {p: tuple(g for g in ("n", "n2", "n4", "n5", "n6") if g in p.groupindex) for p in (WASTE, WASTE_WORD)}
_WASTE_GROUPS[_WASTE_A] = _WASTE_GROUPS[WASTE]
_WASTE_GROUPS[_WASTE_WORD_L] = _WASTE_GROUPS[WASTE_WORD]


def _start(m: re.Match[str]) -> int:
    return m.start()


def find_amounts(doc: Doc) -> list:
    """DOSE, VOLUME, CONC, VIAL, TOTAL, WASTE, NOWASTE and REMAINDER_WASTED spans."""
    text = _shadow(doc_text(doc))
    m_vial, m_waste, m_waste_volume, m_nowaste, m_remainder, m_conc, m_dose, m_volume, m_total = _all_matches(text)
    found: list[tuple[int, int, str, dict]] = []
    add = found.append
    claimed = Taken()
    overlaps = claimed.overlaps
    claim = claimed.add

    if m_vial:
        m_vial.sort(key=_start)
    for m in m_vial:
        start, end = m.span()
        if overlaps(start, end):
            continue
        size = _num(m, "size", "size2", "size3", "size4")
        count = _num(m, "count3", "count4") if m.re is VIAL or m.re is _VIAL_L else None
        if count is None:
            cm = _COUNT_BEFORE.search(text[max(0, start - 14) : start])
            if cm:
                count = _number(cm.group("count"))
                start -= len(cm.group(0)) - (1 if cm.group(0)[:1] and not cm.group(0)[:1].isalnum() else 0)
        count = count or 1.0
        if not size or size < 10:
            continue
        if count > 10:
            count = 1.0
        add((start, end, "VIAL", {"units": size * count, "size": size, "count": count}))
        claim(start, end)
    if m_waste:
        m_waste.sort(key=_start)
    for m in m_waste:
        start, end = m.span()
        if overlaps(start, end) and not _WASTE_VERB_IN.search(m.group(0)):
            continue
        n = _num(m, *_WASTE_GROUPS[m.re])
        if n is None:
            continue
        add((start, end, "WASTE" if n > 0 else "NOWASTE", {"units": n}))
        claim(start, end)
    for m in m_waste_volume:
        start, end = m.span()
        if not overlaps(start, end):
            add((start, end, "WASTE", {"units": None, "ml": _num(m, "ml", "ml2")}))
            claim(start, end)
    for m in m_nowaste:
        start, end = m.span()
        if not overlaps(start, end):
            add((start, end, "NOWASTE", {"units": 0.0}))
            claim(start, end)
    for m in m_remainder:
        start, end = m.span()
        if not overlaps(start, end):
            add((start, end, "REMAINDER_WASTED", {}))
    for m in m_conc:
        start, end = m.span()
        u = _num(m, "u")
        v = _num(m, "v", "v2")
        if m.group("v2"):
            add((start, end, "CONC", {"units_per_ml": None, "diluent_ml": v}))
        elif u:
            per = v if v else 1.0
            if per > 0:
                add((start, end, "CONC", {"units_per_ml": u / per}))
                if _DOSE_WITH_VOLUME.match(m.group(0)):
                    # "2.5 units in 0.1 mL was injected", "Botox 100 units in 10 mL": a dose with its volume
                    dose = {"units": u, "per_side": False, "sites": 1, "total_units": u, "preparation": True}
                    add((start, end, "DOSE", dose))
        claim(start, end)
    for m in m_dose:
        start, end = m.span()
        if overlaps(start, end):
            continue
        n, n2 = m.group("n", "n2")
        n = _number(n2) if n2 else _number(n) if n else None
        if n is None:
            continue
        after = text[end : end + 40]
        # PER_SIDE needs "per", "each" or "/", SITES "x", "times" or "each" and SITES_BEFORE a
        # sites/injections/points/locations word: on ASCII text, a cheap look for them first (non-ASCII
        # letters can fold to ASCII ones)
        la = after.lower()
        other = not after.isascii()
        each = "each" in la
        per_side = bool(PER_SIDE.match(after)) if each or "per" in la or "/" in la or other else False
        attrs: dict = {"units": n, "per_side": per_side, "sites": 1}
        sm = SITES.match(after) if each or "x" in la or "times" in la or other else None
        if sm and (k := _number(sm.group("k"))) and 1 < k <= 40:
            attrs["sites"] = int(k)
        else:
            before = text[max(0, start - 30) : start]
            lb = before.lower()
            if "site" in lb or "inject" in lb or "point" in lb or "location" in lb or not before.isascii():
                bm = SITES_BEFORE.search(before)
                if bm and (k := _number(bm.group("k"))) and 1 < k <= 40:
                    attrs["sites"] = int(k)
        attrs["total_units"] = n * attrs["sites"]
        add((start, end, "DOSE", attrs))
    for s0, e0, v in table_doses(text):
        if not overlaps(s0, e0):
            add((s0, e0, "DOSE", {"units": v, "per_side": False, "sites": 1, "total_units": v, "table": True}))
            claim(s0, e0)
    for m in m_volume:
        start, end = m.span()
        if not overlaps(start, end):
            add((start, end, "VOLUME", {"ml": _number(m.group("n"))}))
    for s0, e0 in m_total:
        add((s0, e0, "TOTAL_CUE", {}))
    return add_mentions(doc, found)


class AmountTagger:
    """Adds amount spans to ``doc.spans[spans_key]``."""

    def __init__(self, spans_key: str = "btx"):
        self.spans_key = spans_key
        ensure_extensions()

    def __call__(self, doc: Doc) -> Doc:
        spans = find_amounts(doc)
        if self.spans_key in doc.spans:
            # appended in place: listing the group would rebuild a Span object for every member
            doc.spans[self.spans_key].extend(spans)
        else:
            doc.spans[self.spans_key] = spans
        return doc


@Language.factory("btx_doses", assigns=["doc.spans"], requires=["doc.spans"], default_config={"spans_key": "btx"})
def make_amount_tagger(nlp: Language, name: str, spans_key: str) -> AmountTagger:
    return AmountTagger(spans_key=spans_key)
