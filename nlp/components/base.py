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


# label string -> its hash (the same in every vocab; a vocab that has not seen the string gets it)
_LABEL_IDS: dict[str, int] = {}


def span_at(doc: Doc, starts: list[int], start: int, end: int, label: str) -> Span | None:
    """A span over characters ``start:end`` expanded to the token boundaries ``starts`` (None if empty)."""
    i = bisect.bisect_right(starts, start) - 1
    j = bisect.bisect_left(starts, end)
    if i < 0:
        i = 0
    if j <= i:
        return None
    label_id = _LABEL_IDS.get(label)
    if label_id is None:
        label_id = _LABEL_IDS[label] = doc.vocab.strings.add(label)
    try:
        return Span(doc, i, j, label=label_id)
    except ValueError:  # this doc's vocab has not seen the label yet
        doc.vocab.strings.add(label)
        return Span(doc, i, j, label=label_id)


def make_span(doc: Doc, start: int, end: int, label: str) -> Span | None:
    """A span over characters ``start:end`` expanded to token boundaries (None if empty)."""
    return span_at(doc, _token_starts(doc), start, end, label)


def add_mentions(doc: Doc, found: list[tuple[int, int, str, dict]]) -> list[Span]:
    """Record mentions, in order: each ``(start, end, label, attrs)`` gets its attribute dict (completed in
    place with label, offsets and text) in ``doc._.btx_mentions`` and, unless the label is a cue
    (``_NO_SPAN``), a token-aligned span in the returned list; a mention covering no token is dropped
    (exact character offsets stay in the dict; spans sharing tokens keep separate attributes)."""
    if not found:
        return []
    text = doc_text(doc)
    starts = _token_starts(doc)
    # kept in user_data directly: every ``doc._`` access builds a new accessor object
    mentions = doc.user_data.setdefault(MENTIONS, [])
    spans: list[Span] = []
    for start, end, label, attrs in found:
        if label not in _NO_SPAN:
            span = span_at(doc, starts, start, end, label)
            if span is None:
                continue
            spans.append(span)
        elif end <= start:
            continue
        attrs["label"] = label
        attrs["start"] = start
        attrs["end"] = end
        attrs["text"] = text[start:end]
        mentions.append(attrs)
    return spans


def add_mention(doc: Doc, spans: list[Span], start: int, end: int, label: str, attrs: dict) -> None:
    """:func:`add_mentions` for one mention (``attrs`` is copied), its span appended to ``spans``."""
    spans.extend(add_mentions(doc, [(start, end, label, dict(attrs))]))


def doc_text(doc: Doc) -> str:
    """``doc.text``, computed once per doc (spaCy rebuilds it from the tokens on every access)."""
    text = doc.user_data.get("btx_text")
    if text is None:
        text = doc.user_data["btx_text"] = doc.text
    return text
