"""``btx_entities``: lexicon mentions written to ``doc.spans["btx"]``.

Labels: MUSCLE, NERVE, PRODUCT, TOXIN (generic/serotype), AGENT (neurolytic or other injectate),
GUIDANCE, DX (diagnosis concept), CODE (a code listed in the note), DATE (date of service).
Each span's ``._.btx`` dict holds its attributes (ids, method, concept …).
"""

import re

from spacy.language import Language
from spacy.tokens import Doc

from nlp import lexicons
from nlp.components.base import MENTIONS, add_mention, doc_text, ensure_extensions

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
_DOS = re.compile(
    r"\b(?:date of service|dos|date of procedure|procedure date|service date|date of visit|visit date|"
    r"date of injection|injection date|encounter date|date)\b\s*[:#=-]?\s*" + _DATE_VALUE,
    re.IGNORECASE,
)


def _add(doc: Doc, spans: list, start: int, end: int, label: str, attrs: dict) -> None:
    add_mention(doc, spans, start, end, label, attrs)


def find_entities(doc: Doc) -> list:
    """All lexicon mentions of ``doc`` as labelled spans with attributes."""
    text = doc_text(doc)
    spans: list = []
    nerve_hits = lexicons.nerve_lexicon().find(text)
    nerve_ranges = [(s, e) for s, e, _ in nerve_hits]
    for s, e, ids in nerve_hits:
        _add(doc, spans, s, e, "NERVE", {"ids": ids})
    muscles = lexicons.muscles()
    for s, e, ids in lexicons.muscle_lexicon().find(text):
        if any(ns <= s < ne for ns, ne in nerve_ranges):
            continue
        regions = sorted({muscles[i].region for i in ids})
        _add(doc, spans, s, e, "MUSCLE", {"ids": ids, "regions": regions})
    for s, e, ids in lexicons.product_lexicon().find(text):
        _add(doc, spans, s, e, "PRODUCT", {"product": ids[0]})
    scanner, rows = lexicons.entity_patterns()
    for m in scanner.finditer(text):
        kind, row = rows[lexicons.row_of(m)]
        if kind == "agent":
            label = "TOXIN" if row["agent_class"] == "toxin" else "AGENT"
            attrs = {"agent_class": row["agent_class"], "serotype": row["serotype"] or None, "rule_id": row["rule_id"]}
            _add(doc, spans, m.start(), m.end(), label, attrs)
        elif kind == "guidance":
            _add(doc, spans, m.start(), m.end(), "GUIDANCE", {"method": row["method"], "rule_id": row["rule_id"]})
        else:
            _add(doc, spans, m.start(), m.end(), "DX", {"concept": row["concept"], "rule_id": row["rule_id"]})
    for m in _CPT.finditer(text):
        _add(
            doc,
            spans,
            m.start(),
            m.end(),
            "CODE",
            {"code": m.group("code"), "modifier": m.group("mod"), "units_text": m.group("units"), "kind": "procedure"},
        )
    for rx, kind in ((_ICD10, "ICD-10-CM"), (_ICD9, "ICD-9-CM")):
        for m in rx.finditer(text):
            _add(doc, spans, m.start(), m.end(), "CODE", {"code": m.group("code"), "kind": kind})
    for m in _DOS.finditer(text):
        _add(doc, spans, m.start("value"), m.end("value"), "DATE", {"value": m.group("value")})
    return spans


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
