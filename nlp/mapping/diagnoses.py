"""ICD-9-CM / ICD-10-CM codes (C2, C15, C16) from diagnosis facts, by date of service.

Concepts combine (stroke + hemiparesis → I69.35x; CP + hemiparesis → G80.2), qualifiers pick the row
(side, dominance, intractability …) from ``codes/icd.csv``, and only diagnoses that support an injected
region are reported. Codes the note lists itself are validated against the official code set in
force (simple-icd-10-cm for ICD-10-CM, the CMS v32 file for ICD-9-CM) and added.
"""

from __future__ import annotations

import functools
from datetime import date

from nlp.facts import Diagnosis, Evidence, Facts
from nlp.loaders import Row, era, is_active, split, table
from nlp.mapping.model import Claim, DiagnosisCode

ICD10_START = date(2015, 10, 1)
SPECIFIC_DYSTONIA = {
    "cervical_dystonia",
    "blepharospasm",
    "oromandibular_dystonia",
    "writers_cramp",
    "focal_dystonia",
    "torsion_dystonia",
    "spasmodic_dysphonia",
    "hemifacial_spasm",
}


def code_system(dos: date) -> str:
    return "ICD-10-CM" if dos >= ICD10_START else "ICD-9-CM"


@functools.cache
def _icd9() -> dict[str, str]:
    return {r["code"]: r["description"] for r in table("codes/icd9cm.csv")}


@functools.cache
def _supports() -> dict[str, set[str]]:
    return {r["concept"]: set(split(r["supports"])) for r in table("lexicon/diagnoses.csv")}


def validate(code: str, system: str, dos: date) -> str | None:
    """The official description when ``code`` is a billable code of ``system`` on ``dos``, else None."""
    r = _icd_by_code().get((code, system))
    if r is not None:
        return r["description"].replace(";", ",") if is_active(r, dos) else None
    if system == "ICD-9-CM":
        return _icd9().get(code)
    import simple_icd_10_cm as icd  # imported lazily: parsing the tabular takes ~1.5 s

    if icd.is_valid_item(code) and icd.is_leaf(code):
        return str(icd.get_description(code))
    return None


def _dominance(side: str | None, handedness: str | None) -> str | None:
    """Official Guidelines I.C.9.d: unstated → right dominant, left non-dominant; ambidextrous → dominant."""
    if side not in ("L", "R"):
        return None
    if handedness == "B":
        return "dominant"
    if handedness in ("L", "R"):
        return "dominant" if handedness == side else "nondominant"
    return "dominant" if side == "R" else "nondominant"


@functools.cache
def _icd_by_code() -> dict[tuple[str, str], Row]:
    """The first row of ``codes/icd.csv`` for each (code, system)."""
    out: dict[tuple[str, str], Row] = {}
    for r in table("codes/icd.csv"):
        out.setdefault((r["code"], r["system"]), r)
    return out


@functools.cache
def _icd_by_concept() -> dict[tuple[str, str], list[tuple[Row, dict[str, str], str | None, int]]]:
    """Rows of ``codes/icd.csv`` by (concept, system), in table order, each with its qualifiers parsed once:
    (row, needed qualifiers without the option, option, how specific the row is)."""
    out: dict[tuple[str, str], list[tuple[Row, dict[str, str], str | None, int]]] = {}
    for r in table("codes/icd.csv"):
        need = dict(q.split("=") for q in r["qualifiers"].split(";") if q) if r["qualifiers"] else {}
        opt = need.pop("option", None)
        out.setdefault((r["concept"], r["system"]), []).append((r, need, opt, len(need) + (1 if opt else 0)))
    return out


_DEFAULT_ZERO = frozenset(("intractable", "status", "aura", "secondary", "chronic"))


_PICKED: dict[tuple[int, str, str, int, tuple[tuple[str, str], ...], tuple[str, ...]], Row | None] = {}


