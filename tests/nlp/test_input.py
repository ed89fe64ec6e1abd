"""Bad input gets a clear, coded error (issue 2 §3), never a crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nlp.engine import MAX_NOTE_BYTES, InputError, decode_note, parse_dos

NOTE = "Procedure: Botox 50 units into the right sternocleidomastoid, no waste.\n"


def error_code(call: Callable[[], Any]) -> str | None:
    """The InputError code of ``call``, whether it raises or returns an error result."""
    try:
        result = call()
    except InputError as exc:
        return exc.code
    return (result.get("error") or {}).get("code") if isinstance(result, dict) else None


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(b"", "EMPTY", id="empty-bytes"),
        pytest.param("", "EMPTY", id="empty-str"),
        pytest.param(b"   \n\t  \r\n", "EMPTY", id="whitespace"),
        pytest.param("\n\n   \n", "EMPTY", id="whitespace-str"),
        pytest.param(b"Botox 50 units\x00\x00 left SCM", "BINARY", id="nul-bytes"),
        pytest.param("Botox\x00 50 units", "BINARY", id="nul-str"),
        pytest.param(bytes(range(1, 32)) * 20, "BINARY", id="control-chars"),
        pytest.param(b"Botox 50 \xff\xfe units", "ENCODING", id="invalid-utf8"),
        pytest.param("Botox 50 units L SCM".encode("utf-16"), "BINARY", id="utf16"),
        pytest.param("Caf\xe9 Botox 50 units".encode("latin-1"), "ENCODING", id="latin1"),
        pytest.param(b"a" * (MAX_NOTE_BYTES + 1), "TOO_LARGE", id="too-large-bytes"),
        pytest.param("a" * (MAX_NOTE_BYTES + 1), "TOO_LARGE", id="too-large-str"),
        pytest.param("\u00e9" * (MAX_NOTE_BYTES // 2 + 1), "TOO_LARGE", id="too-large-utf8-multibyte"),
    ],
)
def test_decode_note_rejects(data: bytes | str, code: str) -> None:
    with pytest.raises(InputError) as info:
        decode_note(data)
    assert info.value.code == code
    assert info.value.message


def test_utf16_is_rejected_one_way_or_another() -> None:
    assert error_code(lambda: decode_note("Botox".encode("utf-16"))) in {"BINARY", "ENCODING"}


@pytest.mark.parametrize(
    "data",
    [
        b"Botox 50 units",
        "\ufeffBotox 50 units",
        b"\xef\xbb\xbfBotox 50 units",
        "Botox \u00bd vial \u2013 ok",
        b"x" * MAX_NOTE_BYTES,
    ],
    ids=["ascii", "bom-str", "bom-bytes", "unicode", "exactly-at-limit"],
)
def test_decode_note_accepts(data: bytes | str) -> None:
    text = decode_note(data)
    assert isinstance(text, str) and text.strip()


def test_decode_note_keeps_offsets_when_normalising_line_ends() -> None:
    # CRLF becomes " \n" and a lone CR "\n": same length, so evidence offsets index the caller's note
    assert decode_note(b"a\r\nb\rc") == "a \nb\nc"


@pytest.mark.parametrize("data", [b"", b"  ", b"\x00\x01", b"\xff", "", "   "])
def test_engine_reports_bad_note_with_a_code(engine: Any, data: bytes | str) -> None:
    assert error_code(lambda: engine.suggest(data, date_of_service="2026-03-10")) in {
        "EMPTY",
        "BINARY",
        "ENCODING",
    }


@pytest.mark.parametrize("value", ["2026-13-01", "yesterday", "03/10/2026", "2026-02-30", "2026-3-10x"])
def test_bad_date_of_service(engine: Any, value: str) -> None:
    with pytest.raises(InputError) as info:
        parse_dos(value)
    assert info.value.code == "BAD_DATE"
    assert error_code(lambda: engine.suggest(NOTE, date_of_service=value)) == "BAD_DATE"


@pytest.mark.parametrize("payer", ["acme", "medicare+no_such_option", "MEDICARE+"])
def test_unknown_payer(engine: Any, payer: str) -> None:
    assert error_code(lambda: engine.suggest(NOTE, date_of_service="2026-03-10", payer=payer)) == "BAD_PAYER"


def test_unknown_payer_at_load() -> None:
    from nlp import load_engine

    with pytest.raises((KeyError, InputError)):
        load_engine(payer="acme")


@pytest.mark.parametrize(
    "payer", ["medicare", "commercial", "medicare+rt_lt_lines", "medicare+rt_lt_lines+girdle_as_trunk"]
)
def test_known_payers(engine: Any, payer: str) -> None:
    r = engine.suggest(NOTE, date_of_service="2026-03-10", payer=payer)
    assert "error" not in r
    assert r["payer"] == payer


def test_error_result_keeps_id_and_schema(engine: Any) -> None:
    from nlp.engine import NoteInput

    (r,) = list(engine.suggest_many([NoteInput("", id="n-17", date_of_service="2026-03-10")]))
    assert r["error"]["code"] == "EMPTY"
    assert r["id"] == "n-17"
    assert r["schema_version"]
    assert r["lines"] == [] and r["diagnoses"] == []
