"""HCPCS drug lines (C9–C11): product → J-code by date, billing units, JW/JZ by date."""

from __future__ import annotations

import functools
import math
from datetime import date

from nlp import lexicons
from nlp.facts import Facts
from nlp.loaders import Row, in_force, is_active, table
from nlp.mapping.model import Claim, ClaimLine

EPS = 1e-9


@functools.cache
def _hcpcs_by_product() -> dict[str, list[Row]]:
    out: dict[str, list[Row]] = {}
    for r in table("codes/hcpcs.csv"):
        out.setdefault(r["product"], []).append(r)
    return out


def _hcpcs_for(product: str, dos: date) -> Row | None:
    for r in _hcpcs_by_product().get(product, ()):
        if is_active(r, dos):
            return r
    return None


def _by_kind(rows: list[Row]) -> dict[str, Row]:
    return {r["kind"]: r for r in rows}


def _drug_rules(dos: date, options: tuple[str, ...]) -> dict[str, Row]:
    """Drug rows in force by kind (the last row of a kind wins)."""
    return in_force("rules/drug.csv", dos, options, _by_kind)


def _unclassified() -> Row:
    return next(r for r in table("codes/hcpcs.csv") if r["code"] == "J3490")


@functools.cache
def _billable_products() -> tuple[tuple[str, date, str], ...]:
    """(product id, available from, serotype) of every product that is not cosmetic-only."""
    return tuple(
        (pid, date.fromisoformat(p["available_from"]), p["serotype"])
        for pid, p in lexicons.products().items()
        if p["cosmetic_only"] != "1"
    )


def _candidates(serotype: str | None, dos: date) -> list[str]:
    out = []
    for pid, start, sero in _billable_products():
        if start > dos:
            continue
        if serotype and sero != serotype:
            continue
        out.append(pid)
    return sorted(out)


def resolve_product(facts: Facts, dos: date, claim: Claim) -> str | None:
    """The product to bill, or None (with the warning that says why)."""
    products = lexicons.products()
    if facts.product:
        if len(facts.products_named) > 1:
            claim.warn(
                "MULTIPLE_PRODUCTS",
                products=", ".join(products[p]["brand"] for p in facts.products_named),
                chosen=products[facts.product]["brand"],
            )
        return facts.product
    cands = _candidates(facts.serotype, dos)
    if len(cands) == 1 and facts.serotype:
        claim.warn("PRODUCT_TYPE_INFERRED", product=products[cands[0]]["brand"])
        return cands[0]
    claim.warn("PRODUCT_NOT_DOCUMENTED", candidates=", ".join(products[c]["brand"] for c in cands) or "none")
    return None


def drug_lines(facts: Facts, dos: date, options: tuple[str, ...], claim: Claim) -> list[ClaimLine]:
    """J-code lines for the toxin administered (and discarded) at this session."""
    product = resolve_product(facts, dos, claim)
    if product is None:
        return []
    prow = lexicons.products()[product]
    brand = prow["brand"]
    if prow["cosmetic_only"] == "1":
        claim.warn("PRODUCT_COSMETIC", product=brand)
        return []
    admin = facts.administered_units
    if admin is None or admin <= 0:
        claim.warn("DOSE_NOT_DOCUMENTED")
        return []
    if admin > float(prow["max_plausible_units"]):
        claim.warn("DOSE_IMPLAUSIBLE", detail=f"{admin:g} U", product=brand)
        return []
    hrow = _hcpcs_for(product, dos)
    if hrow is None:
        claim.warn("PRODUCT_CODE_NOT_IN_FORCE", product=brand, dos=dos.isoformat())
        hrow = _unclassified()
        per = 1.0
    else:
        per = float(hrow["units_per_billing_unit"])
    rules = _drug_rules(dos, options)
    admin_bu = math.ceil(admin / per - EPS)
    source = {
        "stated_total": "stated total",
        "sum_of_muscles": "sum of the muscle doses",
        "product_dose": "dose stated with the product",
    }.get(facts.administered_source or "", "documented")
    per_txt = f"{per:g} U" if per != 1 else "1 U"
    reason = f"{brand} {admin:g} U administered ({source}) at {per_txt} per billing unit, rounded up: {admin_bu}"
    evidence = list(facts.product_evidence[:1]) + list(facts.administered_evidence)
    vial = facts.vial_units
    disc = facts.discarded_units
    if disc is not None and vial is not None and disc > 0 and admin + disc > vial + EPS:
        claim.warn("WASTE_EXCEEDS_VIAL", detail=f"{admin:g} + {disc:g} U > {vial:g} U")
        disc = max(0.0, vial - admin)
    disc_bu = math.floor(disc / per + EPS) if disc else 0
    if vial is not None and admin_bu * per >= vial - EPS:
        disc_bu = 0  # the rounded-up administered amount already covers the vial
    code = hrow["code"]
    desc = hrow["description"]
    adm = rules["administered"]
    lines: list[ClaimLine] = []
    waste_ev = list(facts.discarded_evidence) + list(facts.vial_evidence)
    if "waste_same_line" in rules and disc_bu > 0:
        r = rules["waste_same_line"]
        lines.append(
            ClaimLine(
                "HCPCS",
                code,
                admin_bu + disc_bu,
                [],
                desc,
                r["rule_id"],
                f"{reason}; plus {disc_bu} discarded on the same line ({r['reason']})",
                evidence + waste_ev,
                kind="drug",
            )
        )
        return lines
    mods: list[str] = []
    if disc_bu == 0 and "no_waste_jz" in rules and (facts.no_waste or (disc is not None and disc_bu == 0)):
        mods = ["JZ"]
        reason += "; no waste documented, so JZ"
        evidence += waste_ev
    lines.append(
        ClaimLine(
            "HCPCS",
            code,
            admin_bu,
            mods,
            desc,
            rules["no_waste_jz"]["rule_id"] if mods else adm["rule_id"],
            reason,
            evidence,
            kind="drug",
        )
    )
    if disc_bu > 0 and "waste_jw" in rules:
        r = rules["waste_jw"]
        lines.append(
            ClaimLine(
                "HCPCS",
                code,
                disc_bu,
                ["JW"],
                desc,
                r["rule_id"],
                f"{brand} {disc:g} U discarded at {per_txt} per billing unit, rounded down: {disc_bu}",
                waste_ev,
                kind="drug",
            )
        )
    if disc is None and not facts.no_waste and dos >= date(2017, 1, 1):
        detail = f"{vial:g} U opened, {admin:g} U given" if vial else "no vial size or waste statement"
        claim.warn("WASTAGE_UNDOCUMENTED", detail=detail)
    return lines
