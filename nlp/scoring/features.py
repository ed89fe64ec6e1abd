"""Features for the confidence model: pure functions of the pipeline's own signals.

Every function here reads only ``(facts, claim line or diagnosis, result)`` — the :class:`nlp.facts.Facts`
the extractor produced, the mapper's line, and the result object (its warnings, date source and code
set) — and returns a flat ``dict``. Values are numbers, booleans, strings (one-hot encoded by
``DictVectorizer`` as ``name=value``) or lists of strings (one indicator per string). No raw note words
are used: the signals are which rules fired, extraction completeness (product named, dose source, vial,
waste), dose arithmetic, side and group-name handling, context exclusions, warnings, sections, the
distance between evidence pieces, and date/product validity.

The keys each function can emit are listed in :data:`FEATURE_NAMES`; :func:`feature_hash` fingerprints
them with :data:`FEATURE_VERSION`, and a trained model records both in its manifest so that a model
built for other features is refused (``nlp.scoring.model``). Bump :data:`FEATURE_VERSION` whenever a
feature's meaning changes without its name changing.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from datetime import date
from typing import Any

from nlp.facts import Facts

FEATURE_VERSION = "1"

ADDONS = {"64643", "64645", "95873", "95874", "76942"}
SIDE_MODS = {"RT", "LT", "50"}

# note-level features (shared by line, diagnosis and claim rows)
NOTE_FEATURES = [
    "era",
    "icd",
    "dos_source",
    "year_bucket",
    "n_injections",
    "n_regions",
    "regions",
    "n_sides_unknown",
    "n_sides_bilateral",
    "n_group_muscles",
    "n_inj_no_units",
    "frac_inj_with_units",
    "side_rules",
    "match_kinds",
    "n_nerves",
    "n_nerves_unsided",
    "inj_span",
    "inj_gap_max",
    "product_state",
    "product",
    "n_products_named",
    "product_available",
    "serotype",
    "admin_source",
    "has_stated_total",
    "has_sum",
    "total_vs_sum",
    "total_sum_reldiff",
    "dose_gap",
    "units_complete",
    "admin_log",
    "n_sides",
    "region_sides",
    "vial_known",
    "waste_documented",
    "no_waste",
    "waste_arith",
    "admin_exceeds_vial",
    "admin_fraction",
    "guidance_methods",
    "n_guidance_mentions",
    "guidance_negated",
    "inj_guided_frac",
    "inj_guidance",
    "excluded_reasons",
    "n_excluded",
    "n_excluded_muscle",
    "n_excluded_product",
    "warnings",
    "n_warnings",
    "n_warn_error",
    "n_warn_warning",
    "n_warn_info",
    "n_lines",
    "n_dx",
    "n_listed_proc",
    "n_listed_dx",
    "listed_differs",
    "migraine_protocol",
    "cosmetic",
    "cancelled",
    "toxin_mentioned",
    "toxin_today",
    "n_dx_facts",
    "n_dx_in_dx_section",
    "dx_sections",
    "handedness_known",
    "date_in_note",
]
LINE_FEATURES = [
    "l_rule",
    "l_code",
    "l_family",
    "l_kind",
    "l_system",
    "l_units_log",
    "l_mods",
    "l_n_mods",
    "l_side_mod",
    "l_jw",
    "l_jz",
    "l_addon",
    "l_n_evidence",
    "l_ev_span",
    "l_ev_gap_max",
    "l_n_sources",
    "l_src_unsided",
    "l_src_group",
    "l_src_no_units",
    "l_src_regions",
    "l_src_side_rules",
    "l_src_match",
    "l_src_guidance",
    "l_n_same_code",
    "l_drug_units_vs_admin",
]
DX_FEATURES = [
    "d_rule",
    "d_listed",
    "d_cat",
    "d_system",
    "d_n_evidence",
    "d_in_dx_section",
    "d_sections",
    "d_concepts",
    "d_n_quals",
    "d_n_same_cat",
    "d_ev_first",
]
CLAIM_FEATURES = [
    "c_codes",
    "c_rules",
    "c_kinds",
    "c_n_chemo",
    "c_n_guidance",
    "c_n_drug",
    "c_n_neuro",
    "c_has_addon",
    "c_drug_units_log",
    "c_src_unsided",
    "c_src_group",
    "c_src_no_units",
    "c_lines_no_evidence",
    "c_dx_rules",
    "c_dx_listed",
    "c_empty",
]
FEATURE_NAMES: dict[str, list[str]] = {
    "note": NOTE_FEATURES,
    "line": NOTE_FEATURES + LINE_FEATURES,
    "dx": NOTE_FEATURES + DX_FEATURES,
    "claim": NOTE_FEATURES + CLAIM_FEATURES,
}


def feature_hash() -> str:
    """SHA-256 of the feature version and every feature name, in order."""
    blob = json.dumps({"version": FEATURE_VERSION, "names": FEATURE_NAMES}, sort_keys=True).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


# ----------------------------------------------------------------------------------------------
# helpers


def _log(v: float | None) -> float:
    return math.log1p(max(0.0, float(v))) if v is not None else -1.0


def _family(code: str) -> str:
    if code in ("64612", "64613", "64614"):
        return "chemo_classic"
    if code in ("64642", "64643", "64644", "64645"):
        return "extremity"
    if code in ("64646", "64647"):
        return "trunk"
    if code in ("64615", "64616", "64617"):
        return "head_neck"
    if code in ("64611", "64650", "64653", "67345", "46505", "52287", "43236", "43201"):
        return "gland_sphincter"
    if code in ("64999", "53899"):
        return "unlisted"
    if code in ("95873", "95874", "76942"):
        return "guidance"
    if code == "64640":
        return "neurolysis"
    if code.startswith("J"):
        return "drug"
    return "other"


def _match_kind(text: str, name: str) -> str:
    t = text.lower()
    n = name.lower().split(" (")[0]
    if n in t:
        return "name"
    if len(t.replace(" ", "")) <= 6:
        return "abbrev"
    return "alias"


def _gaps(starts: list[int]) -> float:
    s = sorted(starts)
    return float(max((b - a for a, b in zip(s, s[1:], strict=False)), default=0))


def _dos(result: dict[str, Any]) -> date | None:
    try:
        return date.fromisoformat(result.get("date_of_service") or "")
    except ValueError:
        return None


def _product_available(facts: Facts, dos: date | None) -> str:
    if facts.product is None or dos is None:
        return "na"
    from nlp import lexicons

    row = lexicons.products().get(facts.product)
    if row is None:
        return "unknown"
    return "yes" if date.fromisoformat(row["available_from"]) <= dos else "no"


def _reason(r: str) -> str:
    return r if len(r) <= 40 else r[:40]


# ----------------------------------------------------------------------------------------------
# note level


def note_features(facts: Facts, result: dict[str, Any]) -> dict[str, Any]:
    """Features of the whole note (shared by its lines, diagnoses and claim)."""
    dos = _dos(result)
    inj = facts.injections
    warnings = [w["code"] for w in result.get("warnings", [])]
    sev = Counter(w.get("severity", "") for w in result.get("warnings", []))
    with_units = [i for i in inj if i.units is not None]
    st, su = facts.stated_total, facts.sum_units
    if st is not None and su is not None:
        total_vs_sum = "equal" if abs(st - su) < 0.51 else ("total_higher" if st > su else "total_lower")
        reldiff = abs(st - su) / max(st, su, 1.0)
    else:
        total_vs_sum, reldiff = ("total_only" if st is not None else ("sum_only" if su is not None else "none")), 0.0
    admin, vial, disc = facts.administered_units, facts.vial_units, facts.discarded_units
    if admin is not None and vial is not None and disc is not None:
        waste_arith = "consistent" if abs(admin + disc - vial) < 1.0 else ("over" if admin + disc > vial else "under")
    elif admin is not None and vial is not None:
        waste_arith = "no_waste_stmt_full" if abs(admin - vial) < 1.0 else "no_waste_stmt"
    else:
        waste_arith = "unknown"
    listed_proc = [c for c in facts.listed_codes if c.kind == "procedure"]
    year = dos.year if dos else 0
    return {
        "era": "2014+" if year >= 2014 else "2006-2013",
        "icd": "10" if dos and dos >= date(2015, 10, 1) else "9",
        "dos_source": result.get("date_of_service_source") or "unknown",
        "year_bucket": "jz" if dos and dos >= date(2023, 7, 1) else ("jw" if year >= 2017 else "pre2017"),
        "n_injections": len(inj),
        "n_regions": len({i.region for i in inj}),
        "regions": sorted({i.region for i in inj}),
        "n_sides_unknown": sum(1 for i in inj if i.side not in ("L", "R")),
        "n_sides_bilateral": len({i.muscle_id for i in inj if i.side == "L"} & {i.muscle_id for i in inj if i.side == "R"}),
        "n_group_muscles": sum(1 for i in inj if i.is_group),
        "n_inj_no_units": len(inj) - len(with_units),
        "frac_inj_with_units": len(with_units) / len(inj) if inj else -1.0,
        "side_rules": [i.side_rule for i in inj],
        "match_kinds": [_match_kind(i.evidence.text, i.name) for i in inj],
        "n_nerves": len(facts.nerves),
        "n_nerves_unsided": sum(1 for n in facts.nerves if n.side not in ("L", "R")),
        "inj_span": _log(max((i.evidence.end for i in inj), default=0) - min((i.evidence.start for i in inj), default=0)),
        "inj_gap_max": _log(_gaps([i.evidence.start for i in inj])),
        "product_state": "named" if facts.product else ("serotype" if facts.serotype else "none"),
        "product": facts.product or "none",
        "n_products_named": len(facts.products_named),
        "product_available": _product_available(facts, dos),
        "serotype": facts.serotype or "none",
        "admin_source": facts.administered_source or "none",
        "has_stated_total": st is not None,
        "has_sum": su is not None,
        "total_vs_sum": total_vs_sum,
        "total_sum_reldiff": reldiff,
        "dose_gap": ((st - su) / max(st, 1.0)) if st is not None and su is not None else 0.0,
        "units_complete": bool(inj) and len(with_units) == len(inj),
        "n_sides": len({i.side for i in inj if i.side in ("L", "R")}),
        "region_sides": sorted({f"{i.region}:{i.side or '?'}" for i in inj}),
        "admin_log": _log(admin),
        "vial_known": vial is not None,
        "waste_documented": disc is not None,
        "no_waste": facts.no_waste,
        "waste_arith": waste_arith,
        "admin_exceeds_vial": bool(admin is not None and vial is not None and admin > vial + 0.5),
        "admin_fraction": (admin / vial) if admin is not None and vial else -1.0,
        "guidance_methods": sorted({m for m, _ in facts.guidance}),
        "n_guidance_mentions": len(facts.guidance),
        "guidance_negated": sorted(set(facts.guidance_negated)),
        "inj_guided_frac": (sum(1 for i in inj if i.guidance in ("emg", "estim")) / len(inj)) if inj else -1.0,
        "inj_guidance": [i.guidance or "unset" for i in inj],
        "excluded_reasons": [_reason(x.reason) for x in facts.excluded],
        "n_excluded": len(facts.excluded),
        "n_excluded_muscle": sum(1 for x in facts.excluded if x.label == "MUSCLE"),
        "n_excluded_product": sum(1 for x in facts.excluded if x.label == "PRODUCT"),
        "warnings": warnings,
        "n_warnings": len(warnings),
        "n_warn_error": sev.get("error", 0),
        "n_warn_warning": sev.get("warning", 0),
        "n_warn_info": sev.get("info", 0),
        "n_lines": len(result.get("lines", [])),
        "n_dx": len(result.get("diagnoses", [])),
        "n_listed_proc": len(listed_proc),
        "n_listed_dx": len(facts.listed_codes) - len(listed_proc),
        "listed_differs": "LISTED_CODES_DIFFER" in warnings,
        "migraine_protocol": facts.migraine_protocol,
        "cosmetic": facts.cosmetic,
        "cancelled": facts.cancelled,
        "toxin_mentioned": facts.toxin_mentioned,
        "toxin_today": facts.toxin_today,
        "n_dx_facts": len(facts.diagnoses),
        "n_dx_in_dx_section": sum(1 for d in facts.diagnoses if d.in_dx_section),
        "dx_sections": sorted({d.section for d in facts.diagnoses}),
        "handedness_known": facts.handedness is not None,
        "date_in_note": facts.date_of_service is not None,
    }


# ----------------------------------------------------------------------------------------------
# lines


def line_features(
    facts: Facts, line: Any, result: dict[str, Any], note: dict[str, Any] | None = None, lines: list[Any] | None = None
) -> dict[str, Any]:
    """Features of one claim line (``nlp.mapping.model.ClaimLine``). ``note`` is
    ``note_features(facts, result)`` when already computed; ``lines`` the claim's lines (for counts)."""
    return {**(note if note is not None else note_features(facts, result)), **line_only_features(facts, line, lines)}


