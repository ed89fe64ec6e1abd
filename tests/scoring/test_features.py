"""nlp.scoring.features: pure functions of (Facts, claim line or diagnosis, result) with declared names."""

from __future__ import annotations

from typing import Any

import pytest

from nlp.facts import Diagnosis, Evidence, Excluded, Facts, Injection
from nlp.mapping.model import Claim, ClaimLine, DiagnosisCode
from nlp.scoring import features as F


def _inj(
    muscle: str,
    region: str,
    side: str | None,
    units: float | None,
    start: int,
    text: str,
    *,
    group: bool = False,
    guidance: str | None = "emg",
    side_rule: str = "side-before",
) -> Injection:
    return Injection(
        muscle,
        muscle.replace("_", " "),
        region,
        side,
        units,
        (muscle,),
        group,
        Evidence(start, start + len(text), text),
        side_rule,
        guidance,
    )


@pytest.fixture()
def note() -> tuple[Facts, Claim, dict[str, Any]]:
    facts = Facts(
        injections=[
            _inj("sternocleidomastoid", "neck", "L", 40.0, 100, "L SCM"),
            _inj("splenius_capitis", "neck", "R", 60.0, 130, "right splenius capitis"),
            _inj("wrist_flexors", "upper_extremity", None, None, 200, "wrist flexors", group=True, side_rule="side-none"),
        ],
        product="botox",
        product_evidence=[Evidence(10, 15, "Botox")],
        products_named=["botox"],
        serotype="A",
        toxin_mentioned=True,
        toxin_today=True,
        guidance=[("emg", Evidence(60, 63, "EMG"))],
        administered_units=120.0,
        administered_source="stated_total",
        stated_total=120.0,
        sum_units=100.0,
        discarded_units=80.0,
        vial_units=200.0,
        diagnoses=[Diagnosis("cervical_dystonia", (), Evidence(20, 37, "cervical dystonia"), True, "diagnosis")],
        excluded=[Excluded("MUSCLE", "biceps", "historical", 300), Excluded("MUSCLE", "FCR", "section:plan", 400)],
    )
    lines = [
        ClaimLine(
            "CPT",
            "64616",
            1,
            ["50"],
            "neck",
            "CD-NECK-1",
            "r",
            [i.evidence for i in facts.injections[:2]],
            kind="procedure",
            sources=facts.injections[:2],
        ),
        ClaimLine("CPT", "95874", 1, [], "emg", "GD-EMG-1", "r", [Evidence(60, 63, "EMG")], kind="guidance"),
        ClaimLine("HCPCS", "J0585", 120, [], "botox", "DR-ADM-1", "r", [Evidence(10, 15, "Botox")], kind="drug"),
        ClaimLine("HCPCS", "J0585", 80, ["JW"], "botox", "DR-JW-1", "r", [], kind="drug"),
    ]
    claim = Claim(
        lines=lines,
        diagnoses=[
            DiagnosisCode("ICD-10-CM", "G24.3", "Spasmodic torticollis", "DX-CD-10", "r", [Evidence(20, 37, "cervical dystonia")])
        ],
    )
    claim.warn("MUSCLE_COUNT_AMBIGUOUS", names="wrist flexors")
    result = {
        "date_of_service": "2024-05-01",
        "date_of_service_source": "given",
        "lines": [ln.as_dict() for ln in lines],
        "diagnoses": [d.as_dict() for d in claim.diagnoses],
        "warnings": [w.as_dict() for w in claim.warnings],
    }
    return facts, claim, result


def test_every_emitted_feature_is_declared(note: tuple[Facts, Claim, dict[str, Any]]) -> None:
    facts, claim, result = note
    lines, dxs, claim_row = F.note_rows(facts, claim, result)
    for row in lines:
        F.check_row(row, "line")
        assert set(row) == set(F.FEATURE_NAMES["line"])
    for row in dxs:
        F.check_row(row, "dx")
        assert set(row) == set(F.FEATURE_NAMES["dx"])
    F.check_row(claim_row, "claim")
    assert set(claim_row) == set(F.FEATURE_NAMES["claim"])
    with pytest.raises(KeyError, match="not declared"):
        F.check_row({**claim_row, "raw_word_count": 3}, "claim")


