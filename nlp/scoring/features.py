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

import functools
import hashlib
import json
import math
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


@functools.lru_cache(maxsize=1024)
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


@functools.lru_cache(maxsize=8192)
def _match_kind(text: str, name: str) -> str:
    t = text.lower()
    n = name.lower().split(" (")[0]
    if n in t:
        return "name"
    if len(t.replace(" ", "")) <= 6:
        return "abbrev"
    return "alias"


def _gaps(starts: list[int]) -> float:
    """The largest distance between consecutive starts (0.0 for fewer than two)."""
    if len(starts) < 2:
        return 0.0
    s = sorted(starts)
    best = 0
    prev = s[0]
    for x in s:
        if x - prev > best:
            best = x - prev
        prev = x
    return float(best)


def _spread(evidence: list[Any]) -> tuple[int, int, float]:
    """Evidence pieces: how many, characters from the first start to the last end (0 if none), and the
    largest distance between consecutive starts."""
    if not evidence:
        return 0, 0, 0.0
    starts = [e.start for e in evidence]
    return len(starts), max(e.end for e in evidence) - min(starts), _gaps(starts)


@functools.lru_cache(maxsize=4096)
def _iso_date(value: str) -> date | None:
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _dos(result: dict[str, Any]) -> date | None:
    return _iso_date(result.get("date_of_service") or "")


@functools.cache
def _available_from(product: str) -> date | None:
    from nlp import lexicons

    row = lexicons.products().get(product)
    return None if row is None else date.fromisoformat(row["available_from"])


def _product_available(facts: Facts, dos: date | None) -> str:
    if facts.product is None or dos is None:
        return "na"
    start = _available_from(facts.product)
    if start is None:
        return "unknown"
    return "yes" if start <= dos else "no"


def _reason(r: str) -> str:
    return r if len(r) <= 40 else r[:40]


# ----------------------------------------------------------------------------------------------
# note level

_ICD10_FROM = date(2015, 10, 1)
_JZ_FROM = date(2023, 7, 1)
_LR = ("L", "R")


