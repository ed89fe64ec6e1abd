"""Accuracy gates: the real MTSamples notes and the dev split of training_data (issue 2 'Done when').

The dev split is held to the issue's targets (line F1 0.95, exact-claim 0.85). When this suite was
written the engine measured 0.987 / 0.966 on dev and 0.986 line F1 on all 165 notes (2026-11-28).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nlp.evaluate import evaluate, strip_listed_codes

REPO = Path(__file__).resolve().parents[2]
MTSAMPLES_DOS = "2008-06-01"
NO_PROCEDURE = ("04", "05", "06", "07", "08", "09", "10")

DEV_LINE_F1_MIN = 0.95  # issue 2 target; measured 0.987
DEV_EXACT_MIN = 0.85  # issue 2 target; measured 0.966
ALL_LINE_F1_MIN = 0.95  # all splits; measured 0.986


def _keys(result: dict[str, Any]) -> list[str]:
    return sorted(
        ln["code"] + "".join(f"-{m}" for m in ln["modifiers"]) + f"x{ln['units']}" for ln in result["lines"]
    )


@pytest.fixture(scope="module")
def mtsamples_eval(engine: Any, mtsamples_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    return evaluate(engine, mtsamples_dir / "reference.json", mtsamples_dir, strip_codes=True)


@pytest.mark.issue(2)
def test_mtsamples_line_f1(mtsamples_eval: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    report, _ = mtsamples_eval
    assert report["notes"] == 10
    detail = [(n["note"], n["missing"], n["extra"]) for n in report["per_note"] if n["missing"] or n["extra"]]
    assert report["lines"]["f1"] >= 0.85, detail


@pytest.mark.issue(2)
def test_mtsamples_dates_and_code_sets(mtsamples_eval: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, results = mtsamples_eval
    for r in results:
        assert r["date_of_service"] == MTSAMPLES_DOS
        assert r["code_set"]["diagnoses"] == "ICD-9-CM"


@pytest.mark.issue(2)
def test_mtsamples_without_a_toxin_procedure_get_no_lines(
    mtsamples_eval: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, results = mtsamples_eval
    quiet = [r for r in results if str(r["id"])[:2] in NO_PROCEDURE]
    assert len(quiet) == len(NO_PROCEDURE)
    for r in quiet:
        assert r["lines"] == [], f"{r['id']}: {_keys(r)}"


@pytest.mark.parametrize("number", ["01", "02", "03"])
def test_mtsamples_same_answer_with_or_without_listed_codes(
    engine: Any, mtsamples_dir: Path, number: str
) -> None:
    """The listed PROCEDURE CODES line must not change the suggestion, only raise LISTED_CODES_DIFFER."""
    (path,) = mtsamples_dir.glob(f"{number}_*.txt")
    text = path.read_text(encoding="utf-8")
    with_codes = engine.suggest(text, date_of_service=MTSAMPLES_DOS)
    without = engine.suggest(strip_listed_codes(text), date_of_service=MTSAMPLES_DOS)
    assert "PROCEDURE CODES" not in strip_listed_codes(text)
    assert _keys(with_codes) == _keys(without)
    assert [d["code"] for d in with_codes["diagnoses"]] == [d["code"] for d in without["diagnoses"]]


def _csv_params() -> list[Any]:
    return [pytest.param(n, id=n) for n in ("01", "02", "03", "04", "05")]


@pytest.mark.parametrize("number", _csv_params())
def test_mtsamples_csv_form_codes_like_txt(engine: Any, mtsamples_dir: Path, number: str) -> None:
    matches = sorted((mtsamples_dir / "csv_form").glob(f"{number}_*.txt"))
    if not matches:
        pytest.skip(f"no csv_form of note {number}")
    csv_text = matches[0].read_text(encoding="utf-8")
    txt_text = (mtsamples_dir / matches[0].name).read_text(encoding="utf-8")
    csv_result = engine.suggest(csv_text, date_of_service=MTSAMPLES_DOS)
    txt_result = engine.suggest(txt_text, date_of_service=MTSAMPLES_DOS)
    assert _keys(csv_result) == _keys(txt_result)


@pytest.fixture(scope="module")
def dev_report(engine: Any) -> dict[str, Any]:
    report, _ = evaluate(
        engine, REPO / "training_data" / "gold.json", REPO / "training_data" / "notes", split="dev"
    )
    return report


def test_dev_split_line_f1(dev_report: dict[str, Any]) -> None:
    assert dev_report["notes"] >= 20
    assert dev_report["lines"]["f1"] >= DEV_LINE_F1_MIN, dev_report["lines"]


def test_dev_split_exact_claim_rate(dev_report: dict[str, Any]) -> None:
    assert dev_report["exact_claim_rate"] >= DEV_EXACT_MIN


def test_all_training_notes_line_f1(engine: Any) -> None:
    report, _ = evaluate(engine, REPO / "training_data" / "gold.json", REPO / "training_data" / "notes")
    assert report["notes"] >= 150
    assert report["lines"]["f1"] >= ALL_LINE_F1_MIN, report["lines"]
