"""Training labels follow `btxcode eval`'s normalisation; calibration and routing metrics."""

from __future__ import annotations

from typing import Any

import pytest

from nlp.scoring import metrics
from nlp.scoring.labels import claim_label, dx_labels, line_labels


def _ln(code: str, units: int, *mods: str) -> dict[str, Any]:
    return {"code": code, "units": units, "modifiers": list(mods)}


def test_line_labels_normalise_like_eval() -> None:
    ref = {"accept": [["64616-50x1", "95874x1", "J0585x175", "J0585-JWx25"]], "dx": [["G24.3"]]}
    res = {
        "lines": [_ln("64616", 1, "50"), _ln("95874", 1), _ln("J0585", 175), _ln("J0585", 20, "JW")],
        "diagnoses": [{"code": "G24.3"}, {"code": "R25.2"}],
    }
    assert line_labels(res, ref) == [1, 1, 1, 0]
    assert dx_labels(res, ref) == [1, 0]
    assert claim_label("n", res, ref) == 0
    res["lines"][3]["units"] = 25
    assert line_labels(res, ref) == [1, 1, 1, 1] and claim_label("n", res, ref) == 1


def test_rt_lt_informational_and_summed() -> None:
    # the reference writes 64640 without a side: RT/LT are dropped and the units summed
    ref = {"accept": [["64640x2"]]}
    res = {"lines": [_ln("64640", 1, "RT"), _ln("64640", 1, "LT")], "diagnoses": []}
    assert line_labels(res, ref) == [1, 1] and claim_label("n", res, ref) == 1
    ref = {"accept": [["64640-RTx1", "64640-LTx1"]]}
    assert line_labels(res, ref) == [1, 1]
    res["lines"][1]["modifiers"] = ["RT"]
    assert line_labels(res, ref) == [0, 0]  # 64640-RT x2 is not in the claim


def test_best_alternative_and_optional_lines() -> None:
    ref = {"accept": [["64642x1", "J0585x100"], ["64614x1", "J0585x100"]], "dx": None}
    res = {"lines": [_ln("64614", 1), _ln("J0585", 100), _ln("95874", 1)], "diagnoses": [{"code": "G80.1"}]}
    assert line_labels(res, ref) == [1, 1, 0]
    assert dx_labels(res, ref) is None
    ref = {"accept": [["64614x1", "J0585x100", "?95874x*"]]}
    assert line_labels(res, ref) == [1, 1, 1] and claim_label("n", res, ref) == 1


def test_empty_claims() -> None:
    ref = {"accept": [[]]}
    assert line_labels({"lines": []}, ref) == [] and claim_label("n", {"lines": []}, ref) == 1
    assert claim_label("n", {"lines": [_ln("64612", 1, "50")]}, ref) == 0


def test_calibration_metrics() -> None:
    y = [1, 1, 0, 1, 0, 1, 1, 1]
    p = [0.95, 0.9, 0.2, 0.8, 0.4, 0.85, 0.95, 0.7]
    assert metrics.brier(y, p) == pytest.approx(sum((a - b) ** 2 for a, b in zip(p, y, strict=True)) / 8)
    assert metrics.auroc(y, p) == 1.0
    assert metrics.auroc([1, 0], [0.3, 0.7]) == 0.0
    assert metrics.auroc([1, 1], [0.3, 0.7]) is None
    assert metrics.auroc([1, 0, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert metrics.ece([1, 0], [1.0, 0.0]) == 0.0
    assert metrics.ece([1, 1, 0, 0], [0.55, 0.55, 0.55, 0.55]) == pytest.approx(0.05)
    bins = metrics.reliability(y, p)
    assert sum(b["n"] for b in bins) == len(y) and all(0 <= b["accuracy"] <= 1 for b in bins)


def test_threshold_and_routing() -> None:
    y = [1] * 60 + [0] + [1] * 20 + [0] * 19
    p = [0.99 - i * 0.005 for i in range(100)]
    t = metrics.choose_threshold(y, p, target=0.98)
    r = metrics.routing(y, p, t)
    assert r["auto_precision"] >= 0.98 and r["auto"] == 81
    assert metrics.choose_threshold([0, 0], [0.9, 0.8]) == 1.0
    curve = metrics.coverage_curve(y, p)
    assert curve[-1]["coverage"] == 1.0 and curve[0]["n"] == 1


def test_wilson_margin() -> None:
    assert metrics.wilson_lower(98, 100, 0.0) == pytest.approx(0.98)
    assert metrics.wilson_lower(98, 100, 1.2816) < 0.98
    assert metrics.wilson_lower(100, 100, 1.2816) > 0.98 > metrics.wilson_lower(60, 60, 1.2816)
    # with the margin the threshold moves up (less coverage, more certainty)
    y = [1] * 120 + [0] + [1] * 60 + [0] * 20
    p = [1 - i / 400 for i in range(len(y))]
    assert metrics.choose_threshold(y, p, 0.98, 1.2816) > metrics.choose_threshold(y, p, 0.98)
