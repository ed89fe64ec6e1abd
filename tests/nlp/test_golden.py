"""Golden notes (tests/golden): each case's claim must match exactly, under its date and payer."""

from __future__ import annotations

from typing import Any

import pytest

from nlp.evaluate import score_note


def _matches(line: dict[str, Any], spec: str) -> bool:
    code, *mods = spec.split("-")
    return line["code"] == code and all(m in line["modifiers"] for m in mods)


@pytest.mark.issue(2)
def test_golden_claim(engine: Any, golden_case: tuple[str, str, dict[str, Any]]) -> None:
    name, text, case = golden_case
    result = engine.suggest(text, date_of_service=case["dos"], payer=case.get("payer"), note_id=name)
    assert "error" not in result, result.get("error")
    ref = {"accept": [case["lines"]], "dx": case.get("dx")}
    score = score_note(name, result, ref)
    warnings = [w["code"] for w in result["warnings"]]
    detail = f"predicted {score.predicted}, expected {score.expected}; warnings {warnings}"
    assert score.exact, detail
    if case.get("dx") is not None:
        assert score.dx_fn == 0, f"diagnoses {score.dx_predicted}, expected {case['dx']}"
    for code in case.get("warnings", []):
        assert code in warnings, detail
    if case.get("warnings_any"):
        assert set(case["warnings_any"]) & set(warnings), detail
    for code in case.get("warnings_absent", []):
        assert code not in warnings, detail
    for spec in case.get("absent_codes", []):
        assert not any(_matches(ln, spec) for ln in result["lines"]), (
            f"{spec} must not be suggested; {detail}"
        )


def test_guidance_addons_only_with_their_primaries(
    engine: Any, golden_case: tuple[str, str, dict[str, Any]]
) -> None:
    """C7: +95873/+95874 only with a chemodenervation code they can guide; never with 64617/64640 alone;
    95870/95860-95864 never (guidance-only EMG)."""
    from nlp.loaders import split, table

    name, text, case = golden_case
    result = engine.suggest(text, date_of_service=case["dos"], payer=case.get("payer"))
    codes = {ln["code"] for ln in result["lines"]}
    assert not codes & {"95860", "95861", "95863", "95864", "95870"}
    primaries = {r["addon"]: set(split(r["primaries"])) for r in table("rules/addons.csv")}
    for ln in result["lines"]:
        if ln["code"] in ("95873", "95874"):
            guided = codes & primaries[ln["code"]]
            assert guided, f"{ln['code']} without a primary it guides: {sorted(codes)}"
            assert ln["units"] <= sum(
                1 if "50" in x["modifiers"] else x["units"] for x in result["lines"] if x["code"] in guided
            )
    assert not ({"95873", "95874"} <= codes), "one guidance method per chemodenervation service"
