"""``btx_context``: ConText-style modifiers (negated, historical, hypothetical, declined) and section.

Triggers come from ``tables/patterns/context_rules.csv`` (medspaCy ConText's shape: pattern, category,
direction, plus rule and source ids). A trigger's scope runs within its segment up to a terminator
(``but``, ``today``, ``;`` …); pseudo-triggers (``no complications``, ``prior to``) block the trigger they
overlap. Every span in ``doc.spans["btx"]`` gets ``_.btx["ctx"]`` = {section, negated, historical,
hypothetical, declined, rules}.
"""

import bisect
import re
from typing import Any

from spacy.language import Language
from spacy.tokens import Doc

from nlp import lexicons
from nlp.components.base import MENTIONS, doc_text, ensure_extensions

MAX_NEG_SCOPE = 60  # characters a negation reaches forward or back
FLAGS = ("negated", "historical", "hypothetical", "declined")
_CAT_FLAG = {"NEGATED": "negated", "HISTORICAL": "historical", "HYPOTHETICAL": "hypothetical", "DECLINED": "declined"}


_ROW_OF: dict[str, int] = {}  # a dispatched pattern's group name -> its row index


def _row_index(m: re.Match[str]) -> int:
    name = m.lastgroup
    i = _ROW_OF.get(name)  # type: ignore[arg-type]
    if i is None:
        i = _ROW_OF[name] = lexicons.row_of(m)  # type: ignore[index]
    return i


def find_triggers(text: str, offset: int = 0) -> list[tuple[int, int, dict[str, str]]]:
    """(start, end, rule row) of every context trigger in ``text`` (offsets shifted by ``offset``)."""
    scanner, rows = lexicons.context_patterns()
    row_of = _ROW_OF.get
    out = []
    for m in scanner.finditer(text):
        i = row_of(m.lastgroup)  # type: ignore[arg-type]
        out.append((m.start() + offset, m.end() + offset, rows[_row_index(m) if i is None else i]))
    return out


def segment_scopes(
    text: str, start: int, end: int, triggers: list[tuple[int, int, dict[str, str]]] | None = None
) -> list[tuple[str, int, int, str, int, int]]:
    """(flag, scope_start, scope_end, rule_id, trigger_start, trigger_end) for the triggers inside
    ``text[start:end]`` (``triggers``: the note's triggers, when already found)."""
    if triggers is None:
        triggers = find_triggers(text[start:end], start)
    else:
        triggers = [t for t in triggers if start <= t[0] < end]
    if not triggers:
        return []
    infos = [(s, e, _ROW_INFO.get(id(row)) or _row_info(row)) for s, e, row in triggers]
    terms = [s for s, _, info in infos if info[4]]
    scopes = []
    for s, e, (_, flag, direction, rule_id, _) in infos:
        if flag is None:
            continue
        lo, hi = (e, e) if direction == "forward" else (s, s)
        if direction in ("forward", "bidirectional"):
            nxt = [t for t in terms if t >= e]
            hi = min(nxt) if nxt else end
            if flag == "negated":
                hi = min(hi, e + MAX_NEG_SCOPE)
        if direction in ("backward", "bidirectional"):
            prv = [t for t in terms if t < s]
            lo = max(prv) if prv else start
            if flag == "negated":
                lo = max(lo, s - MAX_NEG_SCOPE)
        scopes.append((flag, lo, hi, rule_id, s, e))
    return scopes


# id of a trigger row -> (the row, its flag or None, direction, rule id, whether it terminates scopes); the
# row is held so that its id is not reused
_ROW_INFO: dict[int, tuple[dict[str, str], str | None, str, str, bool]] = {}


def _row_info(row: dict[str, str]) -> tuple[dict[str, str], str | None, str, str, bool]:
    cat = row["category"]
    info = _ROW_INFO[id(row)] = (row, _CAT_FLAG.get(cat), row["direction"], row["rule_id"], cat == "TERMINATE")
    return info


