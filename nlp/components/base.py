"""Shared plumbing for the ``btx_*`` components: extensions and span construction."""

from __future__ import annotations

import bisect

from spacy.attrs import IDX
from spacy.tokens import Doc, Span

MENTIONS = "btx_mentions"
# cues that only steer other decisions get no Span of their own (Spans cost more than the mention)
_NO_SPAN = frozenset({"TOTAL_CUE", "VOLUME", "CONC", "NOWASTE", "REMAINDER_WASTED", "CODE", "DATE"})


def ensure_extensions() -> None:
    """Register the ``._`` attributes the components use (idempotent)."""
    if not Span.has_extension("btx"):
        Span.set_extension("btx", default=None)
    for name in ("btx_segments", "btx_sections", "btx_section_cats", "btx_facts"):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)
    if not Doc.has_extension("btx_mentions"):
        Doc.set_extension("btx_mentions", getter=lambda doc: doc.user_data.get(MENTIONS, []))


ensure_extensions()


def _token_starts(doc: Doc) -> list[int]:
    starts = doc.user_data.get("btx_token_starts")
    if starts is None:
        starts = doc.user_data["btx_token_starts"] = doc.to_array(IDX).tolist() if len(doc) else []
    return starts


def make_span(doc: Doc, start: int, end: int, label: str) -> Span | None:
    """A span over characters ``start:end`` expanded to token boundaries (None if empty)."""
    starts = _token_starts(doc)
    i = bisect.bisect_right(starts, start) - 1
    j = bisect.bisect_left(starts, end)
    if i < 0:
        i = 0
    if j <= i:
        return None
    return Span(doc, i, j, label=label)


def add_mention(doc: Doc, spans: list[Span], start: int, end: int, label: str, attrs: dict) -> None:
    """Record a mention: a labelled span in the span group plus its attribute dict in
    ``doc._.btx_mentions`` (exact character offsets; spans sharing tokens keep separate attributes)."""
    span = None
    if label not in _NO_SPAN:
        span = make_span(doc, start, end, label)
        if span is None:
            return
    elif end <= start:
        return
    attrs = dict(attrs)
    text = doc_text(doc)
    attrs.update(label=label, start=start, end=end, text=text[start:end])
    # kept in user_data directly: every ``doc._`` access builds a new accessor object
    doc.user_data.setdefault(MENTIONS, []).append(attrs)
    if span is not None:
        spans.append(span)


def doc_text(doc: Doc) -> str:
    """``doc.text``, computed once per doc (spaCy rebuilds it from the tokens on every access)."""
    text = doc.user_data.get("btx_text")
    if text is None:
        text = doc.user_data["btx_text"] = doc.text
    return text
