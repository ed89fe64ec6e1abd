"""The result object: issue-2 schema, versioned, every line traceable to a table row and to the text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nlp.loaders import table

RESULT_KEYS = {
    "id",
    "schema_version",
    "date_of_service",
    "code_set",
    "payer",
    "lines",
    "diagnoses",
    "confidence",
    "route",
    "warnings",
    "facts",
}
LINE_KEYS = {
    "system",
    "code",
    "units",
    "modifiers",
    "description",
    "rule",
    "reason",
    "evidence",
    "confidence",
}
DX_KEYS = {"system", "code", "description", "evidence", "confidence"}
REPO = Path(__file__).resolve().parents[2]


def _rule_ids() -> set[str]:
    """Every ``rule_id`` in the shipped tables (rules, drug, guidance, ICD and lexicon rows)."""
    ids: set[str] = set()
    for path in sorted((REPO / "nlp" / "tables").rglob("*.csv")):
        rows = table(path.relative_to(REPO / "nlp" / "tables").as_posix())
        ids.update(r["rule_id"] for r in rows if r.get("rule_id"))
    return ids


@pytest.fixture(scope="module")
def coded(engine: Any, training_gold: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, text, result) for every golden note (2026) and every training note (its own date)."""
    out = []
    for note in sorted((REPO / "tests" / "golden" / "notes").glob("*.txt")):
        text = note.read_text(encoding="utf-8")
        out.append((note.name, text, engine.suggest(text, date_of_service="2026-03-10", note_id=note.name)))
    for name, rec in sorted(training_gold.items()):
        text = (REPO / "training_data" / "notes" / name).read_text(encoding="utf-8")
        out.append((name, text, engine.suggest(text, date_of_service=rec.get("dos"), note_id=name)))
    return out


def test_schema_keys_and_types(coded: list[tuple[str, str, dict[str, Any]]]) -> None:
    for name, _, r in coded:
        assert RESULT_KEYS <= r.keys(), f"{name}: missing {RESULT_KEYS - r.keys()}"
        assert r["id"] == name
        assert isinstance(r["schema_version"], str) and r["schema_version"]
        assert len(r["date_of_service"]) == 10
        assert r["code_set"]["diagnoses"] in ("ICD-10-CM", "ICD-9-CM")
        assert r["confidence"] is None or 0.0 <= r["confidence"] <= 1.0
        assert isinstance(r["facts"], dict)
        json.dumps(r)  # JSON-ready
        for ln in r["lines"]:
            assert LINE_KEYS <= ln.keys(), f"{name}: line missing {LINE_KEYS - ln.keys()}"
            assert ln["system"] in ("CPT", "HCPCS")
            assert isinstance(ln["units"], int) and ln["units"] >= 1, (name, ln)
            assert all(isinstance(m, str) and len(m) == 2 for m in ln["modifiers"]), (name, ln)
            assert ln["confidence"] is None or 0.0 <= ln["confidence"] <= 1.0
        for dx in r["diagnoses"]:
            assert DX_KEYS <= dx.keys(), f"{name}: diagnosis missing {DX_KEYS - dx.keys()}"
            expected_system = r["code_set"]["diagnoses"]
            assert dx["system"] == expected_system, (name, dx["code"])
        for w in r["warnings"]:
            assert {"code", "message"} <= w.keys()


def test_every_line_has_rule_reason_and_exact_evidence(coded: list[tuple[str, str, dict[str, Any]]]) -> None:
    known = _rule_ids()
    for name, text, r in coded:
        for item in r["lines"] + r["diagnoses"]:
            where = f"{name}: {item['code']}"
            assert item["rule"], where
            assert item.get("reason") or item.get("description"), where
            assert item["evidence"], f"{where} has no evidence"
            for ev in item["evidence"]:
                assert 0 <= ev["start"] < ev["end"] <= len(text), (where, ev)
                assert text[ev["start"] : ev["end"]] == ev["text"], (where, ev)
        for ln in r["lines"]:
            assert ln["reason"].strip(), f"{name}: {ln['code']} has no reason"
        for item in r["lines"] + r["diagnoses"]:
            assert item["rule"] in known, (
                f"{name}: {item['code']} names rule {item['rule']!r}, which is no table row"
            )


def test_warning_codes_are_catalogued(coded: list[tuple[str, str, dict[str, Any]]]) -> None:
    catalogue = {r["code"] for r in table("rules/warnings.csv")}
    for name, _, r in coded:
        for w in r["warnings"]:
            assert w["code"] in catalogue, f"{name}: warning {w['code']} is not in rules/warnings.csv"


def test_result_is_deterministic(engine: Any) -> None:
    text = (REPO / "tests" / "golden" / "notes" / "g04_cervical_bilateral_emg.txt").read_text(
        encoding="utf-8"
    )
    a = engine.suggest(text, date_of_service="2026-03-10")
    b = engine.suggest(text, date_of_service="2026-03-10")
    assert a == b


def test_suggest_many_keeps_ids_and_order(engine: Any) -> None:
    from nlp.engine import NoteInput

    texts = [
        p.read_text(encoding="utf-8") for p in sorted((REPO / "tests" / "golden" / "notes").glob("*.txt"))
    ]
    items = [NoteInput(t, f"n{i}", "2026-03-10") for i, t in enumerate(texts)]
    items.insert(3, NoteInput("", "empty", "2026-03-10"))
    results = list(engine.suggest_many(items))
    assert [r["id"] for r in results] == [i.id for i in items]
    assert results[3]["error"]["code"] == "EMPTY"
    single = engine.suggest(texts[0], date_of_service="2026-03-10", note_id="n0")
    assert results[0]["lines"] == single["lines"]


def test_date_of_service_source(engine: Any) -> None:
    text = "Procedure: Botox 50 units into the right sternocleidomastoid. No waste.\n"
    given = engine.suggest(text, date_of_service="2026-03-10")
    assert given["date_of_service"] == "2026-03-10"
    undated = engine.suggest(text)
    assert "DOS_NOT_DOCUMENTED" in [w["code"] for w in undated["warnings"]]


def test_evidence_offsets_index_the_text_as_sent_with_crlf(engine: Any) -> None:
    text = (
        "Procedure: Botox 100 units.\r\nRight biceps 50 units\r\nRight brachialis 50 units\r\nNo waste.\r\n"
    )
    r = engine.suggest(text, date_of_service="2026-03-10")
    assert r["lines"]
    for ln in r["lines"]:
        for ev in ln["evidence"]:
            assert text[ev["start"] : ev["end"]] == ev["text"], ev