def _pick(concept: str, quals: dict[str, str], dos: date, options: tuple[str, ...]) -> Row | None:
    """The most specific row of ``codes/icd.csv`` for a concept and its qualifiers (remembered per era of
    the table, qualifiers and options)."""
    rows = table("codes/icd.csv")
    key = (id(rows), concept, code_system(dos), era(rows, dos), tuple(sorted(quals.items())), tuple(options))
    if key in _PICKED:
        return _PICKED[key]
    if len(_PICKED) > 65536:
        _PICKED.clear()
    got = _PICKED[key] = _pick_row(concept, quals, dos, options)
    return got


def _pick_row(concept: str, quals: dict[str, str], dos: date, options: tuple[str, ...]) -> Row | None:
    best, best_n = None, -1
    for r, need, opt, n in _icd_by_concept().get((concept, code_system(dos)), ()):
        if not is_active(r, dos):
            continue
        if opt and opt not in options:
            continue
        ok = True
        for k, v in need.items():
            have = quals.get(k)
            if k in _DEFAULT_ZERO:
                have = have or "0"
            if k == "site":
                ok = v in (quals.get("sites") or "").split("|")
            elif have != v:
                ok = False
            if not ok:
                break
        if ok and n > best_n:
            best, best_n = r, n
    return best


def _combine(facts: Facts) -> list[tuple[str, dict[str, str], list[Evidence]]]:
    """Concepts after combination rules, with merged qualifiers and evidence."""
    by: dict[str, tuple[dict[str, str], list[Evidence]]] = {}
    for d in facts.diagnoses:
        got = by.get(d.concept)
        if got is None:
            got = by[d.concept] = ({}, [])
        q, ev = got
        for k, v in d.qualifiers:
            if k == "stroke" and v != "infarction":
                q[k] = v  # a named haemorrhage beats the default type of a bare "stroke"
            elif k == "sites" and q.get("sites"):
                q["sites"] = "|".join(sorted(set(q["sites"].split("|")) | set(v.split("|"))))
            else:
                q.setdefault(k, v)
        ev.append(d.evidence)
    out: dict[str, tuple[dict[str, str], list[Evidence]]] = {}
    hemi = by.get("hemiplegia")
    if "cerebral_palsy" in by:
        q = dict(by["cerebral_palsy"][0])
        if hemi and "cp" not in q:
            q["cp"] = "hemiplegic"
        if "quadriplegia" in by and "cp" not in q:
            q["cp"] = "quadriplegic"
        out["cerebral_palsy"] = (q, by["cerebral_palsy"][1])
    elif "stroke" in by and not hemi and _one_sided_limbs(facts):
        # spasticity of one side's limbs after a stroke is the hemiparesis the stroke left
        q = dict(by["stroke"][0])
        q["side"] = _one_sided_limbs(facts) or ""
        out["stroke_hemiplegia"] = (q, by["stroke"][1])
    elif "stroke" in by and hemi:
        q = dict(by["stroke"][0])
        q.update({k: v for k, v in hemi[0].items() if k == "side"})
        out["stroke_hemiplegia"] = (q, by["stroke"][1] + hemi[1])
    elif hemi:
        out["spastic_hemiplegia"] = hemi
    elif "stroke" in by:
        out["stroke_sequela"] = by["stroke"]
    skip = {"stroke", "hemiplegia", "cerebral_palsy", "spasticity", "tbi", "spinal_cord_injury"}
    if {"cerebral_palsy", "multiple_sclerosis", "hereditary_spastic_paraplegia", "stroke"} & set(by):
        skip |= {"quadriplegia", "paraplegia"}
    if "sixth_nerve_palsy" in by:
        skip |= {"strabismus", "esotropia"}
    if SPECIFIC_DYSTONIA & set(by):
        skip.add("dystonia")
    if "chronic_migraine" in by:
        skip.add("migraine")
    if "writers_cramp" in by:
        skip.add("focal_dystonia")
    for c, v in by.items():
        if c not in skip and c not in out:
            out[c] = v
    for c, (q, _) in out.items():
        if c in ("stroke_hemiplegia", "spastic_hemiplegia"):
            dom = _dominance(q.get("side"), facts.handedness)
            if dom:
                q["dominance"] = dom
    return [(c, q, ev) for c, (q, ev) in out.items()]


