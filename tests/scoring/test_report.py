"""nlp.scoring.report: Brier, ECE, reliability diagram and accuracy/coverage curve for `btxcode eval`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nlp.scoring.report import attach_calibration, calibration_report, format_summary

pytest.importorskip("matplotlib")


def _result(name: str, lines: list[tuple[str, list[str], int, float]], conf: float, route: str) -> dict[str, Any]:
    return {
        "id": name,
        "payer": "medicare",
        "confidence": conf,
        "route": route,
        "warnings": [],
        "lines": [{"code": c, "modifiers": m, "units": u, "confidence": p} for c, m, u, p in lines],
        "diagnoses": [{"code": "G24.3", "confidence": 0.97}],
    }


def test_report_files_and_numbers(tmp_path: Path) -> None:
    refs = {
        "a": {"accept": [["64616-50x1", "J0585x100"]], "dx": [["G24.3"]]},
        "b": {"accept": [["64616-LTx1", "J0585x50"]], "dx": [["G24.3"]]},
        "c": {"accept": [[]], "dx": None},
    }
    results = [
        _result("a", [("64616", ["50"], 1, 0.99), ("J0585", [], 100, 0.98)], 0.97, "auto"),
        _result("b", [("64616", ["RT"], 1, 0.6), ("J0585", [], 50, 0.95)], 0.4, "review"),
        {**_result("c", [], 0.9, "auto"), "diagnoses": []},
    ]
    rep = calibration_report(results, refs, tmp_path / "cal")
    assert rep["scored"] and rep["line"]["n"] == 4 and rep["claim"]["n"] == 3 and rep["dx"]["n"] == 2
    assert rep["routing"]["auto"] == 2 and rep["routing"]["auto_precision"] == 1.0
    assert 0 <= rep["line"]["ece"] <= 1 and 0 <= rep["claim"]["brier"] <= 1
    for name in ("calibration.json", "reliability.png", "coverage.png"):
        assert (tmp_path / "cal" / name).stat().st_size > 0
    assert (tmp_path / "cal" / "reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["routing"]["claims"] == 3
    assert "ECE" in format_summary(rep)


def test_attach_calibration_for_the_cli(tmp_path: Path) -> None:
    gold = tmp_path / "gold.json"
    gold.write_text(json.dumps({"_format": "x", "a": {"accept": [["64612-50x1"]], "dx": None}}), encoding="utf-8")
    report: dict[str, Any] = {}
    line = attach_calibration(report, [_result("a", [("64612", ["50"], 1, 0.9)], 0.9, "review")], gold, tmp_path / "o")
    assert report["calibration"]["scored"] and "calibration:" in line


def test_results_without_confidence(tmp_path: Path) -> None:
    rep = calibration_report([{"id": "a", "lines": [], "diagnoses": [], "confidence": None}], {"a": {"accept": [[]]}}, tmp_path)
    assert not rep["scored"] and "no confidence" in format_summary(rep)
