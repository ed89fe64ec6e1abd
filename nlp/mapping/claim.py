"""The deterministic mapper: Facts + date of service + payer profile → Claim."""

from __future__ import annotations

from datetime import date

from nlp.facts import Facts
from nlp.mapping.diagnoses import diagnosis_codes
from nlp.mapping.drugs import drug_lines
from nlp.mapping.edits import check_addons, check_pairs, compare_listed
from nlp.mapping.model import Claim
from nlp.mapping.procedures import chemodenervation_lines, guidance_lines, neurolysis_lines

SUPPORTED_FROM = date(2006, 1, 1)


def map_claim(facts: Facts, dos: date, options: tuple[str, ...] = ()) -> Claim:
    """Claim lines, diagnoses and warnings for one note (C1–C17)."""
    claim = Claim()
    if dos < SUPPORTED_FROM:
        claim.warn("DOS_BEFORE_SUPPORTED", dos=dos.isoformat())
    if facts.cosmetic:
        claim.warn("PRODUCT_COSMETIC", product="Cosmetic toxin use")
        return claim
    chemo = chemodenervation_lines(facts, dos, options, claim) if facts.toxin_today else []
    if facts.cancelled and not facts.nerves:
        claim.warn("PROCEDURE_NOT_PERFORMED")
    elif facts.toxin_mentioned and not chemo and not facts.injections:
        if facts.toxin_today and facts.administered_units:
            claim.warn("INJECTION_SITES_UNDOCUMENTED")
        else:
            claim.warn("TOXIN_WITHOUT_INJECTION")
    neuro = neurolysis_lines(facts, dos, options, claim)
    guide = guidance_lines(facts, dos, options, claim, chemo)
    drugs = drug_lines(facts, dos, options, claim) if chemo else []
    claim.lines = chemo + guide + neuro + drugs
    if claim.lines:
        claim.diagnoses = diagnosis_codes(facts, dos, options, claim)
    elif facts.toxin_mentioned:
        # nothing to bill for the toxin, but the visit's diagnoses still help the coder
        claim.diagnoses = diagnosis_codes(facts, dos, options, claim, visit_only=True)
    codes = {ln.code for ln in claim.lines}
    check_pairs(codes, claim)
    check_addons(codes, claim)
    compare_listed(facts, claim.lines, claim)
    return claim
