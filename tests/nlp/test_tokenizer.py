"""The clinical tokenizer (nlp/tokenizer.py): the Doc keeps the note's characters exactly."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlp.pipeline import build_nlp
from nlp.tokenizer import ClinicalTokenizer


@functools.lru_cache(maxsize=1)
def _shared() -> ClinicalTokenizer:
    return build_nlp().tokenizer


@pytest.fixture(scope="module")
def tokenizer() -> ClinicalTokenizer:
    tok = _shared()
    assert isinstance(tok, ClinicalTokenizer), "config.cfg must declare the clinical tokenizer"
    return tok


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
@settings(max_examples=300, deadline=None)
def test_text_and_offsets_round_trip(text: str) -> None:
    doc = _shared()(text)
    assert doc.text == text
    assert doc.user_data["btx_text"] == text
    for t in doc:
        assert text[t.idx : t.idx + len(t.text)] == t.text
        # a token is all whitespace or has none
        assert t.text.isspace() or not any(c.isspace() for c in t.text)


def test_clinical_splits(tokenizer: ClinicalTokenizer) -> None:
    doc = tokenizer("R-SCM 100units\r\n\nBotox® 25.5 U  x2")
    assert [t.text for t in doc] == ["R", "-", "SCM", "100", "units", "\r\n\n", "Botox", "®", "25", ".", "5", "U", " ", "x", "2"]
    assert [t.whitespace_ for t in doc][:5] == ["", "", " ", "", ""]


def test_empty_and_whitespace_only(tokenizer: ClinicalTokenizer) -> None:
    assert len(tokenizer("")) == 0
    assert [t.text for t in tokenizer("  \n ")] == ["  \n "]
