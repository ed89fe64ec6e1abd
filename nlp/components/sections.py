"""``btx_sections``: sentence-like segments and note sections (history, procedure, plan …).

Headers are recognised from ``tables/patterns/sections.csv`` at a line start (or after ``.,`` in
CSV-flattened notes); unknown ``Field:`` labels do not start a new section. Segments are sentences,
list lines and table rows; wrapped prose lines (next line starting in lower case) are joined.
"""

import functools
import re

from spacy.language import Language
from spacy.tokens import Doc

from nlp.components.base import _token_starts as token_starts
from nlp.components.base import doc_text, ensure_extensions, span_at
from nlp.loaders import table
from nlp.textutil import Segments

# a header starts a line, or follows ".," / ":," (CSV-flattened notes) or a sentence end
_HEADER_START = re.compile(r"\n|\.,|:,|\.\s{1,2}")
_HEADER = re.compile(
    r"[ \t>*#\-\d.)]*(?P<title>[A-Za-z][A-Za-z0-9 /&'()\-\.]{0,60}?)[ \t]*(?::|\n|$)",
    re.MULTILINE,
)
# _HEADER without the lazy title: the title's characters exclude ":", "\n" and tab, so _HEADER's title
# is this run of title characters less its trailing spaces, when that is at most 61 characters (the
# prefix's characters are no letters, so it never gives any back). Same matches (tests compare).
_HEADER_RUN = re.compile(r"[ \t>*#\-\d.)]*([A-Za-z][A-Za-z0-9 /&'()\-\.]*)[ \t]*(?::|\n|\Z)")


def _header_matches(text: str) -> list[tuple[int, int, str]]:
    """(title start, match end, title) of the _HEADER match at every place a header may start
    (anchored, so the scan stays cheap)."""
    out = []
    last_end = -1
    match = _HEADER_RUN.match
    for start in [0, *(m.end() for m in _HEADER_START.finditer(text))]:
        if start < last_end:
            continue
        m = match(text, start)
        if m is not None:
            title = m[1]
            if len(title) > 61:
                title = title.rstrip(" ")
                if len(title) > 61:
                    continue
            last_end = m.end()
            out.append((m.start(1), last_end, title))
    return out


MAX_SEGMENT = 1200
_ABBREV = re.compile(r"(?i:\b(?:dr|mr|mrs|ms|st|approx|vs|e\.g|i\.e|no|inc|pt|fig|etc))\.$|\b[a-z]\.$")
_BREAK = re.compile(r"(?<=[A-Za-z0-9)\]%][.!?])[\"')\]]?\s+(?=\S)|(?<=[A-Za-z0-9)]\.),|\n")
# _BREAK found from the character before each match (a sentence end's ".!?", the "." of ".,") or the
# "\n" itself (group n, empty: the match is the "\n"). The regex starts with a class of rare
# characters, so the engine skips to them in C; the match proper is the named group. No _BREAK match
# contains ".!?", so starting one character early never overlaps the previous match, and at one place
# the alternatives keep their order. Same matches (tests compare).
_BREAK_FAST = re.compile(
    r"[.!?\n](?:(?<=[A-Za-z0-9)\]%][.!?])(?P<b>[\"')\]]?\s+(?=\S))|(?<=[A-Za-z0-9)]\.)(?P<c>,)|(?<=\n)(?P<n>))"
)
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
# whether _ABBREV finds an abbreviation in the 8 characters that end at a "." (they repeat)
_abbrevs: dict[str, bool] = {}


@functools.cache
def _titles() -> dict[str, str]:
    return {r["title"]: r["category"] for r in table("patterns/sections.csv")}


def normalise_title(title: str) -> str:
    t = title.lower().replace("(s)", "s").replace("’", "'")
    t = re.sub(r"[^a-z0-9/&' \-]", " ", t)
    return re.sub(r"\s+", " ", t).strip()


_KEYWORDS = (
    ("codes", re.compile(r"\bcodes?\b|\bcpt\b|\bbilling\b")),
    ("plan", re.compile(r"\bplan\b|recommendation|follow[- ]?up|disposition")),
    ("diagnosis", re.compile(r"diagnos|indication|impression|assessment|reason for")),
    ("history", re.compile(r"history|\bhpi\b|medications|allergies|prior (?:treatment|injection)|previous")),
    ("exam", re.compile(r"exam|vital|findings on")),
    ("procedure", re.compile(r"procedure|technique|injection|operation|operative|chemodenervation|treatment today")),
)
# sections that are usually one labelled paragraph: an inline header's section ends at a blank line
# …and one labelled line ("Dx: cervical dystonia") ends with its line, unless the next line is a wrap
_LINE_SCOPED = {"diagnosis", "codes", "other", "exam"}
_LINE_END = re.compile(r"\n(?![ \t]*[a-z(])")
_PARAGRAPH_SCOPED = {"exam", "diagnosis", "codes", "history", "plan", "other", "assessment_plan"}


def _category(raw: str, norm: str) -> str | None:
    cat = _titles().get(norm)
    if cat is not None:
        return cat
    words = norm.split()
    if not words or len(words) > 5 or not (raw.isupper() or raw.istitle() or raw[:1].isupper()):
        return None
    for name, rx in _KEYWORDS:
        if rx.search(norm):
            return name
    return None