def note_features(facts: Facts, result: dict[str, Any]) -> dict[str, Any]:
    """Features of the whole note (shared by its lines, diagnoses and claim)."""
    dos = _dos(result)
    inj = facts.injections
    ws = result.get("warnings", [])
    warnings = [w["code"] for w in ws]
    n_err = n_warn = n_info = 0
    for w in ws:
        sv = w.get("severity", "")
        if sv == "error":
            n_err += 1
        elif sv == "warning":
            n_warn += 1
        elif sv == "info":
            n_info += 1
    # one pass over the injections
    n_inj = len(inj)
    n_units = n_unknown = n_group = n_guided = 0
    regions: set[str] = set()
    left: set[str] = set()
    right: set[str] = set()
    region_sides: set[str] = set()
    side_rules: list[str] = []
    match_kinds: list[str] = []
    inj_guidance: list[str] = []
    for i in inj:
        if i.units is not None:
            n_units += 1
        region, side, ev, g = i.region, i.side, i.evidence, i.guidance
        regions.add(region)
        if side == "L":
            left.add(i.muscle_id)
        elif side == "R":
            right.add(i.muscle_id)
        else:
            n_unknown += 1
        if i.is_group:
            n_group += 1
        side_rules.append(i.side_rule)
        match_kinds.append(_match_kind(ev.text, i.name))
        region_sides.add(f"{region}:{side or '?'}")
        if g in ("emg", "estim"):
            n_guided += 1
        inj_guidance.append(g or "unset")
    _, inj_span, inj_gap = _spread([i.evidence for i in inj])
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
    n_listed_proc = 0
    for c in facts.listed_codes:
        if c.kind == "procedure":
            n_listed_proc += 1
    excluded = facts.excluded
    excluded_reasons: list[str] = []
    n_ex_muscle = n_ex_product = 0
    for x in excluded:
        r = x.reason
        excluded_reasons.append(r if len(r) <= 40 else r[:40])
        if x.label == "MUSCLE":
            n_ex_muscle += 1
        elif x.label == "PRODUCT":
            n_ex_product += 1
    nerves = facts.nerves
    n_nerves_unsided = 0
    for n in nerves:
        if n.side not in _LR:
            n_nerves_unsided += 1
    dxf = facts.diagnoses
    n_dx_section = 0
    dx_sections: set[str] = set()
    for d in dxf:
        if d.in_dx_section:
            n_dx_section += 1
        dx_sections.add(d.section)
    guidance = facts.guidance
    year = dos.year if dos else 0
    return {
        "era": "2014+" if year >= 2014 else "2006-2013",
        "icd": "10" if dos and dos >= _ICD10_FROM else "9",
        "dos_source": result.get("date_of_service_source") or "unknown",
        "year_bucket": "jz" if dos and dos >= _JZ_FROM else ("jw" if year >= 2017 else "pre2017"),
        "n_injections": n_inj,
        "n_regions": len(regions),
        "regions": sorted(regions),
        "n_sides_unknown": n_unknown,
        "n_sides_bilateral": len(left & right),
        "n_group_muscles": n_group,
        "n_inj_no_units": n_inj - n_units,
        "frac_inj_with_units": n_units / n_inj if inj else -1.0,
        "side_rules": side_rules,
        "match_kinds": match_kinds,
        "n_nerves": len(nerves),
        "n_nerves_unsided": n_nerves_unsided,
        "inj_span": _log(inj_span),
        "inj_gap_max": _log(inj_gap),
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
        "units_complete": bool(inj) and n_units == n_inj,
        "n_sides": (1 if left else 0) + (1 if right else 0),
        "region_sides": sorted(region_sides),
        "admin_log": _log(admin),
        "vial_known": vial is not None,
        "waste_documented": disc is not None,
        "no_waste": facts.no_waste,
        "waste_arith": waste_arith,
        "admin_exceeds_vial": bool(admin is not None and vial is not None and admin > vial + 0.5),
        "admin_fraction": (admin / vial) if admin is not None and vial else -1.0,
        "guidance_methods": sorted({m for m, _ in guidance}),
        "n_guidance_mentions": len(guidance),
        "guidance_negated": sorted(set(facts.guidance_negated)),
        "inj_guided_frac": (n_guided / n_inj) if inj else -1.0,
        "inj_guidance": inj_guidance,
        "excluded_reasons": excluded_reasons,
        "n_excluded": len(excluded),
        "n_excluded_muscle": n_ex_muscle,
        "n_excluded_product": n_ex_product,
        "warnings": warnings,
        "n_warnings": len(warnings),
        "n_warn_error": n_err,
        "n_warn_warning": n_warn,
        "n_warn_info": n_info,
        "n_lines": len(result.get("lines", [])),
        "n_dx": len(result.get("diagnoses", [])),
        "n_listed_proc": n_listed_proc,
        "n_listed_dx": len(facts.listed_codes) - n_listed_proc,
        "listed_differs": "LISTED_CODES_DIFFER" in warnings,
        "migraine_protocol": facts.migraine_protocol,
        "cosmetic": facts.cosmetic,
        "cancelled": facts.cancelled,
        "toxin_mentioned": facts.toxin_mentioned,
        "toxin_today": facts.toxin_today,
        "n_dx_facts": len(dxf),
        "n_dx_in_dx_section": n_dx_section,
        "dx_sections": sorted(dx_sections),
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
    code = line.code
    return _line_part(facts, line, sum(1 for ln in (lines or []) if ln.code == code))


def _line_part(facts: Facts, line: Any, same: int) -> dict[str, Any]:
    """:func:`line_only_features` with ``l_n_same_code`` given (counted once per claim by :func:`note_parts`)."""
    src = list(getattr(line, "sources", []) or [])
    ev = line.evidence
    mods = list(line.modifiers)
    code = line.code
    admin = facts.administered_units
    drug_ratio = -1.0
    if line.system == "HCPCS" and admin and "JW" not in mods:
        drug_ratio = min(5.0, line.units / max(admin, 1e-9))
    side_mod = "none"
    for m in mods:
        if m in SIDE_MODS:
            side_mod = m
            break
    n_ev, ev_span, ev_gap = _spread(ev)
    n_unsided = n_group = n_no_units = 0
    regions: set[str] = set()
    side_rules: list[str] = []
    match: list[str] = []
    guidance: set[str] = set()
    for i in src:
        if i.side not in _LR:
            n_unsided += 1
        if i.is_group:
            n_group += 1
        if i.units is None:
            n_no_units += 1
        regions.add(i.region)
        side_rules.append(i.side_rule)
        match.append(_match_kind(i.evidence.text, i.name))
        guidance.add(i.guidance or "unset")
    return {
        "l_rule": line.rule,
        "l_code": code,
        "l_family": _family(code),
        "l_kind": getattr(line, "kind", "procedure"),
        "l_system": line.system,
        "l_units_log": _log(line.units),
        "l_mods": mods,
        "l_n_mods": len(mods),
        "l_side_mod": side_mod,
        "l_jw": "JW" in mods,
        "l_jz": "JZ" in mods,
        "l_addon": code in ADDONS,
        "l_n_evidence": n_ev,
        "l_ev_span": _log(ev_span),
        "l_ev_gap_max": _log(ev_gap),
        "l_n_sources": len(src),
        "l_src_unsided": n_unsided,
        "l_src_group": n_group,
        "l_src_no_units": n_no_units,
        "l_src_regions": sorted(regions),
        "l_src_side_rules": side_rules,
        "l_src_match": match,
        "l_src_guidance": sorted(guidance),
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
    cat = _category(dx.code)
    return _dx_part(facts, dx, sum(1 for d in (dxs or []) if _category(d.code) == cat))


def _category(code: str) -> str:
    return code.split(".")[0][:3]


def _dx_part(facts: Facts, dx: Any, same_cat: int) -> dict[str, Any]:
    """:func:`dx_only_features` with ``d_n_same_cat`` given (counted once per claim by :func:`note_parts`)."""
    evidence = dx.evidence
    starts = {e.start for e in evidence}
    in_dx_section = False
    sections: set[str] = set()
    concepts: set[str] = set()
    n_quals = 0
    for d in facts.diagnoses:
        if d.evidence.start in starts:
            if d.in_dx_section:
                in_dx_section = True
            sections.add(d.section)
            concepts.add(d.concept)
            if len(d.qualifiers) > n_quals:
                n_quals = len(d.qualifiers)
    return {
        "d_rule": dx.rule,
        "d_listed": dx.rule == "DX-LISTED",
        "d_cat": _category(dx.code),
        "d_system": dx.system,
        "d_n_evidence": len(evidence),
        "d_in_dx_section": in_dx_section,
        "d_sections": sorted(sections),
        "d_concepts": sorted(concepts),
        "d_n_quals": n_quals,
        "d_n_same_cat": same_cat,
        "d_ev_first": _log(min(starts, default=0)),
    }


# ----------------------------------------------------------------------------------------------
# claim


def claim_features(facts: Facts, claim: Any, result: dict[str, Any], note: dict[str, Any] | None = None) -> dict[str, Any]:
    """Features of the whole claim (``nlp.mapping.model.Claim``): the note plus aggregates of its lines."""
    return {**(note if note is not None else note_features(facts, result)), **claim_only_features(claim)}


def claim_only_features(claim: Any) -> dict[str, Any]:
    """The claim's own features (:data:`CLAIM_FEATURES`): aggregates of its lines and diagnoses."""
    lines = claim.lines
    kinds: dict[str, int] = {}
    codes: set[str] = set()
    rules: set[str] = set()
    has_addon = False
    has_drug = False
    drug_units = 0
    n_unsided = n_group = n_no_units = n_no_ev = 0
    for ln in lines:
        kind = getattr(ln, "kind", "procedure")
        kinds[kind] = kinds.get(kind, 0) + 1
        code = ln.code
        codes.add(code)
        rules.add(ln.rule)
        if code in ADDONS:
            has_addon = True
        if ln.system == "HCPCS":
            has_drug = True
            drug_units += ln.units
        if not ln.evidence:
            n_no_ev += 1
        for i in getattr(ln, "sources", []) or []:
            if i.side not in _LR:
                n_unsided += 1
            if i.is_group:
                n_group += 1
            if i.units is None:
                n_no_units += 1
    dx_rules: set[str] = set()
    n_listed = 0
    for d in claim.diagnoses:
        dx_rules.add(d.rule)
        if d.rule == "DX-LISTED":
            n_listed += 1
    return {
        "c_codes": sorted(codes),
        "c_rules": sorted(rules),
        "c_kinds": sorted(kinds),
        "c_n_chemo": kinds.get("procedure", 0),
        "c_n_guidance": kinds.get("guidance", 0),
        "c_n_drug": kinds.get("drug", 0),
        "c_n_neuro": kinds.get("neurolysis", 0),
        "c_has_addon": has_addon,
        "c_drug_units_log": _log(drug_units) if has_drug else -1.0,
        "c_src_unsided": n_unsided,
        "c_src_group": n_group,
        "c_src_no_units": n_no_units,
        "c_lines_no_evidence": n_no_ev,
        "c_dx_rules": sorted(dx_rules),
        "c_dx_listed": n_listed,
        "c_empty": not lines,
    }


def note_parts(facts: Facts, claim: Any, result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    """The note-level features once, and each row's own features by kind (``line``, ``dx``, ``claim``):
    a row is ``{**note, **part}``. The scorer encodes the shared part once per note."""
    note = note_features(facts, result)
    lines = claim.lines
    same: dict[str, int] = {}
    for ln in lines:
        same[ln.code] = same.get(ln.code, 0) + 1
    dxs = claim.diagnoses
    cats: dict[str, int] = {}
    for d in dxs:
        cat = _category(d.code)
        cats[cat] = cats.get(cat, 0) + 1
    return note, {
        "line": [_line_part(facts, ln, same[ln.code]) for ln in lines],
        "dx": [_dx_part(facts, d, cats[_category(d.code)]) for d in dxs],
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
