"""Chemodenervation, neurolysis and guidance lines from Facts, driven by ``rules/*.csv``.

The only logic here: grouping injections by region and side, counting muscles per extremity, choosing
the primary extremity, and applying each rule row's laterality mode. Codes, count bands, dates and
options all come from the tables.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date

from nlp.facts import Evidence, Facts, Injection
from nlp.loaders import Row, in_force, split, table
from nlp.mapping.model import Claim, ClaimLine

EXTREMITY = {"upper_extremity": "upper", "lower_extremity": "lower"}
GIRDLE = {"pectoralis_major", "latissimus_dorsi", "teres_major"}
UNGUIDED_REGIONS = {"salivary", "axilla", "palm", "sole", "skin_other", "bladder", "anal_sphincter", "esophagus", "extraocular"}


@functools.cache
def cpt_descriptions() -> dict[str, str]:
    return {r["code"]: r["summary_own_words"] for r in table("codes/cpt.csv")}


@dataclass
class _Group:
    """Injections that share one rule: a region (or one extremity) with its sides and evidence."""

    region: str
    sides: set[str]
    muscles: set[tuple[str, str | None]]
    evidence: list[Evidence]
    groups: set[str]
    unsided: list[str]
    injections: list[Injection] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.muscles)


def _region_of(inj: Injection, options: tuple[str, ...]) -> str:
    if inj.muscle_id in GIRDLE and "girdle_as_trunk" in options:
        return "trunk"
    return inj.region


def _rules_for(region: str, dos: date, options: tuple[str, ...]) -> list[Row]:
    return list(_rules_by_region(dos, options).get(region, ()))


def _by_region(rows: list[Row]) -> dict[str, tuple[Row, ...]]:
    out: dict[str, list[Row]] = {}
    for r in rows:
        out.setdefault(r["region"], []).append(r)
    return {k: tuple(v) for k, v in out.items()}


def _rules_by_region(dos: date, options: tuple[str, ...]) -> dict[str, tuple[Row, ...]]:
    """Chemodenervation rows in force by region, in table order."""
    return in_force("rules/chemodenervation.csv", dos, options, _by_region)


def _band(rows: list[Row], role: str, count: int) -> Row | None:
    for r in rows:
        if r["role"] != role:
            continue
        lo = int(r["muscles_min"] or 1)
        hi = int(r["muscles_max"]) if r["muscles_max"] else math.inf
        if lo <= count <= hi:
            return r
    return None


def _line(
    row: Row,
    units: int,
    modifiers: list[str],
    evidence: list[Evidence],
    reason: str,
    kind: str = "procedure",
    sources: list[Injection] | None = None,
) -> ClaimLine:
    return ClaimLine(
        system="CPT",
        code=row["code"],
        units=units,
        modifiers=modifiers,
        description=cpt_descriptions().get(row["code"], ""),
        rule=row["rule_id"],
        reason=reason,
        evidence=list(evidence),
        kind=kind,
        sources=list(sources or []),
    )


def _sided(
    row: Row,
    sides: set[str],
    evidence: list[Evidence],
    what: str,
    options: tuple[str, ...],
    claim: Claim,
    names: list[str],
    sources: list[Injection],
) -> list[ClaimLine]:
    """Lines for a per-side code under C3: both sides → -50 (or RT + LT lines), one side → RT/LT."""
    base = f"{what}: {row['reason']}"
    if {"L", "R"} <= sides:
        if "rt_lt_lines" in options:
            right = [i for i in sources if i.side != "L"]
            left = [i for i in sources if i.side != "R"]
            return [
                _line(row, 1, ["RT"], [i.evidence for i in right], base + "; right side", sources=right),
                _line(row, 1, ["LT"], [i.evidence for i in left], base + "; left side", sources=left),
            ]
        return [_line(row, 1, ["50"], evidence, base + "; both sides injected, reported once with -50", sources=sources)]
    if sides == {"R"}:
        return [_line(row, 1, ["RT"], evidence, base + "; right side only", sources=sources)]
    if sides == {"L"}:
        return [_line(row, 1, ["LT"], evidence, base + "; left side only", sources=sources)]
    claim.warn("LATERALITY_UNDOCUMENTED", names=", ".join(sorted(set(names))) or row["region"])
    return [_line(row, 1, [], evidence, base + "; side not documented", sources=sources)]


def _groups(facts: Facts, options: tuple[str, ...], dos: date) -> dict[str, _Group]:
    out: dict[str, _Group] = {}
    # the migraine code exists only from 2013; before it the same muscles are coded by region
    migraine = facts.migraine_protocol and bool(_rules_for("migraine", dos, options))
    for inj in facts.injections:
        region = _region_of(inj, options)
        if migraine and region in ("facial", "trigeminal", "neck", "trunk"):
            region = "migraine"
        g = out.get(region)
        if g is None:  # (setdefault would build a group for every injection)
            g = out[region] = _Group(region, set(), set(), [], set(), [])
        if inj.side in ("L", "R"):
            g.sides.add(inj.side)
        else:
            g.unsided.append(inj.name)
        for cid in inj.count_ids:
            g.muscles.add((cid, inj.side if region in ("trunk",) else None))
        g.evidence.append(inj.evidence)
        g.injections.append(inj)
        if inj.is_group:
            g.groups.add(inj.name.replace(" (group)", "").split(" (")[0])
    return out


def _extremities(facts: Facts, options: tuple[str, ...]) -> dict[tuple[str, str], _Group]:
    """One group per limb per side: (upper|lower, L|R|?)."""
    out: dict[tuple[str, str], _Group] = {}
    for inj in facts.injections:
        region = _region_of(inj, options)
        if region not in EXTREMITY:
            continue
        key = (EXTREMITY[region], inj.side or "?")
        g = out.get(key)
        if g is None:
            g = out[key] = _Group(region, {inj.side} if inj.side else set(), set(), [], set(), [])
        for cid in inj.count_ids:
            g.muscles.add((cid, None))
        g.evidence.append(inj.evidence)
        g.injections.append(inj)
        if inj.is_group:
            g.groups.add(inj.name.replace(" (group)", "").split(" (")[0])
    return out


_LIMB_NAME = {
    ("upper", "L"): "left upper extremity",
    ("upper", "R"): "right upper extremity",
    ("lower", "L"): "left lower extremity",
    ("lower", "R"): "right lower extremity",
    ("upper", "?"): "upper extremity (side not documented)",
    ("lower", "?"): "lower extremity (side not documented)",
}


def chemodenervation_lines(facts: Facts, dos: date, options: tuple[str, ...], claim: Claim) -> list[ClaimLine]:
    """Procedure lines for the injected muscles and sites (C1, C3–C6, C12, C14)."""
    lines: list[ClaimLine] = []
    groups = _groups(facts, options, dos)
    ambiguous = sorted({n for g in groups.values() for n in g.groups})
    if ambiguous:
        claim.warn("MUSCLE_COUNT_AMBIGUOUS", names=", ".join(ambiguous))
    girdle = sorted({i.name for i in facts.injections if i.muscle_id in GIRDLE})
    if girdle and "girdle_as_trunk" not in options:
        claim.warn("GIRDLE_MUSCLE_AS_EXTREMITY", names=", ".join(girdle))
    if "migraine" in groups:
        claim.warn("MIGRAINE_PROTOCOL")
    # regions sharing one code in the era (64613 neck+larynx, 64614 limbs+trunk) are merged into one line
    by_code: dict[str, tuple[Row, set[str], list[Evidence], list[str], list[str], list[Injection]]] = {}
    extremity_done = False
    per_site: dict[str, list] = {}
    for region in sorted(groups):
        g = groups[region]
        rule_region = "extremity" if region in EXTREMITY else region
        rows = _rules_for(rule_region, dos, options)
        if not rows:
            continue
        if rule_region == "extremity" and any(r["role"] in ("primary", "addon") for r in rows):
            if not extremity_done:
                lines.extend(_extremity_lines(facts, rows, options))
                extremity_done = True
            continue
        if any(r["role"] == "per_site" for r in rows):
            row = next(r for r in rows if r["role"] == "per_site")
            n = len({k for k in _extremities(facts, options) if EXTREMITY.get(region) == k[0]}) or 1
            units, ev, _, src = per_site.setdefault(row["code"], [0, [], row, []])
            per_site[row["code"]][0] = units + n
            ev.extend(g.evidence)
            src.extend(g.injections)
            continue
        row = _band(rows, "session", g.count if region != "trunk" else len(g.muscles)) or rows[0]
        if row["code"] in ("64999", "53899"):
            claim.warn("UNLISTED_CODE", site=region.replace("_", " "), code=row["code"])
        entry = by_code.setdefault(row["code"], (row, set(), [], [], [], []))
        entry[1].update(g.sides)
        entry[2].extend(g.evidence)
        entry[3].extend(g.unsided)
        entry[4].append(region.replace("_", " "))
        entry[5].extend(g.injections)
    for _code, (units, evidence, row, src) in per_site.items():
        lines.append(_line(row, units, [], evidence, f"{row['reason']} ({units} site(s))", sources=src))
    for _code, (row, sides, evidence, unsided, regions, src) in by_code.items():
        what = " and ".join(sorted(set(regions)))
        if row["laterality"] == "sided":
            lines.extend(_sided(row, sides, evidence, what, options, claim, unsided, src))
        else:
            n = len(
                {m for r in regions for m in groups.get(r.replace(" ", "_"), _Group("", set(), set(), [], set(), [])).muscles}
            )
            extra = f" ({n} muscles)" if row["region"] == "trunk" else ""
            lines.append(_line(row, 1, [], evidence, f"{what}: {row['reason']}{extra}", sources=src))
    return lines


def _extremity_lines(facts: Facts, rows: list[Row], options: tuple[str, ...]) -> list[ClaimLine]:
    """C4: the extremity with most muscles is primary; each other extremity one add-on by its count."""
    limbs = _extremities(facts, options)
    order = sorted(limbs, key=lambda k: (-limbs[k].count, k[0] != "upper", k[1]))
    lines: list[ClaimLine] = []
    for i, key in enumerate(order[:4]):
        g = limbs[key]
        role = "primary" if i == 0 else "addon"
        row = _band(rows, role, g.count)
        if row is None:
            continue
        reason = f"{_LIMB_NAME[key]}: {g.count} muscle(s); {row['reason']}"
        same = next((ln for ln in lines if ln.code == row["code"]), None)
        if same is not None:  # a second add-on extremity of the same band: one line, units added
            same.units += 1
            same.reason += f"; {reason}"
            same.evidence.extend(g.evidence)
            same.sources.extend(g.injections)
            continue
        lines.append(_line(row, 1, [], g.evidence, reason, sources=g.injections))
    return lines


def neurolysis_lines(facts: Facts, dos: date, options: tuple[str, ...], claim: Claim) -> list[ClaimLine]:
    """C13: 64640, one unit per nerve per side, RT/LT."""
    if not facts.nerves:
        return []
    rows = _rules_for("nerve", dos, options)
    if not rows:
        return []
    row = rows[0]
    by_side: dict[str, list] = defaultdict(list)
    for n in facts.nerves:
        by_side[n.side or ""].append(n)
    lines = []
    for side in sorted(by_side, key=lambda s: {"R": 0, "L": 1, "": 2}[s]):
        nerves = by_side[side]
        mods = {"R": ["RT"], "L": ["LT"], "": []}[side]
        names = ", ".join(n.name for n in nerves)
        if not side:
            claim.warn("NEUROLYSIS_SIDE_UNDOCUMENTED", names=names)
        where = {"R": "right", "L": "left", "": "side not documented"}[side]
        lines.append(
            _line(row, len(nerves), mods, [n.evidence for n in nerves], f"{names} ({where}): {row['reason']}", kind="neurolysis")
        )
    return lines


def _by_method(rows: list[Row]) -> dict[str, Row]:
    return {r["method"]: r for r in rows}


def _guidance_rows(dos: date, options: tuple[str, ...]) -> dict[str, Row]:
    """Guidance rows in force by method (the last row of a method wins)."""
    return in_force("rules/guidance.csv", dos, options, _by_method)


@functools.cache
def _addon_primaries() -> dict[str, set[str]]:
    return {r["addon"]: set(split(r["primaries"])) for r in table("rules/addons.csv")}


def line_method(line: ClaimLine) -> str | None:
    """The guidance method of a procedure line: needle EMG or stimulation if any of its injections had it."""
    methods = [i.guidance for i in line.sources if i.guidance]
    electro = [m for m in methods if m in ("emg", "estim")]
    if electro:
        kinds = set(electro)
        if len(kinds) == 1:  # what max over one method gives
            return electro[0]
        return max(kinds, key=lambda m: (electro.count(m), -electro.index(m)))
    if "ultrasound" in methods:
        return "ultrasound"
    return None


def guidance_lines(
    facts: Facts, dos: date, options: tuple[str, ...], claim: Claim, procedures: list[ClaimLine]
) -> list[ClaimLine]:
    """C7/C8: one guidance unit per unit of chemodenervation it guides (or one per day by option)."""
    if not procedures:
        return []
    rows = _guidance_rows(dos, options)
    per_method: dict[str, list[ClaimLine]] = defaultdict(list)
    ultrasound: list[ClaimLine] = []
    for ln in procedures:
        m = line_method(ln)
        if any(i.guidance == "ultrasound" for i in ln.sources):
            ultrasound.append(ln)
        if m in ("emg", "estim"):
            per_method[m].append(ln)
    if len(per_method) > 1:
        claim.warn("GUIDANCE_MULTIPLE", methods=", ".join(sorted(per_method)), chosen="each line's own method")
    if facts.guidance:
        evidence = {m: [e for mm, e in facts.guidance if mm == m] for m in ("emg", "estim", "ultrasound")}
    else:
        evidence = {"emg": [], "estim": [], "ultrasound": []}
    lines: list[ClaimLine] = []
    for method, guided_all in sorted(per_method.items()):
        row = rows.get(method)
        if row is None:
            continue
        allowed = _addon_primaries().get(row["code"], set())
        for ln in guided_all:
            if ln.code not in allowed and ln.code == "64617":
                claim.warn("GUIDANCE_INCLUDED", method="Needle-EMG" if method == "emg" else "Stimulation", code="64617")
        guided = [ln for ln in guided_all if ln.code in allowed]
        if not guided:
            continue
        units = 1 if "guidance_per_session" in options else sum(ln.units for ln in guided)
        codes = ", ".join(f"{ln.code}{''.join('-' + m for m in ln.modifiers)}" for ln in guided)
        lines.append(
            ClaimLine(
                system="CPT",
                code=row["code"],
                units=units,
                modifiers=[],
                description=cpt_descriptions().get(row["code"], ""),
                rule=row["rule_id"],
                reason=f"{row['reason']}; guides {codes}",
                evidence=evidence.get(method, []),
                kind="guidance",
            )
        )
    if ultrasound:
        row = rows.get("ultrasound")
        allowed = _addon_primaries().get(row["code"], set()) if row else set()
        guided = [ln for ln in ultrasound if ln.code in allowed]
        if row is None or not guided:
            claim.warn("ULTRASOUND_NOT_BILLED")
        else:
            lines.append(
                ClaimLine(
                    system="CPT",
                    code=row["code"],
                    units=1,
                    modifiers=[],
                    description=cpt_descriptions().get(row["code"], ""),
                    rule=row["rule_id"],
                    reason=row["reason"],
                    evidence=evidence["ultrasound"],
                    kind="guidance",
                )
            )
    return lines
