"""Shared plumbing for the ``btx_*`` components: extensions and span construction."""

from __future__ import annotations

from spacy.tokens import Doc, Span


def ensure_extensions() -> None:
    """Register the ``._`` attributes the components use (idempotent)."""
    if not Span.has_extension("btx"):
        Span.set_extension("btx", default=None)
    for name in ("btx_segments", "btx_sections", "btx_section_cats", "btx_facts", "btx_mentions"):
        if not Doc.has_extension(name):
            Doc.set_extension(name, default=None)


ensure_extensions()


def make_span(doc: Doc, start: int, end: int, label: str) -> Span | None:
    """A span over characters ``start:end`` expanded to token boundaries (None if empty)."""
    span = doc.char_span(start, end, label=label, alignment_mode="expand")
    if span is None or len(span) == 0:
        return None
    return span


def add_mention(doc: Doc, spans: list[Span], start: int, end: int, label: str, attrs: dict) -> None:
    """Record a mention: a labelled span in the span group plus its attribute dict in
    ``doc._.btx_mentions`` (exact character offsets; spans sharing tokens keep separate attributes)."""
    span = make_span(doc, start, end, label)
    if span is None:
        return
    attrs = dict(attrs)
    attrs.update(label=label, start=start, end=end, text=doc.text[start:end])
    if doc._.btx_mentions is None:
        doc._.btx_mentions = []
    doc._.btx_mentions.append(attrs)
    spans.append(span)