SECTION_FLAGS = {"history": "historical", "plan": "hypothetical"}


class ContextTagger:
    """Adds ``ctx`` to the attributes of every span in ``doc.spans[spans_key]``."""

    def __init__(self, spans_key: str = "btx"):
        self.spans_key = spans_key
        ensure_extensions()

    def __call__(self, doc: Doc) -> Doc:
        user_data = doc.user_data
        mentions = user_data.get(MENTIONS)
        if not mentions:
            return doc
        text = doc_text(doc)
        segs, sections, cats = _doc_attr(doc, "btx_segments"), _doc_attr(doc, "btx_sections"), _doc_attr(doc, "btx_section_cats")
        seg_starts, seg_ranges, sec_starts = segs.starts, segs.ranges, sections.starts
        bisect_right = bisect.bisect_right
        bisect_left = bisect.bisect_left
        cache: dict[int, list[tuple[str, int, int, str, int, int]]] = {}
        all_triggers = find_triggers(text)
        starts = [t[0] for t in all_triggers]
        # per section: the ctx of a mention no trigger reaches (flags, section, its rule), copied per mention
        base_of: dict[int, tuple[dict[str, Any], str | None]] = {}
        for attrs in mentions:
            start = attrs["start"]
            i = bisect_right(seg_starts, start) - 1
            scopes = cache.get(i)
            if scopes is None:
                s, e = seg_ranges[i] if i >= 0 else (0, len(text))
                lo_i, hi_i = bisect_left(starts, s), bisect_left(starts, e)
                scopes = cache[i] = segment_scopes(text, s, e, all_triggers[lo_i:hi_i]) if hi_i > lo_i else []
            j = bisect_right(sec_starts, start) - 1
            got = base_of.get(j)
            if got is None:
                got = base_of[j] = _base_ctx(cats[j] if j >= 0 else "none")
            base, sec_rule = got
            ctx = base.copy()
            rules: list[str] = []
            if scopes:
                end = attrs["end"]
                for flag, lo, hi, rule_id, ts, te in scopes:
                    if lo <= start < hi and not (ts < end and start < te):
                        ctx[flag] = True
                        rules.append(rule_id)
            if sec_rule is not None:
                rules.append(sec_rule)
            ctx["segment"] = i
            ctx["rules"] = rules
            attrs["ctx"] = ctx
        return doc


def _doc_attr(doc: Doc, name: str) -> Any:
    """``doc._.<name>``, read where spaCy keeps it (every ``doc._`` builds an accessor object)."""
    value = doc.user_data.get(("._.", name, None, None))
    return getattr(doc._, name) if value is None else value


_BASE: dict[str, tuple[dict[str, Any], str | None]] = {}


def _base_ctx(section: str) -> tuple[dict[str, Any], str | None]:
    """:func:`_make_base_ctx`, remembered per section (the template is only ever copied)."""
    got = _BASE.get(section)
    if got is None:
        got = _BASE[section] = _make_base_ctx(section)
    return got


def _make_base_ctx(section: str) -> tuple[dict[str, Any], str | None]:
    """The ctx of a mention in ``section`` that no trigger reaches (keys in their output order; ``segment``
    and ``rules`` are filled per mention), and the section's rule (None when the section sets no flag)."""
    ctx: dict[str, Any] = {"negated": False, "historical": False, "hypothetical": False, "declined": False}
    ctx["section"] = section
    flag = SECTION_FLAGS.get(section)
    if flag is not None:
        ctx[flag] = True
    ctx["segment"] = -1
    ctx["rules"] = None
    return ctx, (None if flag is None else f"SECTION:{section}")


@Language.factory("btx_context", assigns=["span._.btx"], requires=["doc.spans"], default_config={"spans_key": "btx"})
def make_context_tagger(nlp: Language, name: str, spans_key: str) -> ContextTagger:
    return ContextTagger(spans_key=spans_key)