def line_only_features(facts: Facts, line: Any, lines: list[Any] | None = None) -> dict[str, Any]:
    """The line's own features (:data:`LINE_FEATURES`), without the note-level ones."""
    src = list(getattr(line, "sources", []) or [])
    ev = list(line.evidence)
    mods = list(line.modifiers)
    same = sum(1 for ln in (lines or []) if ln.code == line.code)
    drug_ratio = -1.0
    if line.system == "HCPCS" and facts.administered_units and "JW" not in mods:
        drug_ratio = min(5.0, line.units / max(facts.administered_units, 1e-9))
    return {
        "l_rule": line.rule,
        "l_code": line.code,
        "l_family": _family(line.code),
        "l_kind": getattr(line, "kind", "procedure"),
        "l_system": line.system,
        "l_units_log": _log(line.units),
        "l_mods": mods,
        "l_n_mods": len(mods),
        "l_side_mod": next((m for m in mods if m in SIDE_MODS), "none"),
        "l_jw": "JW" in mods,
        "l_jz": "JZ" in mods,
        "l_addon": line.code in ADDONS,
        "l_n_evidence": len(ev),
        "l_ev_span": _log(max((e.end for e in ev), default=0) - min((e.start for e in ev), default=0)),
        "l_ev_gap_max": _log(_gaps([e.start for e in ev])),
        "l_n_sources": len(src),
        "l_src_unsided": sum(1 for i in src if i.side not in ("L", "R")),
        "l_src_group": sum(1 for i in src if i.is_group),
        "l_src_no_units": sum(1 for i in src if i.units is None),
        "l_src_regions": sorted({i.region for i in src}),
        "l_src_side_rules": [i.side_rule for i in src],
        "l_src_match": [_match_kind(i.evidence.text, i.name) for i in src],
        "l_src_guidance": sorted({i.guidance or "unset" for i in src}),
        "l_n_same_code": same,
        "l_drug_units_vs_admin": drug_ratio,
    }