def _one_sided_limbs(facts: Facts) -> str | None:
    sides = {i.side for i in facts.injections if i.region in ("upper_extremity", "lower_extremity")}
    sides |= {
        dict(d.qualifiers).get("side") for d in facts.diagnoses if d.concept == "spasticity" and dict(d.qualifiers).get("side")
    }
    sides.discard(None)
    return next(iter(sides)) if len(sides) == 1 and sides <= {"L", "R"} else None


def diagnosis_codes(
    facts: Facts, dos: date, options: tuple[str, ...], claim: Claim, visit_only: bool = False
) -> list[DiagnosisCode]:
    """Diagnosis codes supporting the injected regions, ordered as found, then codes the note lists.
    With ``visit_only`` (no procedure today) every relevant diagnosis stated outside the history is kept."""
    if visit_only:
        facts = Facts(
            diagnoses=[d for d in facts.diagnoses if d.in_dx_section or d.section not in ("history",)],
            handedness=facts.handedness,
            listed_codes=facts.listed_codes,
        )
    regions = {i.region for i in facts.injections}
    if visit_only:
        regions = {"*"} | {r for s in _supports().values() for r in s}
    if "upper_extremity" in regions or "lower_extremity" in regions:
        regions.add("extremity")
    if facts.migraine_protocol:
        regions.add("migraine")
    if facts.nerves:
        regions |= {"extremity", "trunk"}
    system = code_system(dos)
    out: list[DiagnosisCode] = []
    for concept, quals, evidence in _combine(facts):
        support = _supports().get(concept, {"*"} if concept not in _supports() else set())
        if concept in ("stroke_hemiplegia", "spastic_hemiplegia", "stroke_sequela"):
            support = {"extremity", "trunk", "neck"}
        if "*" not in support and not (support & regions):
            continue
        row = _pick(concept, quals, dos, options)
        if row is None:
            continue
        for site_row in _hyperhidrosis_rows(concept, quals, dos, options) or [row]:
            if any(d.code == site_row["code"] for d in out):
                continue
            qtxt = ", ".join(f"{k}={v}" for k, v in sorted(quals.items()) if v)
            out.append(
                DiagnosisCode(
                    system=system,
                    code=site_row["code"],
                    description=site_row["description"].replace(";", ","),
                    rule=site_row["rule_id"],
                    reason=f"{concept.replace('_', ' ')}{f' ({qtxt})' if qtxt else ''} documented; {system} on {dos.isoformat()}",
                    evidence=evidence,
                )
            )
    for lc in facts.listed_codes:
        if lc.kind not in ("ICD-10-CM", "ICD-9-CM"):
            continue
        if lc.kind != system:
            continue
        desc = validate(lc.code, system, dos)
        if desc is None:
            claim.warn("DX_LISTED_INVALID", code=lc.code, dos=dos.isoformat(), system=system)
            continue
        if any(d.code == lc.code for d in out):
            continue
        out.append(
            DiagnosisCode(
                system,
                lc.code,
                desc,
                "DX-LISTED",
                f"listed in the note and valid in {system} on {dos.isoformat()}",
                [lc.evidence],
            )
        )
    if not out and (facts.injections or facts.nerves) and not visit_only:
        claim.warn("DX_NOT_FOUND")
    return out


def _hyperhidrosis_rows(concept: str, quals: dict[str, str], dos: date, options: tuple[str, ...]) -> list[Row]:
    if concept != "hyperhidrosis" or not quals.get("sites") or quals.get("secondary") == "1":
        return []
    rows = []
    for site in quals["sites"].split("|"):
        r = _pick(concept, {**quals, "sites": site}, dos, options)
        if r is not None and r not in rows:
            rows.append(r)
    return rows


__all__ = ["diagnosis_codes", "validate", "code_system", "Diagnosis"]