@functools.lru_cache(maxsize=65536)
def _title_category(raw: str) -> tuple[str | None, str]:
    """(category or None, normalised title) of a header candidate's title (titles repeat)."""
    norm = normalise_title(raw)
    return _category(raw.strip(), norm), norm


def find_sections(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, category, title) for every recognised section, in order; text before the
    first header is category ``none``. A header with text on its own line ("Exam: MAS 2 …") labels
    only its paragraph when the section is one that is usually a single paragraph."""
    heads: list[tuple[int, int, str, str]] = []
    for title_start, m_end, raw in _header_matches(text):
        cat, norm = _title_category(raw)
        if cat is None:
            continue
        if text[m_end - 1] != ":":
            # a header without a colon must be an upper-case line of its own
            line = text[title_start:m_end].strip()
            if not line.isupper():
                continue
        heads.append((title_start, m_end, cat, norm))
        nl = text.find("\n", m_end)
        inline = text[m_end : nl if nl >= 0 else len(text)].strip()
        if inline and cat in _PARAGRAPH_SCOPED:
            if cat in _LINE_SCOPED:
                brk = _LINE_END.search(text, m_end)
            else:
                brk = _BLANK_LINE.search(text, m_end)
            if brk is not None:
                heads.append((brk.end(), brk.end(), "none", ""))
    heads.sort(key=lambda h: h[0])
    out: list[tuple[int, int, str, str]] = []
    prev_end, prev_cat, prev_title = 0, "none", ""
    for start, _body_start, cat, title in heads:
        if start > prev_end or not out:
            out.append((prev_end, start, prev_cat, prev_title))
        prev_end, prev_cat, prev_title = start, cat, title
    out.append((prev_end, len(text), prev_cat, prev_title))
    return [s for s in out if s[1] > s[0]]


def find_segments(text: str) -> list[tuple[int, int]]:
    """Sentence-like segments: sentence ends, line breaks (unless a wrapped prose line), ``.,``."""
    cuts = [0]
    add = cuts.append
    abbrevs = _abbrevs
    for m in _BREAK_FAST.finditer(text):
        group = m.lastindex
        if group == 3:
            pos = m.start()
            end = pos + 1
        else:
            pos, end = m.span(group)
            if end - pos != 1 or text[pos] != "\n":
                # an abbreviation's "." ends no sentence; every _ABBREV match ends in a letter and "."
                if text[pos - 1] == "." and text[pos - 2 : pos - 1].isalpha():
                    tail = text[max(0, pos - 8) : pos]
                    hit = abbrevs.get(tail)
                    if hit is None:
                        if len(abbrevs) > 100_000:
                            abbrevs.clear()
                        hit = abbrevs[tail] = _ABBREV.search(tail) is not None
                    if hit:
                        continue
                add(end)
                continue
        # a line break (also a sentence end's lone line break)
        # join a wrapped prose line: previous line does not end a clause, next starts lower case
        if not text[end : end + 1].islower():
            add(end)
            continue
        j = pos
        while j and text[j - 1] in " \t":
            j -= 1
        if j and text[j - 1] not in ".:;!?|":
            continue
        add(end)
    cuts.append(len(text))
    segs = []
    for a, b in zip(cuts, cuts[1:], strict=False):
        # a run-on "sentence" longer than MAX_SEGMENT is cut at white space, which keeps every
        # per-sentence step linear on pathological input
        while b - a > MAX_SEGMENT:
            cut = text.rfind(" ", a + MAX_SEGMENT // 2, a + MAX_SEGMENT)
            cut = cut + 1 if cut > a else a + MAX_SEGMENT
            if text[a:cut].strip():
                segs.append((a, cut))
            a = cut
        if text[a:b].strip():
            segs.append((a, b))
    return segs


class SectionTagger:
    """Writes ``doc.spans["btx_sections"]`` (label = category) and ``doc._.btx_segments``."""

    def __init__(self, spans_key: str = "btx_sections"):
        self.spans_key = spans_key
        ensure_extensions()

    def __call__(self, doc: Doc) -> Doc:
        text = doc_text(doc)
        spans = []
        sections = find_sections(text)
        starts = token_starts(doc)
        user_data = doc.user_data
        for start, end, cat, title in sections:
            span = span_at(doc, starts, start, end, cat)
            if span is None:
                continue
            # span._.btx = …, written where spaCy keeps it (every ``._`` builds an accessor object)
            user_data[("._.", "btx", span.start_char, span.end_char)] = {"title": title, "start": start, "end": end}
            spans.append(span)
        doc.spans[self.spans_key] = spans
        # doc._.btx_sections = … (likewise)
        user_data[("._.", "btx_sections", None, None)] = Segments([(s, e) for s, e, _, _ in sections])
        user_data[("._.", "btx_section_cats", None, None)] = [c for _, _, c, _ in sections]
        user_data[("._.", "btx_segments", None, None)] = Segments(find_segments(text))
        return doc


@Language.factory("btx_sections", assigns=["doc.spans", "doc._.btx_segments"], default_config={"spans_key": "btx_sections"})
def make_section_tagger(nlp: Language, name: str, spans_key: str) -> SectionTagger:
    return SectionTagger(spans_key=spans_key)