# ----------------------------------------------------------------------------------------------
# diagnoses


def dx_features(
    facts: Facts, dx: Any, result: dict[str, Any], note: dict[str, Any] | None = None, dxs: list[Any] | None = None
) -> dict[str, Any]:
    """Features of one diagnosis code (``nlp.mapping.model.DiagnosisCode``)."""
    return {**(note if note is not None else note_features(facts, result)), **dx_only_features(facts, dx, dxs)}


def dx_only_features(facts: Facts, dx: Any, dxs: list[Any] | None = None) -> dict[str, Any]:
    """The diagnosis's own features (:data:`DX_FEATURES`)."""
    starts = {e.start for e in dx.evidence}
    matched = [d for d in facts.diagnoses if d.evidence.start in starts]
    cat = dx.code.split(".")[0][:3]
    return {
        "d_rule": dx.rule,
        "d_listed": dx.rule == "DX-LISTED",
        "d_cat": cat,
        "d_system": dx.system,
        "d_n_evidence": len(dx.evidence),
        "d_in_dx_section": any(d.in_dx_section for d in matched),
        "d_sections": sorted({d.section for d in matched}),
        "d_concepts": sorted({d.concept for d in matched}),
        "d_n_quals": max((len(d.qualifiers) for d in matched), default=0),
        "d_n_same_cat": sum(1 for d in (dxs or []) if d.code.split(".")[0][:3] == cat),
        "d_ev_first": _log(min(starts, default=0)),
    }