def test_values_are_numbers_strings_or_string_lists(note: tuple[Facts, Claim, dict[str, Any]]) -> None:
    facts, claim, result = note
    lines, dxs, claim_row = F.note_rows(facts, claim, result)
    for row in [*lines, *dxs, claim_row]:
        for k, v in row.items():
            ok = isinstance(v, bool | int | float | str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
            assert ok, (k, v)


def test_pipeline_signals(note: tuple[Facts, Claim, dict[str, Any]]) -> None:
    facts, claim, result = note
    n = F.note_features(facts, result)
    assert n["era"] == "2014+" and n["icd"] == "10" and n["year_bucket"] == "jz" and n["dos_source"] == "given"
    assert n["product_state"] == "named" and n["product_available"] == "yes" and n["admin_source"] == "stated_total"
    assert n["total_vs_sum"] == "total_higher" and n["dose_gap"] == pytest.approx(20 / 120)
    assert n["waste_arith"] == "consistent"  # 120 + 80 = 200
    assert n["n_sides_unknown"] == 1 and n["n_group_muscles"] == 1 and n["n_inj_no_units"] == 1
    assert not n["units_complete"] and n["vial_known"] and n["waste_documented"]
    assert sorted(n["excluded_reasons"]) == ["historical", "section:plan"]
    assert n["warnings"] == ["MUSCLE_COUNT_AMBIGUOUS"] and n["n_warn_warning"] == 1
    assert n["n_lines"] == 4 and n["n_dx"] == 1 and n["n_dx_in_dx_section"] == 1


def test_line_features(note: tuple[Facts, Claim, dict[str, Any]]) -> None:
    facts, claim, result = note
    chemo, guide, drug, jw = (F.line_features(facts, ln, result, lines=claim.lines) for ln in claim.lines)
    assert chemo["l_rule"] == "CD-NECK-1" and chemo["l_family"] == "head_neck" and chemo["l_side_mod"] == "50"
    assert chemo["l_n_sources"] == 2 and chemo["l_src_unsided"] == 0 and chemo["l_src_regions"] == ["neck"]
    assert sorted(chemo["l_src_match"]) == ["abbrev", "name"]
    assert guide["l_addon"] and guide["l_kind"] == "guidance"
    assert drug["l_family"] == "drug" and drug["l_drug_units_vs_admin"] == pytest.approx(1.0)
    assert jw["l_jw"] and jw["l_n_same_code"] == 2 and jw["l_drug_units_vs_admin"] == -1.0


def test_dx_and_claim_features(note: tuple[Facts, Claim, dict[str, Any]]) -> None:
    facts, claim, result = note
    d = F.dx_features(facts, claim.diagnoses[0], result)
    assert d["d_cat"] == "G24" and d["d_in_dx_section"] and d["d_concepts"] == ["cervical_dystonia"]
    c = F.claim_features(facts, claim, result)
    assert c["c_n_chemo"] == 1 and c["c_n_guidance"] == 1 and c["c_n_drug"] == 2 and c["c_has_addon"]
    assert c["c_codes"] == ["64616", "95874", "J0585"] and not c["c_empty"]


def test_pure_and_deterministic(note: tuple[Facts, Claim, dict[str, Any]]) -> None:
    facts, claim, result = note
    before = repr(facts), repr(claim), repr(result)
    assert F.note_rows(facts, claim, result) == F.note_rows(facts, claim, result)
    assert (repr(facts), repr(claim), repr(result)) == before
    note_part, parts = F.note_parts(facts, claim, result)
    lines, dxs, claim_row = F.note_rows(facts, claim, result)
    assert [{**note_part, **p} for p in parts["line"]] == lines and {**note_part, **parts["claim"][0]} == claim_row


def test_empty_claim() -> None:
    facts = Facts(toxin_mentioned=True, cancelled=True)
    result = {
        "date_of_service": "2010-03-01",
        "date_of_service_source": "note",
        "lines": [],
        "diagnoses": [],
        "warnings": [{"code": "PROCEDURE_NOT_PERFORMED", "severity": "warning"}],
    }
    lines, dxs, c = F.note_rows(facts, Claim(), result)
    assert lines == [] and dxs == []
    assert c["c_empty"] and c["cancelled"] and c["era"] == "2006-2013" and c["icd"] == "9"
    assert c["frac_inj_with_units"] == -1.0 and c["product_state"] == "none"


def test_feature_hash_tracks_names_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    h = F.feature_hash()
    assert len(h) == 64 and h == F.feature_hash()
    monkeypatch.setattr(F, "FEATURE_VERSION", F.FEATURE_VERSION + "x")
    assert F.feature_hash() != h
    monkeypatch.undo()
    monkeypatch.setitem(F.FEATURE_NAMES, "claim", [*F.FEATURE_NAMES["claim"], "something_new"])
    assert F.feature_hash() != h
