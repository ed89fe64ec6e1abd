"""Property tests for the parsers and the engine's robustness (hypothesis; examples capped for speed)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nlp.engine import InputError, decode_note
from nlp.textutil import NUM, NUMBER_WORDS, to_number

# engine properties: few examples (each codes a note); parser properties: cheap, more examples
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CHEAP = settings(max_examples=200, deadline=None)

HUNDREDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
TAILS = {"": 0, "fifty": 50, "twenty-five": 25, "seventy-five": 75}


@CHEAP
@given(st.integers(min_value=0, max_value=10**12))
def test_to_number_round_trips_integers(n: int) -> None:
    assert to_number(str(n)) == n
    assert to_number(f"{n:,}") == n
    assert re.fullmatch(NUM, f"{n:,}")


@CHEAP
@given(st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False, allow_infinity=False))
def test_to_number_round_trips_decimals(d: Decimal) -> None:
    text = f"{d:f}"
    assert to_number(text) == float(text)
    assert to_number(f" {text} ") == float(text)
    assert re.fullmatch(NUM, text)


@CHEAP
@given(st.sampled_from(sorted(HUNDREDS)), st.sampled_from(sorted(TAILS)), st.booleans())
def test_to_number_reads_hundreds_in_words(head: str, tail: str, with_and: bool) -> None:
    text = f"{head} hundred" + (f"{' and' if with_and else ''} {tail}" if tail else "")
    assert to_number(text) == HUNDREDS[head] * 100 + TAILS[tail]
    assert to_number(text.upper()) == HUNDREDS[head] * 100 + TAILS[tail]


@pytest.mark.parametrize("head", ["two", "three", "four", "five"])
def test_to_number_agrees_with_num_on_hundred_fifty_five(head: str) -> None:
    text = f"{head} hundred fifty-five"
    assert re.fullmatch(NUM, text)
    assert to_number(text) == HUNDREDS[head] * 100 + 55


def test_dose_in_words_with_hundreds_and_fifty_five(engine: Any) -> None:
    text = "Procedure: Botox two hundred fifty-five units was injected into the right biceps. No waste."
    result = engine.suggest(text, date_of_service="2026-03-10")
    assert [ln["units"] for ln in result["lines"] if ln["code"] == "J0585"] == [255]


def test_to_number_reads_one_hundred_fifty_five() -> None:
    assert to_number("one hundred fifty-five") == 155


def test_to_number_reads_every_number_word() -> None:
    for word, value in NUMBER_WORDS.items():
        assert to_number(word) == value, word


@CHEAP
@given(st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz -/"), min_size=1, max_size=12))
def test_to_number_returns_none_or_a_number(text: str) -> None:
    value = to_number(text)
    assert value is None or isinstance(value, float)


@CHEAP
@given(st.binary(max_size=2000))
def test_decode_note_raises_only_input_error_on_bytes(data: bytes) -> None:
    try:
        text = decode_note(data)
    except InputError as exc:
        assert exc.code in {"EMPTY", "BINARY", "ENCODING", "TOO_LARGE"}
    else:
        assert isinstance(text, str) and text.strip() and "\r" not in text


@CHEAP
@given(st.text(max_size=2000))
def test_decode_note_raises_only_input_error_on_text(data: str) -> None:
    try:
        decode_note(data)
    except InputError as exc:
        assert exc.code in {"EMPTY", "BINARY", "ENCODING", "TOO_LARGE"}


WORDS = [
    "Botox",
    "Dysport",
    "Xeomin",
    "Myobloc",
    "Daxxify",
    "botulinum toxin",
    "units",
    "U",
    "u",
    "mL",
    "vial",
    "left",
    "right",
    "bilateral",
    "L",
    "R",
    "B",
    "SCM",
    "FCR",
    "biceps",
    "gastrocnemius",
    "splenius",
    "orbicularis oculi",
    "thyroarytenoid",
    "obturator nerve",
    "phenol",
    "EMG",
    "e-stim",
    "ultrasound",
    "no",
    "not",
    "declined",
    "last",
    "will consider",
    "history",
    "PROCEDURE:",
    "PLAN:",
    "DIAGNOSIS:",
    "Total",
    "wasted",
    "discarded",
    "no waste",
    "DOS 03/10/2026",
    "64642",
    "J0585",
    "x",
    ":",
    ",",
    ".",
    "\n",
    "-",
    "100",
    "2.5",
    "1,000",
    "one hundred",
    "0.5 mL of 100 U/2 mL",
    "cervical dystonia",
    "MS",
    "cerebral palsy",
    "stroke",
    "migraine",
    "axillae",
    "bladder",
    "(",
    ")",
    "|",
    "\t",
]
printable = st.characters(blacklist_categories=("Cs", "Cc"))
note_text = st.one_of(
    st.lists(st.one_of(st.sampled_from(WORDS), st.integers(0, 5000).map(str)), max_size=80).map(" ".join),
    st.text(alphabet=printable, max_size=400),
)


@FAST
@given(note_text, st.sampled_from([None, "2005-06-01", "2008-06-01", "2015-10-01", "2026-03-10"]))
def test_engine_never_crashes_on_printable_text(engine: Any, text: str, dos: str | None) -> None:
    from nlp.engine import InputError

    try:
        result = engine.suggest(text, date_of_service=dos, today=None)
    except InputError as exc:  # the only failure allowed: a clear, coded input error
        assert exc.code in {"EMPTY", "BINARY", "ENCODING", "TOO_LARGE"}
        return
    coded = decode_note(text)
    for ln in result["lines"]:
        assert ln["units"] >= 1
        for ev in ln["evidence"]:
            assert coded[ev["start"] : ev["end"]] == ev["text"]


@CHEAP
@given(note_text)
def test_shadow_numbers_keeps_every_offset(text: str) -> None:
    """Number words written as digits in place: same length, and nothing else changes."""
    from nlp import textutil

    shadow = getattr(textutil, "shadow_numbers", None)
    if shadow is None:
        pytest.skip("nlp.textutil.shadow_numbers is not there")
    out = shadow(text)
    assert len(out) == len(text)
    for a, b in zip(text, out, strict=True):
        assert a == b or b.isdigit() or b in ". "