# ----------------------------------------------------------------------------------------------
# claim


def claim_features(facts: Facts, claim: Any, result: dict[str, Any], note: dict[str, Any] | None = None) -> dict[str, Any]:
    """Features of the whole claim (``nlp.mapping.model.Claim``): the note plus aggregates of its lines."""
    return {**(note if note is not None else note_features(facts, result)), **claim_only_features(claim)}


def claim_only_features(claim: Any) -> dict[str, Any]:
    """The claim's own features (:data:`CLAIM_FEATURES`): aggregates of its lines and diagnoses."""
    lines = list(claim.lines)
    kinds = Counter(getattr(ln, "kind", "procedure") for ln in lines)
    src = [i for ln in lines for i in (getattr(ln, "sources", []) or [])]
    drug = [ln for ln in lines if ln.system == "HCPCS"]
    return {
        "c_codes": sorted({ln.code for ln in lines}),
        "c_rules": sorted({ln.rule for ln in lines}),
        "c_kinds": sorted(kinds),
        "c_n_chemo": kinds.get("procedure", 0),
        "c_n_guidance": kinds.get("guidance", 0),
        "c_n_drug": kinds.get("drug", 0),
        "c_n_neuro": kinds.get("neurolysis", 0),
        "c_has_addon": any(ln.code in ADDONS for ln in lines),
        "c_drug_units_log": _log(sum(ln.units for ln in drug)) if drug else -1.0,
        "c_src_unsided": sum(1 for i in src if i.side not in ("L", "R")),
        "c_src_group": sum(1 for i in src if i.is_group),
        "c_src_no_units": sum(1 for i in src if i.units is None),
        "c_lines_no_evidence": sum(1 for ln in lines if not ln.evidence),
        "c_dx_rules": sorted({d.rule for d in claim.diagnoses}),
        "c_dx_listed": sum(1 for d in claim.diagnoses if d.rule == "DX-LISTED"),
        "c_empty": not lines,
    }


def note_parts(facts: Facts, claim: Any, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The note-level features once, and each row's own features by kind (``line``, ``dx``, ``claim``):
    a row is ``{**note, **part}``. The scorer encodes the shared part once per note."""
    note = note_features(facts, result)
    return note, {
        "line": [line_only_features(facts, ln, claim.lines) for ln in claim.lines],
        "dx": [dx_only_features(facts, d, claim.diagnoses) for d in claim.diagnoses],
        "claim": [claim_only_features(claim)],
    }


def note_rows(
    facts: Facts, claim: Any, result: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(line rows, diagnosis rows, claim row) of one note, in the order of the claim's lines and diagnoses."""
    note, parts = note_parts(facts, claim, result)
    return ([{**note, **p} for p in parts["line"]], [{**note, **p} for p in parts["dx"]], {**note, **parts["claim"][0]})


def check_row(row: dict[str, Any], kind: str) -> None:
    """Raise ``KeyError`` when a row has a key that :data:`FEATURE_NAMES` does not list (a test guard)."""
    extra = set(row) - set(FEATURE_NAMES[kind])
    if extra:
        raise KeyError(f"features not declared in FEATURE_NAMES[{kind!r}]: {sorted(extra)}")
