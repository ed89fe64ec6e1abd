"""Claim-level checks a coder acts on: NCCI-style pairs, add-ons without primaries, codes the note lists."""

from __future__ import annotations

import functools

from nlp.facts import Facts
from nlp.loaders import split, table
from nlp.mapping.model import Claim, ClaimLine


@functools.cache
def _ptp() -> list[dict[str, str]]:
    return [dict(r) for r in table("edits/ptp.csv")]


@functools.cache
def _addons() -> dict[str, set[str]]:
    return {r["addon"]: set(split(r["primaries"])) for r in table("rules/addons.csv")}


def check_pairs(codes: set[str], claim: Claim, where: str = "") -> None:
    """Warn for every pair of ``codes`` that ``edits/ptp.csv`` says not to report together."""
    for r in _ptp():
        if r["column1"] in codes and r["column2"] in codes:
            claim.warn("NCCI_CONFLICT", col1=r["column1"], col2=r["column2"], reason=r["reason"] + where)


def check_addons(codes: set[str], claim: Claim) -> None:
    for addon, primaries in _addons().items():
        if addon in codes and not (primaries & codes):
            claim.warn("ADDON_WITHOUT_PRIMARY", code=addon)


def _fmt(code: str, mods: list[str], units: int) -> str:
    return code + "".join(f"-{m}" for m in mods) + f" x{units}"


def compare_listed(facts: Facts, lines: list[ClaimLine], claim: Claim) -> None:
    """Warn where the procedure codes the note lists differ from the suggestion (C17 review aid)."""
    listed: dict[str, int] = {}
    for c in facts.listed_codes:
        if c.kind == "procedure":
            listed[c.code] = listed.get(c.code, 0) + c.units
    if not listed:
        return
    suggested: dict[str, int] = {}
    for ln in lines:
        suggested[ln.code] = suggested.get(ln.code, 0) + ln.units
    diffs = []
    for code in sorted(set(listed) | set(suggested)):
        a, b = listed.get(code), suggested.get(code)
        if a != b:
            diffs.append(f"{code}: note {'x' + str(a) if a else 'absent'}, suggested {'x' + str(b) if b else 'absent'}")
    if diffs:
        claim.warn("LISTED_CODES_DIFFER", detail="; ".join(diffs))
    listed_codes = set(listed)
    check_pairs(listed_codes, claim, where=" (codes listed in the note)")
    check_addons(listed_codes, claim)
