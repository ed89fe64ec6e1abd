"""Template generator: synthetic botulinum-toxin procedure notes with gold claims (issue 3).

``python -m nlp.training.generate [--n 1000] [--seed 20260321] [--out training_data/generated]``

Writes ``notes/gNNNN.txt`` and ``gold.json`` (the format of ``training_data/README.md``) under ``--out``.
The output is a pure function of ``--n`` and ``--seed``: every note draws from its own
``random.Random(f"{seed}-{index}")``, so adding templates changes notes but never reorders them, and
the split comes from :func:`nlp.training.gold.split_of` of the file name, like the hand-written notes.

How a note is made
------------------
1. **Case.** A scenario (cervical dystonia, blepharospasm, hemifacial spasm, post-stroke or CP or MS
   spasticity, writer's cramp, chronic migraine, axillary hyperhidrosis, sialorrhoea, spasmodic
   dysphonia, bladder, anal fissure, strabismus, phenol neurolysis, or a visit where nothing is injected)
   draws a date of service (2006–2026, both code-set eras), product, guidance, muscles with sides and
   doses, vials and waste: the *facts* of what was done.
2. **Gold.** :func:`gold_claim` codes those facts with this module's own small implementation of
   ``shared/spec/coding-rules.md`` Part 1 (medicare profile) — it never calls the engine's mapper — and
   :func:`gold_dx` picks the diagnosis code(s) by code set.
3. **Text.** A layout (dictated prose, EHR template, pipe or column table, bullets, terse shorthand)
   renders the facts, with controlled noise recorded in the gold record's ``noise`` list (45 % of the notes
   have none, the others one to three kinds):

   ``ambiguous_muscle``   abbreviations (TA, FCR, gastroc), group names ("wrist flexors", counted once),
                          two heads of one muscle (counted once)
   ``unnamed_product``    "botulinum toxin", "BoNT" (no drug line), "type B" (Myobloc), "type A" before
                          2009-04-29 (Botox)
   ``undocumented_waste`` vial and dose but no discard statement (administered line alone)
   ``conflicting_total``  stated total ≠ sum of muscle doses; the vial minus the documented waste says
                          which one is the dictation error, and the gold bills that reconciled amount
   ``negation_plan``      earlier injections in the history, plans and options for next visit,
                          anticipated doses, negated guidance
   ``dictation_typo``     misspelt muscle names and, rarely, product names (the gold codes what was done)
   ``several_procedures`` a second region or a phenol neurolysis in the same session
   ``listed_codes``       a "CPT:" line, right or (sometimes) stale
   ``side_headers``       sides given by block headers ("RIGHT UPPER EXTREMITY:") instead of per muscle

Nothing from ``shared/realworld`` is read or imitated here.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from nlp.training.gold import split_of

SEED = 20260321
N_NOTES = 1000
GENERATOR_VERSION = "1"

D2009_A = date(2009, 4, 29)  # before: "type A" can only be Botox
D2014 = date(2014, 1, 1)
D2017 = date(2017, 1, 1)
D_JZ = date(2023, 7, 1)
D_ICD10 = date(2015, 10, 1)
D_HFS_SIDE = date(2021, 10, 1)
D_MS_2026 = date(2025, 10, 1)

# ----------------------------------------------------------------------------------------------
# data: muscles (own list: canonical name, region, counting key, group?, variants)


@dataclass(frozen=True)
class Muscle:
    key: str
    name: str
    region: str  # facial neck larynx upper lower trunk axilla salivary bladder anal eom
    count_key: str
    group: bool
    variants: tuple[str, ...]  # full names first, then abbreviations
    abbrevs: tuple[str, ...] = ()
    ambiguous: tuple[str, ...] = ()  # abbreviations that mean other muscles elsewhere (TA)


def _m(
    key: str,
    name: str,
    region: str,
    variants: tuple[str, ...] = (),
    abbrevs: tuple[str, ...] = (),
    count_key: str | None = None,
    group: bool = False,
    ambiguous: tuple[str, ...] = (),
) -> Muscle:
    return Muscle(key, name, region, count_key or key, group, (name, *variants), abbrevs, ambiguous)


MUSCLES: dict[str, Muscle] = {
    m.key: m
    for m in [
        # neck
        _m("scm", "sternocleidomastoid", "neck", ("sternomastoid",), ("SCM",)),
        _m("splenius", "splenius capitis", "neck", ("splenius",), ("splenius cap",)),
        _m("trapezius", "trapezius", "neck", ("upper trapezius",), ("trap",), ambiguous=("UT", "trap")),
        _m("levator", "levator scapulae", "neck", (), ("lev scap",), ambiguous=("LS",)),
        _m("semispinalis", "semispinalis capitis", "neck", ("semispinalis",)),
        _m("scalenes", "anterior scalene", "neck", ("scalenus anterior",)),
        _m("longissimus_cap", "longissimus capitis", "neck"),
        # facial
        _m("oo", "orbicularis oculi", "facial", ("pretarsal orbicularis oculi",), ("OO",)),
        _m("corrugator", "corrugator", "facial", ("corrugator supercilii",)),
        _m("procerus", "procerus", "facial"),
        _m("frontalis", "frontalis", "facial"),
        _m("zygomaticus", "zygomaticus major", "facial", ("zygomaticus",)),
        _m("oris", "orbicularis oris", "facial"),
        _m("dao", "depressor anguli oris", "facial", (), ("DAO",)),
        _m("mentalis", "mentalis", "facial"),
        _m("platysma", "platysma", "facial"),
        # larynx
        _m(
            "ta_larynx",
            "thyroarytenoid",
            "larynx",
            ("thyroarytenoid muscle", "thyroarytenoid/lateral cricoarytenoid complex"),
            (),
            ambiguous=("TA",),
        ),
        _m("pca", "posterior cricoarytenoid", "larynx", (), ("PCA",)),
        # upper extremity
        _m("biceps", "biceps brachii", "upper", ("biceps",)),
        _m("brachialis", "brachialis", "upper"),
        _m("brachioradialis", "brachioradialis", "upper", (), (), ambiguous=("BR",)),
        _m("fcr", "flexor carpi radialis", "upper", (), ("FCR",)),
        _m("fcu", "flexor carpi ulnaris", "upper", (), ("FCU",)),
        _m("fds", "flexor digitorum superficialis", "upper", (), ("FDS",)),
        _m("fdp", "flexor digitorum profundus", "upper", (), ("FDP",)),
        _m("fpl", "flexor pollicis longus", "upper", (), ("FPL",)),
        _m("pt", "pronator teres", "upper", (), (), ambiguous=("PT",)),
        _m("adductor_pollicis", "adductor pollicis", "upper"),
        _m("triceps", "triceps", "upper", ("triceps brachii",)),
        _m("pec_major", "pectoralis major", "upper", (), ("pec major",)),
        _m("wrist_flexors", "wrist flexors", "upper", (), (), group=True),
        _m("finger_flexors", "finger flexors", "upper", (), (), group=True),
        # lower extremity
        _m("gastroc", "gastrocnemius", "lower", (), ("gastroc",)),
        _m(
            "gastroc_med",
            "medial gastrocnemius",
            "lower",
            ("medial head of gastrocnemius",),
            ("med gastroc",),
            count_key="gastroc",
        ),
        _m(
            "gastroc_lat",
            "lateral gastrocnemius",
            "lower",
            ("lateral head of gastrocnemius",),
            ("lat gastroc",),
            count_key="gastroc",
        ),
        _m("soleus", "soleus", "lower"),
        _m("tib_post", "tibialis posterior", "lower", (), ("tib post",), ambiguous=("TP",)),
        _m("tib_ant", "tibialis anterior", "lower", (), ("tib ant",), ambiguous=("TA",)),
        _m("fdl", "flexor digitorum longus", "lower", (), ("FDL",)),
        _m("fhl", "flexor hallucis longus", "lower", (), ("FHL",)),
        _m("ehl", "extensor hallucis longus", "lower", (), ("EHL",)),
        _m("rectus_femoris", "rectus femoris", "lower", (), (), ambiguous=("RF",)),
        _m("semitendinosus", "semitendinosus", "lower"),
        _m("adductor_longus", "adductor longus", "lower"),
        _m("adductor_magnus", "adductor magnus", "lower"),
        _m("hamstrings", "hamstrings", "lower", ("medial hamstrings",), (), group=True),
        _m("hip_adductors", "hip adductors", "lower", (), (), group=True),
        _m("iliopsoas", "iliopsoas", "lower"),
        # trunk
        _m("lumbar_paraspinals", "lumbar paraspinals", "trunk", ("lumbar paraspinal muscles",)),
        _m("thoracic_paraspinals", "thoracic paraspinals", "trunk"),
        _m("ql", "quadratus lumborum", "trunk", (), ("QL",)),
        _m("rectus_abdominis", "rectus abdominis", "trunk"),
        # glands and sphincters
        _m("axilla", "axilla", "axilla", ("axillary skin",)),
        _m("parotid", "parotid gland", "salivary", ("parotid",)),
        _m("submandibular", "submandibular gland", "salivary", ("submandibular",)),
        _m("detrusor", "detrusor", "bladder", ("bladder wall",)),
        _m("ias", "internal anal sphincter", "anal", ()),
        _m("medial_rectus", "medial rectus", "eom", ()),
    ]
}

MIGRAINE_SITES = ("frontalis", "corrugator", "procerus", "occipitalis", "temporalis", "trapezius", "cervical paraspinals")

PRODUCTS: dict[str, dict[str, Any]] = {
    # per: units per HCPCS billing unit; code; available: first DOS the code exists
    "botox": {"code": "J0585", "per": 1, "from": date(2000, 1, 1), "brand": "Botox", "generic": "onabotulinumtoxinA"},
    "dysport": {"code": "J0586", "per": 5, "from": date(2010, 1, 1), "brand": "Dysport", "generic": "abobotulinumtoxinA"},
    "xeomin": {"code": "J0588", "per": 1, "from": date(2012, 1, 1), "brand": "Xeomin", "generic": "incobotulinumtoxinA"},
    "myobloc": {"code": "J0587", "per": 100, "from": date(2000, 1, 1), "brand": "Myobloc", "generic": "rimabotulinumtoxinB"},
    "daxxify": {"code": "J0589", "per": 1, "from": date(2024, 4, 1), "brand": "Daxxify", "generic": "daxibotulinumtoxinA-lanm"},
}
# dose multiplier against Botox units, vial sizes, rounding step of a per-muscle dose
DOSE_SCALE = {"botox": 1.0, "xeomin": 1.0, "daxxify": 1.5, "dysport": 3.0, "myobloc": 50.0}
VIALS = {
    "botox": (100, 200),
    "xeomin": (50, 100, 200),
    "daxxify": (50, 100),
    "dysport": (300, 500),
    "myobloc": (2500, 5000, 10000),
}
STEP = {"botox": 5, "xeomin": 5, "daxxify": 5, "dysport": 10, "myobloc": 250}

NERVES = {
    "obturator": ("obturator nerve", "lower"),
    "musculocutaneous": ("musculocutaneous nerve", "upper"),
    "tibial": ("tibial nerve", "lower"),
}

# ----------------------------------------------------------------------------------------------
# the case: facts of what was done


@dataclass
class Inj:
    muscle: str
    side: str  # "L" | "R"
    units: float
    text: str = ""
    start: int = -1


@dataclass
class Case:
    note_id: str
    dos: date
    scenario: str
    performed: bool = True
    product: str | None = None  # product actually used
    product_named: str = "brand"  # brand | generic | both | unnamed | type_a | type_b | typo
    guidance: str = "none"  # emg | estim | ultrasound | none (for the main region group)
    guided_regions: set[str] = field(default_factory=set)
    injections: list[Inj] = field(default_factory=list)
    migraine: bool = False
    nerves: list[tuple[str, str]] = field(default_factory=list)  # (nerve key, side)
    vial_count: int = 1
    vial_size: int = 100
    waste_mode: str = "stated"  # stated | remainder | zero | undocumented
    stated_total: float | None = None
    dx: list[list[str]] = field(default_factory=list)
    dx_optional: list[str] = field(default_factory=list)
    dx_text: list[str] = field(default_factory=list)
    noise: list[str] = field(default_factory=list)
    handedness: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def administered(self) -> float:
        return float(sum(i.units for i in self.injections))

    @property
    def vial_total(self) -> int:
        return self.vial_count * self.vial_size

    @property
    def discarded(self) -> float | None:
        """Documented waste (None when not documented)."""
        if self.waste_mode == "undocumented":
            return None
        if self.waste_mode == "zero":
            return 0.0
        return max(0.0, self.vial_total - self.administered)

    @property
    def billed_product(self) -> str | None:
        """The product a careful coder can bill from the text (None: not named)."""
        if self.product is None:
            return None
        if self.product_named in ("brand", "generic", "both", "typo"):
            return self.product
        if self.product_named == "type_b":
            return "myobloc"
        if self.product_named == "type_a" and self.dos < D2009_A:
            return "botox"
        return None


# ----------------------------------------------------------------------------------------------
# gold: this module's own implementation of coding-rules Part 1 (medicare)


def _side_mod(sides: set[str]) -> str:
    if {"L", "R"} <= sides:
        return "50"
    return "RT" if sides == {"R"} else "LT"


def gold_claim(case: Case) -> list[str]:
    """The claim lines (``CODE[-MOD]xUNITS``) a careful coder bills for ``case`` (medicare profile)."""
    if not case.performed:
        return []
    dos = case.dos
    new = dos >= D2014
    by_region: dict[str, list[Inj]] = {}
    for i in case.injections:
        by_region.setdefault(MUSCLES[i.muscle].region if i.muscle in MUSCLES else "migraine", []).append(i)
    chemo: list[tuple[str, str, int, str]] = []  # code, modifier, units, guidance group (region)

    def sides(regions: tuple[str, ...]) -> set[str]:
        return {i.side for r in regions for i in by_region.get(r, [])}

    if case.migraine:
        chemo.append(("64615", "", 1, "migraine"))
    if "facial" in by_region:
        chemo.append(("64612", _side_mod(sides(("facial",))), 1, "facial"))
    if new:
        if "neck" in by_region:
            chemo.append(("64616", _side_mod(sides(("neck",))), 1, "neck"))
        if "larynx" in by_region:
            chemo.append(("64617", _side_mod(sides(("larynx",))), 1, "larynx"))
        limbs: dict[tuple[str, str], set[str]] = {}
        for r in ("upper", "lower"):
            for i in by_region.get(r, []):
                limbs.setdefault((r, i.side), set()).add(MUSCLES[i.muscle].count_key)
        counts = sorted((len(v) for v in limbs.values()), reverse=True)
        for k, n in enumerate(counts[:4]):
            code = ("64642" if n <= 4 else "64644") if k == 0 else ("64643" if n <= 4 else "64645")
            chemo.append((code, "", 1, "limb"))
        if "trunk" in by_region:
            n = len({(MUSCLES[i.muscle].count_key, i.side) for i in by_region["trunk"]})
            chemo.append(("64646" if n <= 5 else "64647", "", 1, "trunk"))
    else:
        if "neck" in by_region or "larynx" in by_region:
            chemo.append(("64613", _side_mod(sides(("neck", "larynx"))), 1, "neck" if "neck" in by_region else "larynx"))
        if any(r in by_region for r in ("upper", "lower", "trunk")):
            chemo.append(("64614", _side_mod(sides(("upper", "lower", "trunk"))), 1, "limb"))
    for region, code in (("axilla", "64650"), ("salivary", "64611"), ("bladder", "52287"), ("anal", "46505"), ("eom", "67345")):
        if region in by_region:
            chemo.append((code, "", 1, region))
    lines: Counter[str] = Counter()
    for code, mod, units, _ in chemo:
        lines[code + (f"-{mod}" if mod else "")] += units
    # guidance: one unit per guided chemodenervation unit; never with 64617 and the gland/sphincter codes
    guidable = {"64612", "64613", "64614", "64615", "64616", "64642", "64643", "64644", "64645", "64646", "64647"}
    if case.guidance in ("emg", "estim"):
        n = sum(u for code, _, u, grp in chemo if code in guidable and _guided(case, grp))
        if n:
            lines["95874" if case.guidance == "emg" else "95873"] += n
    # neurolysis: 64640 one unit per nerve per side
    for side, mod in (("R", "RT"), ("L", "LT")):
        n = len({nv for nv, s in case.nerves if s == side})
        if n:
            lines[f"64640-{mod}"] += n
    lines.update(_drug_lines(case))
    return [f"{k}x{v}" for k, v in lines.items()]


def _guided(case: Case, group: str) -> bool:
    if not case.guided_regions:
        return True
    if group == "limb":
        return bool(case.guided_regions & {"upper", "lower", "trunk", "limb"})
    return group in case.guided_regions or (group == "larynx" and "neck" in case.guided_regions)


def _drug_lines(case: Case) -> Counter[str]:
    out: Counter[str] = Counter()
    product = case.billed_product
    if product is None or not case.injections:
        return out
    p = PRODUCTS[product]
    code, per = p["code"], p["per"]
    admin = case.administered
    admin_bu = math.ceil(admin / per - 1e-9)
    disc = case.discarded
    disc_bu = math.floor(disc / per + 1e-9) if disc else 0
    if admin_bu * per >= case.vial_total:
        disc_bu = 0
    if case.dos < D2017:
        out[code] += admin_bu + disc_bu
        return out
    if disc == 0 and case.dos >= D_JZ:
        out[f"{code}-JZ"] += admin_bu
    else:
        out[code] += admin_bu
    if disc_bu > 0:
        out[f"{code}-JW"] += disc_bu
    return out


# ----------------------------------------------------------------------------------------------
# diagnoses


def _icd(case: Case, icd10: str | list[str], icd9: str | list[str]) -> list[str]:
    v = icd10 if case.dos >= D_ICD10 else icd9
    return [v] if isinstance(v, str) else list(v)


def gold_dx(case: Case, concept: str, **q: Any) -> list[str]:
    """Acceptable codes for one diagnosis concept on the case's date of service."""
    d = case.dos
    if concept == "cervical_dystonia":
        return _icd(case, "G24.3", "333.83")
    if concept == "blepharospasm":
        return _icd(case, "G24.5", "333.81")
    if concept == "hemifacial_spasm":
        if d >= D_HFS_SIDE:
            return ["G51.31" if q["side"] == "R" else "G51.32"]
        return _icd(case, "G51.3", "351.8")
    if concept == "stroke":
        hand = case.handedness or "R"
        dominant = q["side"] == hand
        if d >= D_ICD10:
            return [
                {("R", True): "I69.351", ("L", True): "I69.352", ("R", False): "I69.353", ("L", False): "I69.354"}[
                    (q["side"], dominant)
                ]
            ]
        return ["438.21" if dominant else "438.22"]
    if concept == "cp":
        return _icd(
            case,
            {"quadriplegic": "G80.0", "diplegic": "G80.1", "hemiplegic": "G80.2"}[q["cp"]],
            {"quadriplegic": "343.2", "diplegic": "343.0", "hemiplegic": "343.1"}[q["cp"]],
        )
    if concept == "ms":
        if d >= D_MS_2026:
            return [{"relapsing": "G35.A", "secondary": "G35.C0", "primary": "G35.B0", "": "G35.D"}[q["ms"]]]
        return _icd(case, "G35", "340")
    if concept == "migraine":
        return _icd(case, "G43.719" if q["intractable"] else "G43.709", "346.71" if q["intractable"] else "346.70")
    if concept == "hyperhidrosis":
        return _icd(case, "L74.510", "705.21")
    if concept == "sialorrhea":
        return _icd(case, "K11.7", "527.7")
    if concept == "dysphonia":
        return _icd(case, "J38.3", "478.79")
    if concept == "writers_cramp":
        return _icd(case, ["G24.8", "G25.89"], "333.84")
    if concept == "oab":
        return _icd(case, "N32.81", "596.51")
    if concept == "fissure":
        return _icd(case, "K60.1", "565.0")
    if concept == "esotropia":
        return _icd(case, "H50.00", "378.00")
    raise KeyError(concept)


# ----------------------------------------------------------------------------------------------
# sampling helpers


def _dos(rng: random.Random, lo: date = date(2006, 1, 1), hi: date = date(2026, 5, 31)) -> date:
    era = rng.random()
    if lo < D2014 and era < 0.3:
        a, b = lo, min(hi, date(2013, 12, 31))
    elif era < 0.45 and hi >= D2014:
        a, b = max(lo, D2014), min(hi, date(2016, 12, 31))
    else:
        a, b = max(lo, D2017), hi
    if a > b:
        a, b = lo, hi
    return a + timedelta(days=rng.randrange((b - a).days + 1))


def _product(rng: random.Random, dos: date, choices: dict[str, float]) -> str:
    ok = {p: w for p, w in choices.items() if PRODUCTS[p]["from"] <= dos}
    names = sorted(ok)
    return rng.choices(names, weights=[ok[n] for n in names])[0]


def _dose(rng: random.Random, product: str, lo: float, hi: float) -> float:
    scale = DOSE_SCALE[product]
    step = STEP[product]
    v = rng.uniform(lo, hi) * scale
    v = max(step, round(v / step) * step)
    return float(v)


def _small_dose(rng: random.Random, product: str, choices: tuple[float, ...]) -> float:
    return float(rng.choice(choices)) * (DOSE_SCALE[product] if product != "myobloc" else 40.0)


def _fit_vials(rng: random.Random, case: Case) -> None:
    """Vial size and count covering the administered amount."""
    sizes = [s for s in VIALS[case.product or "botox"] if not (case.product == "botox" and s == 200 and case.dos.year < 2010)]
    admin = case.administered
    size = rng.choice(sizes)
    count = max(1, math.ceil(admin / size - 1e-9))
    while count > 4 and size != max(sizes):
        size = max(sizes)
        count = max(1, math.ceil(admin / size - 1e-9))
    case.vial_size, case.vial_count = size, count


# ----------------------------------------------------------------------------------------------
# scenarios: each fills injections, product, guidance, dx


def _pick_product(rng: random.Random, case: Case, weights: dict[str, float]) -> None:
    case.product = _product(rng, case.dos, weights)


def sc_cervical(rng: random.Random, case: Case) -> None:
    daxxify = case.dos >= date(2024, 4, 1)
    _pick_product(rng, case, {"botox": 5, "dysport": 2, "xeomin": 2, "myobloc": 1, **({"daxxify": 0.8} if daxxify else {})})
    pool = ["scm", "splenius", "trapezius", "levator", "semispinalis", "scalenes", "longissimus_cap"]
    n = rng.choice((2, 3, 3, 4, 4, 5))
    chosen = rng.sample(pool[:5] if n <= 4 else pool, n)
    pattern = rng.random()
    for k, m in enumerate(chosen):
        if pattern < 0.3:
            sides = [rng.choice("LR")] if k == 0 else [case.injections[0].side]
        else:
            sides = [rng.choice("LR")] if rng.random() < 0.6 else ["L", "R"]
        for s in sides:
            lo, hi = {"scm": (15, 50), "splenius": (40, 100), "trapezius": (25, 70), "levator": (20, 50)}.get(m, (15, 40))
            case.injections.append(Inj(m, s, _dose(rng, case.product, lo, hi)))
    if pattern >= 0.3 and len({i.side for i in case.injections}) == 1:
        other = "L" if case.injections[0].side == "R" else "R"
        case.injections.append(Inj("scm", other, _dose(rng, case.product, 15, 40)))
    case.guidance = rng.choices(["emg", "none", "ultrasound", "estim"], [6, 2.5, 1, 0.5])[0]
    case.dx = [gold_dx(case, "cervical_dystonia")]
    case.dx_text = [
        rng.choice(
            [
                "Cervical dystonia",
                "Spasmodic torticollis",
                "Cervical dystonia (spasmodic torticollis)",
                "Idiopathic cervical dystonia with rotational torticollis",
            ]
        )
    ]


def sc_bleph(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 5, "xeomin": 2})
    for s in ("R", "L"):
        case.injections.append(Inj("oo", s, _small_dose(rng, case.product, (10, 12.5, 15, 17.5, 20, 25))))
    if rng.random() < 0.4:
        case.injections.append(Inj("procerus", rng.choice("LR"), _small_dose(rng, case.product, (2.5, 5))))
    if rng.random() < 0.3:
        for s in ("R", "L"):
            case.injections.append(Inj("corrugator", s, _small_dose(rng, case.product, (2.5, 5))))
    case.guidance = "none"
    case.dx = [gold_dx(case, "blepharospasm")]
    case.dx_text = [rng.choice(["Benign essential blepharospasm", "Blepharospasm", "Essential blepharospasm, bilateral"])]


def sc_hfs(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 5, "xeomin": 2})
    side = rng.choice("LR")
    pool = ["oo", "zygomaticus", "oris", "corrugator", "frontalis", "dao", "mentalis", "platysma"]
    for m in ["oo", *rng.sample(pool[1:], rng.choice((1, 2, 3)))]:
        case.injections.append(Inj(m, side, _small_dose(rng, case.product, (2.5, 5, 7.5, 10, 12.5))))
    case.guidance = "none"
    case.dx = [gold_dx(case, "hemifacial_spasm", side=side)]
    word = {"L": "left", "R": "right"}[side]
    case.dx_text = [
        rng.choice(
            [f"Hemifacial spasm, {word}", f"{word.capitalize()} hemifacial spasm", f"{word.capitalize()}-sided hemifacial spasm"]
        )
    ]
    case.extra["side"] = side


UPPER_POOL = [
    "biceps",
    "brachialis",
    "brachioradialis",
    "fcr",
    "fcu",
    "fds",
    "fdp",
    "fpl",
    "pt",
    "adductor_pollicis",
    "pec_major",
]
LOWER_POOL = ["gastroc", "soleus", "tib_post", "fdl", "fhl", "rectus_femoris", "semitendinosus", "adductor_longus", "ehl"]


def _limb(rng: random.Random, case: Case, region: str, side: str, n: int, lo: float, hi: float) -> None:
    pool = list(UPPER_POOL if region == "upper" else LOWER_POOL)
    if "ambiguous_muscle" in case.noise and rng.random() < 0.6:
        if region == "lower":
            pool = ["gastroc_med", "gastroc_lat", "hamstrings", "hip_adductors", "tib_ant", *[p for p in pool if p != "gastroc"]]
        else:
            pool = ["wrist_flexors", "finger_flexors", *[p for p in pool if p not in ("fcr", "fcu", "fds", "fdp")]]
    chosen = rng.sample(pool, min(n, len(pool)))
    if "gastroc_med" in chosen and "gastroc_lat" not in chosen and rng.random() < 0.7:
        chosen.append("gastroc_lat")
    if "gastroc_lat" in chosen and "gastroc_med" not in chosen:
        chosen.append("gastroc_med")
    for m in chosen:
        case.injections.append(Inj(m, side, _dose(rng, case.product or "botox", lo, hi)))


def sc_stroke(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 5, "dysport": 2, "xeomin": 1.5})
    side = rng.choice("LR")
    if rng.random() < 0.3:
        case.handedness = rng.choice("LR")
    _limb(rng, case, "upper", side, rng.choice((1, 2, 3, 4, 5, 6)), 20, 80)
    if rng.random() < 0.45:
        _limb(rng, case, "lower", side, rng.choice((1, 2, 3, 4, 5)), 40, 100)
    case.guidance = rng.choices(["estim", "emg", "ultrasound", "none"], [3, 3, 1.5, 1])[0]
    case.dx = [gold_dx(case, "stroke", side=side)]
    word = {"L": "left", "R": "right"}[side]
    kind = rng.choice(["ischemic stroke", "cerebral infarction", "left MCA stroke" if side == "R" else "right MCA stroke"])
    case.dx_text = [
        rng.choice(
            [
                f"Spastic {word} hemiparesis following {kind}",
                f"{word.capitalize()} hemiparesis due to {kind}",
                f"Post-stroke spasticity, {word} hemiplegia after {kind}",
            ]
        )
    ]
    case.extra["side"] = side


def sc_cp(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 4, "dysport": 3})
    cp = rng.choice(["diplegic", "quadriplegic", "hemiplegic"])
    if cp == "hemiplegic":
        side = rng.choice("LR")
        _limb(rng, case, "lower", side, rng.choice((1, 2, 3)), 20, 60)
        if rng.random() < 0.5:
            _limb(rng, case, "upper", side, rng.choice((1, 2, 3)), 10, 40)
    else:
        n = rng.choice((1, 2, 3, 4, 5, 6))
        for s in "RL":
            _limb(rng, case, "lower", s, max(1, n + rng.choice((-1, 0, 0, 1))), 20, 60)
        if cp == "quadriplegic" and rng.random() < 0.7:
            _limb(rng, case, "upper", rng.choice("LR"), rng.choice((1, 2, 3, 4)), 10, 40)
    case.guidance = rng.choices(["emg", "estim", "ultrasound", "none"], [3, 2, 2, 1])[0]
    case.dx = [gold_dx(case, "cp", cp=cp)]
    word = {
        "diplegic": "spastic diplegic cerebral palsy",
        "quadriplegic": "spastic quadriplegic cerebral palsy",
        "hemiplegic": "hemiplegic cerebral palsy",
    }[cp]
    case.dx_text = [word.capitalize()]


def sc_ms(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 5, "xeomin": 1, "dysport": 1})
    ms = rng.choice(["relapsing", "secondary", ""])
    for s in "RL":
        if s == "R" or rng.random() < 0.8:
            _limb(rng, case, "lower", s, rng.choice((1, 2, 3, 4, 5)), 30, 80)
    if rng.random() < 0.5:
        trunk = rng.sample(["lumbar_paraspinals", "thoracic_paraspinals", "ql", "rectus_abdominis"], rng.choice((1, 2, 3)))
        for m in trunk:
            for s in ("R", "L") if rng.random() < 0.8 else (rng.choice("LR"),):
                case.injections.append(Inj(m, s, _dose(rng, case.product, 20, 50)))
    case.guidance = rng.choices(["emg", "estim", "none"], [4, 1, 1])[0]
    case.dx = [gold_dx(case, "ms", ms=ms)]
    word = {
        "relapsing": "Relapsing-remitting multiple sclerosis",
        "secondary": "Secondary progressive multiple sclerosis",
        "": "Multiple sclerosis",
    }[ms]
    case.dx_text = [word + rng.choice(["", " with lower-extremity spasticity", " with spastic paraparesis"])]


def sc_writers(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 5, "xeomin": 2})
    side = rng.choice("RRRL")
    case.handedness = side
    pool = ["fcr", "fcu", "fds", "fdp", "fpl", "pt", "brachioradialis"]
    if "ambiguous_muscle" in case.noise:
        pool = ["wrist_flexors", "finger_flexors", "fpl", "pt"]
    for m in rng.sample(pool, rng.choice((1, 2, 2, 3, 4))):
        case.injections.append(Inj(m, side, _dose(rng, case.product, 10, 40)))
    case.guidance = rng.choices(["emg", "estim", "ultrasound"], [5, 2, 1])[0]
    case.dx = [gold_dx(case, "writers_cramp")]
    case.dx_text = [
        rng.choice(["Writer's cramp", "Focal hand dystonia (writer's cramp)", "Task-specific focal dystonia of the hand"])
    ]


def sc_migraine(rng: random.Random, case: Case) -> None:
    if case.dos < date(2013, 1, 1):
        case.dos = _dos(rng, date(2013, 1, 1))
    case.product = "botox"
    case.migraine = True
    total = rng.choice((155, 155, 155, 175, 195))
    per_site = {
        "frontalis": 20,
        "corrugator": 10,
        "procerus": 5,
        "occipitalis": 30,
        "temporalis": 40,
        "trapezius": 30,
        "cervical paraspinals": 20,
    }
    extra = total - 155
    case.extra["migraine_sites"] = dict(per_site)
    if extra:
        case.extra["migraine_sites"]["temporalis"] += min(extra, 10)
        case.extra["migraine_sites"]["occipitalis"] += min(max(0, extra - 10), 10)
        case.extra["migraine_sites"]["trapezius"] += max(0, extra - 20)
    for name, u in case.extra["migraine_sites"].items():
        case.injections.append(Inj("migraine:" + name, "B", float(u)))
    case.guidance = "none"
    intractable = rng.random() < 0.6
    case.dx = [gold_dx(case, "migraine", intractable=intractable)]
    case.dx_text = [
        "Chronic migraine without aura, " + ("intractable" if intractable else "not intractable") + ", without status migrainosus"
    ]


def sc_axilla(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 1})
    u = rng.choice((50.0, 50.0, 75.0, 100.0))
    case.injections = [Inj("axilla", "R", u), Inj("axilla", "L", u)]
    case.guidance = "none"
    case.dx = [gold_dx(case, "hyperhidrosis")]
    case.dx_text = [rng.choice(["Primary axillary hyperhidrosis", "Severe primary focal hyperhidrosis of the axillae"])]


def sc_sialorrhea(rng: random.Random, case: Case) -> None:
    case.dos = case.dos if case.dos >= D2014 else _dos(rng, D2014)
    _pick_product(rng, case, {"xeomin": 3, "myobloc": 1, "botox": 1})
    if case.product == "myobloc":
        par, sub = rng.choice(((1000, 250), (1500, 250), (1250, 500)))
    else:
        par, sub = rng.choice(((30, 20), (25, 15), (20, 10)))
    for s in "RL":
        case.injections.append(Inj("parotid", s, float(par)))
        case.injections.append(Inj("submandibular", s, float(sub)))
    case.guidance = "ultrasound" if rng.random() < 0.7 else "none"
    case.dx = [gold_dx(case, "sialorrhea")]
    case.dx_optional = ["G20", "G20.A1", "G20.C", "G20.A2", "G20.B1", "G20.B2", "332.0", "G12.21", "335.20"]
    case.dx_text = [rng.choice(["Sialorrhea due to Parkinson's disease", "Chronic sialorrhea (Parkinson disease)", "Sialorrhea"])]


def sc_dysphonia(rng: random.Random, case: Case) -> None:
    _pick_product(rng, case, {"botox": 1})
    sides = rng.choice((("R", "L"), ("R", "L"), ("L",), ("R",)))
    u = rng.choice((0.625, 1.25, 1.25, 2.5, 2.5, 3.75, 5.0))
    for s in sides:
        case.injections.append(Inj("ta_larynx", s, u))
    case.guidance = "emg"
    case.dx = [gold_dx(case, "dysphonia")]
    case.dx_text = [rng.choice(["Adductor spasmodic dysphonia", "Spasmodic dysphonia (laryngeal dystonia), adductor type"])]


def sc_bladder(rng: random.Random, case: Case) -> None:
    case.dos = case.dos if case.dos >= date(2016, 1, 1) else _dos(rng, date(2016, 1, 1))
    case.product = "botox"
    case.injections = [Inj("detrusor", "B", rng.choice((100.0, 100.0, 200.0)))]
    case.guidance = "none"
    case.dx = [gold_dx(case, "oab")]
    case.dx_text = [rng.choice(["Overactive bladder with urge incontinence, refractory to medication", "Overactive bladder"])]


def sc_fissure(rng: random.Random, case: Case) -> None:
    case.dos = case.dos if case.dos >= date(2008, 1, 1) else _dos(rng, date(2008, 1, 1))
    case.product = "botox"
    u = rng.choice((20.0, 25.0, 30.0, 50.0))
    case.injections = [Inj("ias", "R", u / 2), Inj("ias", "L", u / 2)]
    case.guidance = "none"
    case.dx = [gold_dx(case, "fissure")]
    case.dx_text = ["Chronic anal fissure"]


def sc_strabismus(rng: random.Random, case: Case) -> None:
    case.product = "botox"
    side = rng.choice("LR")
    case.injections = [Inj("medial_rectus", side, rng.choice((2.5, 5.0)))]
    case.guidance = "emg" if rng.random() < 0.3 else "none"
    case.dx = [gold_dx(case, "esotropia")]
    case.dx_text = ["Esotropia"]


SCENARIOS: list[tuple[str, float, Any]] = [
    ("cervical_dystonia", 20, sc_cervical),
    ("blepharospasm", 7, sc_bleph),
    ("hemifacial_spasm", 6, sc_hfs),
    ("stroke_spasticity", 15, sc_stroke),
    ("cerebral_palsy", 7, sc_cp),
    ("ms_spasticity", 6, sc_ms),
    ("writers_cramp", 5, sc_writers),
    ("chronic_migraine", 8, sc_migraine),
    ("axillary_hyperhidrosis", 5, sc_axilla),
    ("sialorrhea", 3, sc_sialorrhea),
    ("spasmodic_dysphonia", 5, sc_dysphonia),
    ("bladder", 2, sc_bladder),
    ("anal_fissure", 2, sc_fissure),
    ("strabismus", 1.5, sc_strabismus),
]

# ----------------------------------------------------------------------------------------------
# rendering


class Writer:
    """Builds the note text and records the offsets of injection mentions."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0

    def add(self, s: str) -> None:
        self.parts.append(s)
        self.pos += len(s)

    def mark(self, inj: Inj, s: str) -> None:
        inj.text, inj.start = s, self.pos
        self.add(s)

    def text(self) -> str:
        return "".join(self.parts)


SIDE_WORD = {"L": "left", "R": "right"}


def _typo(rng: random.Random, word: str) -> str:
    """A plausible dictation/typing error in a long word (swap, drop, double or wrong vowel)."""
    parts = word.split(" ")
    k = max(range(len(parts)), key=lambda j: len(parts[j]))
    w = parts[k]
    if len(w) < 6:
        return word
    i = rng.randrange(2, len(w) - 2)
    kind = rng.choice(("swap", "drop", "double", "vowel"))
    if kind == "swap":
        w = w[:i] + w[i + 1] + w[i] + w[i + 2 :]
    elif kind == "drop":
        w = w[:i] + w[i + 1 :]
    elif kind == "double":
        w = w[:i] + w[i] + w[i:]
    else:
        vowels = "aeiou"
        idx = [j for j in range(2, len(w) - 1) if w[j] in vowels]
        if idx:
            j = rng.choice(idx)
            w = w[:j] + rng.choice([v for v in vowels if v != w[j]]) + w[j + 1 :]
    parts[k] = w
    return " ".join(parts)


def _num(v: float) -> str:
    if v == int(v):
        n = int(v)
        return f"{n:,}" if n >= 1000 and n % 1000 == 0 and n >= 2000 else str(n)
    return f"{v:g}"


def _u(rng: random.Random, v: float, style: str) -> str:
    n = _num(v)
    if style == "terse":
        return rng.choice((f"{n}u", f"{n} u", f"{n}U"))
    if style in ("bullets", "table", "template"):
        return rng.choice((f"{n} units", f"{n} U", f"{n} units"))
    return f"{n} units"


def _muscle_name(rng: random.Random, case: Case, inj: Inj, style: str) -> str:
    if inj.muscle.startswith("migraine:"):
        return inj.muscle.split(":", 1)[1]
    m = MUSCLES[inj.muscle]
    if "ambiguous_muscle" in case.noise and m.ambiguous and rng.random() < 0.8:
        return rng.choice(m.ambiguous)
    use_abbrev = bool(m.abbrevs) and (style == "terse" or (style in ("bullets", "table") and rng.random() < 0.45))
    if use_abbrev:
        name = rng.choice(m.abbrevs)
    else:
        name = rng.choice(m.variants) if rng.random() < 0.35 else m.name
    if "dictation_typo" in case.noise and not use_abbrev and rng.random() < case.extra.get("typo_rate", 0.0):
        name = _typo(rng, name)
    return name


def _product_text(rng: random.Random, case: Case) -> str:
    p = case.product or "botox"
    info = PRODUCTS[p]
    mode = case.product_named
    if mode == "brand":
        return rng.choice((info["brand"], info["brand"], info["brand"].upper() if p == "botox" else info["brand"]))
    if mode == "generic":
        return info["generic"]
    if mode == "both":
        return rng.choice((f"{info['generic']} ({info['brand']})", f"{info['brand']} ({info['generic']})"))
    if mode == "typo":
        return {"botox": "Botx", "dysport": "Dysprot", "xeomin": "Xeomn", "myobloc": "Myoblock", "daxxify": "Daxify"}[p]
    if mode == "type_b":
        return rng.choice(("botulinum toxin type B", "botulinum toxin B"))
    if mode == "type_a":
        return rng.choice(("botulinum toxin type A", "botulinum toxin A"))
    return rng.choice(("botulinum toxin", "BoNT", "the toxin", "botulinum neurotoxin"))


def _date_text(rng: random.Random, d: date) -> str:
    fmt = rng.choice(("%m/%d/%Y", "%Y-%m-%d", "%B %d, %Y", "%m/%d/%Y"))
    return d.strftime(fmt)


GUIDANCE_TEXT = {
    "emg": ("under EMG guidance", "with needle EMG guidance", "using electromyographic guidance", "EMG-guided"),
    "estim": ("under electrical stimulation guidance", "with e-stim guidance", "using a stimulating needle for localization"),
    "ultrasound": ("under ultrasound guidance", "with ultrasound localization", "using ultrasound guidance"),
    "none": ("using anatomic landmarks", "by surface anatomy", ""),
}


def _guidance_sentence(rng: random.Random, case: Case) -> str:
    g = case.guidance
    if g == "emg":
        return rng.choice(
            (
                "Each muscle was localized with needle EMG before injection.",
                "Injections were performed under EMG guidance using a hollow Teflon-coated needle.",
                "EMG guidance was used to confirm placement in each muscle.",
            )
        )
    if g == "estim":
        return rng.choice(
            (
                "Electrical stimulation guidance was used to localize each muscle.",
                "Muscles were localized with electrical stimulation through the injection needle.",
            )
        )
    if g == "ultrasound":
        return rng.choice(
            ("Ultrasound guidance was used to identify each target.", "All injections were performed under ultrasound guidance.")
        )
    if "negation_plan" in case.noise and rng.random() < 0.5:
        return rng.choice(
            (
                "No EMG guidance was used.",
                "EMG guidance was not used today; landmarks only.",
                "Injections were placed by anatomic landmarks without electromyographic guidance.",
            )
        )
    return rng.choice(("Injections were placed using anatomic landmarks.", ""))


def _entry(rng: random.Random, case: Case, w: Writer, inj: Inj, style: str, with_side: bool = True) -> None:
    """One injection entry in the body of the note."""
    name = _muscle_name(rng, case, inj, style)
    side = inj.side
    dose = _u(rng, inj.units, style)
    sides_ok = with_side and side in "LR"
    if style == "prose":
        form = rng.randrange(4)
        if form == 0:
            w.add("The ")
            w.mark(inj, f"{SIDE_WORD[side]} {name}" if sides_ok else name)
            w.add(f" received {dose}")
            w.add(rng.choice((".", " at two sites.", " divided among 3 sites.", ".")))
        elif form == 1:
            w.add(f"{dose.capitalize()} {rng.choice(('was', 'were'))} injected into the ")
            w.mark(inj, f"{SIDE_WORD[side]} {name}" if sides_ok else name)
            w.add(".")
        elif form == 2:
            w.add("The ")
            w.mark(inj, f"{name} on the {SIDE_WORD[side]}" if sides_ok else name)
            w.add(f" was injected with {dose}.")
        else:
            w.add("We injected the ")
            w.mark(inj, f"{SIDE_WORD[side]} {name}" if sides_ok else name)
            w.add(f" with {dose}.")
        w.add(" ")
        return
    if style == "terse":
        sd = {"L": rng.choice(("L", "L", "Lt")), "R": rng.choice(("R", "R", "Rt"))}.get(side, "")
        w.add(f"{_u(rng, inj.units, 'terse')} ")
        w.mark(inj, f"{sd} {name}" if sides_ok else name)
        return
    if style == "bullets":
        w.add(case.extra.setdefault("bullet", rng.choice(("- ", "* ", "• ", "- "))))
        if rng.random() < 0.5:
            w.mark(inj, f"{SIDE_WORD[side].capitalize()} {name}" if sides_ok else name.capitalize())
            w.add(f": {dose}")
        else:
            sd = {"L": "L", "R": "R"}.get(side, "")
            w.mark(inj, f"{sd} {name}" if sides_ok else name)
            w.add(f" {dose}")
        if rng.random() < 0.3:
            n_sites = rng.choice((1, 2, 2, 3))
            w.add(f" ({n_sites} site{'s' if n_sites > 1 else ''})")
        w.add("\n")
        return
    if style == "template":
        w.add("Site: ")
        w.mark(inj, f"{SIDE_WORD[side].capitalize()} {name}" if sides_ok else name)
        w.add(f"   Dose: {dose}\n")
        return
    raise ValueError(style)


def _table(rng: random.Random, case: Case, w: Writer, injs: list[Inj]) -> None:
    pipe = rng.random() < 0.6
    side_col = rng.random() < 0.6
    if pipe:
        w.add("| Muscle | Side | Units |\n|---|---|---|\n" if side_col else "| Muscle | Units |\n|---|---|\n")
    else:
        w.add(f"{'Muscle':<34}{'Side':<8}Units\n" if side_col else f"{'Muscle':<34}Units\n")
    for inj in injs:
        name = _muscle_name(rng, case, inj, "table")
        side = SIDE_WORD.get(inj.side, "").capitalize() if rng.random() < 0.5 else inj.side
        if pipe:
            w.add("| ")
            if side_col:
                w.mark(inj, name)
                w.add(f" | {side} | {_num(inj.units)} |\n")
            else:
                w.mark(inj, f"{SIDE_WORD[inj.side]} {name}")
                w.add(f" | {_num(inj.units)} |\n")
        else:
            if side_col:
                w.mark(inj, name)
                w.add(" " * max(2, 34 - len(name)) + f"{side:<8}{_num(inj.units)}\n")
            else:
                label = f"{SIDE_WORD[inj.side]} {name}"
                w.mark(inj, label)
                w.add(" " * max(2, 34 - len(label)) + f"{_num(inj.units)}\n")


def _body(rng: random.Random, case: Case, w: Writer, style: str, injs: list[Inj]) -> None:
    """The injection list in the chosen layout."""
    if case.migraine:
        _migraine_body(rng, case, w, style)
        return
    region0 = MUSCLES[injs[0].muscle].region
    if region0 in ("axilla", "salivary", "bladder", "anal", "eom"):
        _gland_body(rng, case, w, style)
        return
    headers = (
        "side_headers" in case.noise and style != "table" and all(MUSCLES[i.muscle].region in ("upper", "lower") for i in injs)
    )
    if headers:
        groups: dict[tuple[str, str], list[Inj]] = {}
        for i in injs:
            groups.setdefault((MUSCLES[i.muscle].region, i.side), []).append(i)
        for (region, side), items in groups.items():
            label = rng.choice(
                (
                    f"{SIDE_WORD[side].upper()} {'UPPER' if region == 'upper' else 'LOWER'} EXTREMITY:",
                    f"{side}{'UE' if region == 'upper' else 'LE'}:",
                    f"{SIDE_WORD[side].capitalize()} {'arm' if region == 'upper' else 'leg'}:",
                )
            )
            w.add(label + "\n")
            for i in items:
                _entry(rng, case, w, i, "bullets", with_side=False)
            w.add("\n")
        return
    if style == "table":
        _table(rng, case, w, injs)
        return
    if style == "terse":
        for k, i in enumerate(injs):
            if k:
                w.add(rng.choice((", ", "; ", ", ")))
            _entry(rng, case, w, i, "terse")
        w.add(".\n")
        return
    for i in injs:
        _entry(rng, case, w, i, style)
    if style == "prose":
        w.add("\n")


def _migraine_body(rng: random.Random, case: Case, w: Writer, style: str) -> None:
    sites = case.extra["migraine_sites"]
    n_sites = {
        "frontalis": 4,
        "corrugator": 2,
        "procerus": 1,
        "occipitalis": 6,
        "temporalis": 8,
        "trapezius": 6,
        "cervical paraspinals": 4,
    }
    if style in ("table",):
        w.add("| Muscle | Sites | Units |\n|---|---|---|\n")
    for inj in case.injections:
        name = inj.muscle.split(":", 1)[1]
        sites = n_sites[name]
        both = "" if name == "procerus" else rng.choice((", both sides", " (bilateral)", ", divided bilaterally"))
        if style == "table":
            w.add("| ")
            w.mark(inj, name)
            w.add(f" | {sites} | {_num(inj.units)} |\n")
        elif style in ("bullets", "template", "terse"):
            w.add("- ")
            w.mark(inj, name.capitalize())
            w.add(f": {_num(inj.units)} U total{both}, {sites} site{'s' if sites > 1 else ''}\n")
        else:
            w.mark(inj, name.capitalize())
            w.add(f" {_num(inj.units)} units total in {sites} sites{both}; ")
    if style == "prose":
        w.add("\n")


def _gland_body(rng: random.Random, case: Case, w: Writer, style: str) -> None:
    injs = case.injections
    region = MUSCLES[injs[0].muscle].region
    if region == "axilla":
        u = _num(injs[0].units)
        w.add(
            rng.choice(
                (
                    f"Starch-iodine testing outlined the hyperhidrotic area. {u} units were injected intradermally into each ",
                    f"After Minor starch-iodine test, {u} U intradermal in 10-15 sites per ",
                )
            )
        )
        injs[0].text, injs[0].start = "axilla", w.pos
        injs[1].text, injs[1].start = "axilla", w.pos
        w.add("axilla (right and left).\n")
        return
    if region == "salivary":
        for inj in injs:
            w.add(rng.choice(("- ", "")) + ("" if style != "prose" else "The "))
            w.mark(inj, f"{SIDE_WORD[inj.side]} {MUSCLES[inj.muscle].name}")
            w.add(f": {_u(rng, inj.units, style)}\n")
        return
    if region == "bladder":
        w.add("Flexible cystoscopy performed. ")
        w.add(f"{_u(rng, injs[0].units, style)} diluted in 10 mL saline injected into the ")
        w.mark(injs[0], "detrusor")
        w.add(" at 20 sites, sparing the trigone.\n")
        return
    if region == "anal":
        w.add(f"{_u(rng, injs[0].units, style)} injected into the ")
        injs[0].text, injs[0].start = "internal anal sphincter", w.pos
        injs[1].text, injs[1].start = "internal anal sphincter", w.pos
        w.add("internal anal sphincter, half on each side of the fissure.\n")
        return
    w.add(f"{_u(rng, injs[0].units, style)} injected into the ")
    w.mark(injs[0], f"{SIDE_WORD[injs[0].side]} medial rectus")
    w.add(".\n")


# ----------------------------------------------------------------------------------------------
# the note


_OTHER_MUSCLE = {
    "neck": ["splenius capitis", "levator scapulae", "semispinalis capitis", "trapezius", "anterior scalene"],
    "facial": ["procerus", "corrugator", "frontalis", "zygomaticus major"],
    "upper": ["biceps brachii", "flexor carpi radialis", "pronator teres", "brachioradialis", "flexor pollicis longus"],
    "lower": ["soleus", "tibialis posterior", "medial hamstrings", "adductor longus", "flexor digitorum longus"],
    "migraine": ["masseter", "temporalis", "trapezius"],
    "larynx": ["posterior cricoarytenoid", "thyroarytenoid"],
}


def _main_region(case: Case) -> str:
    if case.migraine:
        return "migraine"
    m = MUSCLES.get(case.injections[0].muscle) if case.injections else None
    return m.region if m else "neck"


def _history(rng: random.Random, case: Case) -> str:
    if case.scenario in ("cervical_dystonia", "blepharospasm", "hemifacial_spasm", "writers_cramp"):
        base = rng.choice(
            (
                "Returns for repeat injection; last cycle gave about 10 weeks of benefit.",
                "Follow-up for scheduled injections. Good response to the prior session.",
                "Patient reports wearing off of the previous injection after 11 weeks.",
            )
        )
    elif case.migraine:
        base = "Chronic migraine with more than 15 headache days per month despite two preventive medications."
    elif case.scenario in ("axillary_hyperhidrosis", "sialorrhea", "bladder", "anal_fissure", "strabismus"):
        base = rng.choice(("Symptoms persist despite conservative treatment.", "Failed first-line therapy."))
    else:
        base = rng.choice(
            (
                "Spasticity interferes with hygiene and dressing despite oral baclofen.",
                "Tone limits gait and positioning; therapy ongoing.",
                "Returns for repeat injections for spasticity.",
            )
        )
    if "negation_plan" in case.noise and case.injections and rng.random() < 0.7:
        inj = rng.choice([i for i in case.injections if not i.muscle.startswith("migraine:")] or case.injections)
        m = inj.muscle.split(":", 1)[1] if inj.muscle.startswith("migraine:") else MUSCLES[inj.muscle].name
        other = rng.choice(_OTHER_MUSCLE.get(_main_region(case), ["trapezius"]))
        old = _num(inj.units + rng.choice((10, 20, 25, 50)) * (1 if case.product != "myobloc" else 50))
        base += " " + rng.choice(
            (
                f"At the last visit the {m} received {old} units and the {other} 40 units.",
                f"Previously injected the {other} with 50 units {rng.choice(('3 months ago', 'in the spring', 'last session'))}.",
                f"History of {other} injection 4 months ago with good effect.",
            )
        )
    return base


def _plan(rng: random.Random, case: Case) -> str:
    base = rng.choice(("Return in 12 weeks.", "Follow up in 3 months for reinjection.", "RTC 12 weeks.", "Reassess in 3 months."))
    if "negation_plan" in case.noise:
        other = rng.choice(_OTHER_MUSCLE.get(_main_region(case), ["trapezius"]))
        options = [
            f"Next visit consider adding the {rng.choice(('left', 'right'))} {other} (50 units).",
            f"May add the {other} next time if symptoms persist.",
            f"Discussed adding the {other} at a future visit.",
            "Up to 400 units anticipated at the next session.",
        ]
        if case.guidance == "none":
            options += ["Will consider EMG guidance next visit.", "Plan ultrasound guidance at the next session."]
        base += " " + rng.choice(options)
    return base


def _amounts_text(rng: random.Random, case: Case, style: str) -> list[str]:
    """Sentences about reconstitution, total, waste."""
    out: list[str] = []
    prod = _product_text(rng, case)
    count = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}.get(case.vial_count, str(case.vial_count))
    vial = f"{count} {_num(case.vial_size)}-unit vial{'s' if case.vial_count > 1 else ''}"
    admin = case.extra.get("admin_truth", case.administered)
    total = case.stated_total if case.stated_total is not None else admin
    if case.product == "myobloc" and case.product_named in ("brand", "generic", "both", "typo", "type_b"):
        out.append(
            f"{prod} {_num(case.vial_size)} units/mL solution, {vial} opened." if rng.random() < 0.5 else f"Drug: {prod}, {vial}."
        )
    else:
        out.append(
            rng.choice(
                (
                    f"{vial.capitalize()} of {prod} reconstituted with {rng.choice(('1', '2', '4'))} mL preservative-free saline.",
                    f"Drug: {prod}; {vial} reconstituted with normal saline.",
                    f"{prod} ({vial}) diluted with saline.",
                )
            )
        )
    show_total = case.stated_total is not None or case.migraine or rng.random() < 0.8
    if show_total:
        out.append(
            rng.choice(
                (
                    f"Total dose administered: {_num(total)} units.",
                    f"Total: {_num(total)} units.",
                    f"A total of {_num(total)} units was injected.",
                )
            )
        )
    disc = case.extra.get("disc_truth", case.discarded)
    if case.waste_mode == "stated":
        if disc and disc > 0:
            out.append(
                rng.choice(
                    (
                        f"{_num(disc)} units were discarded.",
                        f"Wastage: {_num(disc)} units discarded.",
                        f"The remaining {_num(disc)} units were wasted.",
                    )
                )
            )
        else:
            out.append(rng.choice(("No waste.", "Entire vial used; no wastage.")))
    elif case.waste_mode == "remainder":
        if disc and disc > 0:
            out.append(rng.choice(("The remainder of the vial was discarded.", "Unused toxin was discarded.")))
        else:
            out.append("No waste.")
    elif case.waste_mode == "zero":
        out.append(rng.choice(("No waste.", "Entire vial used; no wastage.", "0 units wasted.")))
    return out


def render(rng: random.Random, case: Case) -> str:
    w = Writer()
    style = case.extra["layout"]
    caps = rng.random() < 0.5
    H = (lambda s: s.upper()) if caps else (lambda s: s.title())
    header = rng.choice(
        (
            "PROCEDURE NOTE",
            "Chemodenervation Procedure Note",
            "CLINIC NOTE - BOTULINUM TOXIN",
            "Neurology Procedure",
            "Procedure Record",
        )
    )
    w.add(header + "\n\n")
    if rng.random() < 0.85:
        w.add(f"{H('Date of service')}: {_date_text(rng, case.dos)}\n")
    w.add(f"{H('Patient')}: {rng.choice(('J. Doe', 'Patient A', 'M. Rivera', 'K. Lindqvist', 'T. Okafor', 'R. Haddad'))}\n\n")
    dx_codes = "listed_codes" in case.noise and rng.random() < 0.5
    dx_line = "; ".join(case.dx_text)
    if dx_codes and case.dx:
        dx_line += f" ({case.dx[0][0]})"
    w.add(f"{H('Diagnosis')}: {dx_line}\n")
    if case.handedness:
        w.add(f"{SIDE_WORD[case.handedness].capitalize()}-handed.\n")
    w.add(f"\n{H('History')}: {_history(rng, case)}\n\n")
    if not case.performed:
        reason = case.extra.get("not_done", "declined")
        w.add(f"{H('Assessment and plan')}: ")
        w.add(
            {
                "declined": "Options reviewed. The patient declined botulinum toxin injection today and prefers to continue oral medication.",
                "deferred": "Injection deferred today because of an intercurrent febrile illness; will reschedule in two weeks.",
                "plan": f"Plan {_product_text(rng, case)} injection at the next visit, approximately {_num(case.administered)} units.",
                "aborted": "Procedure was aborted before any injection because of a vasovagal episode; no toxin was administered.",
            }[reason]
        )
        w.add(f"\n\n{_plan(rng, case)}\n")
        return w.text()
    proc = {
        "cervical_dystonia": "Chemodenervation of cervical muscles",
        "blepharospasm": "Chemodenervation of the eyelids",
        "hemifacial_spasm": "Chemodenervation of facial muscles",
        "chronic_migraine": "Chemodenervation for chronic migraine (PREEMPT)",
        "axillary_hyperhidrosis": "Intradermal botulinum toxin, both axillae",
        "sialorrhea": "Salivary gland chemodenervation",
        "spasmodic_dysphonia": "Percutaneous laryngeal chemodenervation",
        "bladder": "Cystoscopy with intradetrusor injection",
        "anal_fissure": "Chemodenervation of internal anal sphincter",
        "strabismus": "Extraocular muscle chemodenervation",
    }.get(case.scenario, "Chemodenervation of extremity muscles")
    guid = rng.choice(GUIDANCE_TEXT[case.guidance]) if case.guidance != "none" else ""
    w.add(f"{H('Procedure')}: {proc}{(' ' + guid) if guid and rng.random() < 0.6 else ''}.\n")
    w.add(f"{H('Procedure details')}: Consent obtained, risks reviewed. ")
    amounts = _amounts_text(rng, case, style)
    w.add(amounts[0] + " ")
    gs = _guidance_sentence(rng, case)
    if gs:
        w.add(gs + " ")
    w.add(rng.choice(("The following were injected:", "Injections:", "Muscles injected:", "Sites and doses:")))
    w.add("\n" if style != "prose" else " ")
    n0 = case.extra.get("second") or len(case.injections)
    _body(rng, case, w, style, case.injections[:n0])
    if case.extra.get("second"):
        w.add(case.extra["second_intro"])
        _second_body(rng, case, w, style, case.injections[n0:])
    if case.nerves:
        _nerve_text(rng, case, w)
    for s in amounts[1:]:
        w.add(s + " ")
    w.add("\nPatient tolerated the procedure well without complication.\n\n")
    if "listed_codes" in case.noise:
        codes = case.extra.get("listed")
        if codes:
            w.add(f"CPT: {codes}\n")
    w.add(f"{H('Plan')}: {_plan(rng, case)}\n")
    return w.text()


def _second_body(rng: random.Random, case: Case, w: Writer, style: str, injs: list[Inj]) -> None:
    for k, i in enumerate(injs):
        if style == "terse" and k:
            w.add(", ")
        _entry(rng, case, w, i, "bullets" if style in ("table", "template") else style)
    if style in ("prose", "terse"):
        w.add("\n")


def _nerve_text(rng: random.Random, case: Case, w: Writer) -> None:
    agent = rng.choice(("6% aqueous phenol", "5% phenol", "50% ethyl alcohol"))
    for nerve, side in case.nerves:
        name = NERVES[nerve][0]
        ml = rng.choice((2, 3, 4, 5))
        w.add(
            rng.choice(
                (
                    f"Neurolysis of the {SIDE_WORD[side]} {name} was performed with {ml} mL of {agent} under "
                    f"stimulation guidance. ",
                    f"{ml} mL {agent} was injected at the {SIDE_WORD[side]} {name} for neurolysis. ",
                )
            )
        )
        case.extra.setdefault("nerve_texts", []).append(f"{SIDE_WORD[side]} {name}")
    w.add("\n")


# ----------------------------------------------------------------------------------------------
# building one case


NOISE_KINDS = (
    "ambiguous_muscle",
    "unnamed_product",
    "undocumented_waste",
    "conflicting_total",
    "negation_plan",
    "dictation_typo",
    "several_procedures",
    "listed_codes",
    "side_headers",
)


def make_case(index: int, seed: int) -> Case:
    rng = random.Random(f"{seed}-{index}")
    note_id = f"g{index:04d}.txt"
    case = Case(note_id=note_id, dos=_dos(rng), scenario="")
    # noise: about a third of the notes are clean
    if rng.random() < 0.45:
        noise: list[str] = []
    else:
        k = rng.choices((1, 2, 3), (6, 3, 1))[0]
        noise = rng.sample(NOISE_KINDS, k)
    case.noise = noise
    names = [s[0] for s in SCENARIOS]
    weights = [s[1] for s in SCENARIOS]
    if rng.random() < 0.06:
        scenario = "not_performed"
    else:
        scenario = rng.choices(names, weights)[0]
    case.scenario = scenario
    case.extra["layout"] = rng.choices(("prose", "bullets", "table", "template", "terse"), (3, 3, 2, 1.5, 1))[0]
    case.extra["typo_rate"] = 0.35
    if scenario == "not_performed":
        real = rng.choice(["cervical_dystonia", "stroke_spasticity", "blepharospasm", "chronic_migraine"])
        case.scenario = real
        dict(SCENARIOS_BY_NAME)[real](rng, case)
        case.performed = False
        case.extra["not_done"] = rng.choice(("declined", "deferred", "plan", "aborted"))
        case.noise = [n for n in case.noise if n in ("negation_plan", "dictation_typo")] + ["not_performed"]
        case.dx = []
        case.product_named = "brand"
        return case
    SCENARIOS_BY_NAME[scenario](rng, case)
    # second procedure in the same session
    if "several_procedures" in noise:
        _add_second(rng, case)
    else:
        case.guided_regions = set()
    # product naming
    case.product_named = rng.choices(("brand", "generic", "both"), (6, 1, 1.5))[0]
    if "unnamed_product" in noise:
        if case.product == "myobloc":
            case.product_named = rng.choice(("type_b", "unnamed"))
        elif case.dos < D2009_A and case.product == "botox":
            case.product_named = rng.choice(("type_a", "unnamed"))
        else:
            case.product_named = rng.choice(("type_a", "unnamed", "unnamed"))
    if "dictation_typo" in noise and rng.random() < 0.1:
        case.product_named = "typo"
    # vials and waste
    _fit_vials(rng, case)
    if abs(case.administered - case.vial_total) < 1e-9:
        case.waste_mode = rng.choice(("zero", "stated", "undocumented_full"))
        if case.waste_mode == "undocumented_full":
            case.waste_mode = "zero"  # the whole vial used is a documented zero waste
    else:
        case.waste_mode = rng.choices(("stated", "remainder", "undocumented"), (6, 1.5, 1.5))[0]
    if "undocumented_waste" in noise and case.administered < case.vial_total:
        case.waste_mode = "undocumented"
    if (
        "conflicting_total" in noise
        and not case.migraine
        and len(case.injections) >= 2
        and MUSCLES[case.injections[0].muscle].region not in ("axilla", "anal", "bladder", "salivary")
    ):
        _conflict(rng, case)
    if "listed_codes" in noise:
        lines = gold_claim(case)
        listed = [ln.split("x")[0] + (f" x {ln.split('x')[1]}" if ln.split("x")[1] != "1" else "") for ln in lines]
        if rng.random() < 0.35 and listed:
            listed = listed[:-1] if rng.random() < 0.5 else listed + ["95870"]
        case.extra["listed"] = ", ".join(listed)
    return case


def _conflict(rng: random.Random, case: Case) -> None:
    """Stated total ≠ sum of doses; the documented vial and waste reconcile the true amount."""
    case.waste_mode = "stated"
    if case.administered >= case.vial_total:
        case.vial_count += 1
    truth = case.administered
    step = STEP.get(case.product or "botox", 5)
    delta = rng.choice((1, 2, 4, 10)) * step
    if rng.random() < 0.5:
        # the total line is the dictation error: the muscles + waste = vials
        case.stated_total = truth + rng.choice((-1, 1)) * delta if truth > delta else truth + delta
        case.extra["conflict"] = "total_wrong"
    else:
        # one muscle dose is the error: the total + waste = vials; the gold bills the total
        inj = rng.choice(case.injections)
        bump = delta if inj.units <= delta else rng.choice((-1, 1)) * delta
        case.stated_total = truth
        case.extra["conflict"] = "muscle_wrong"
        case.extra["muscle_error"] = (case.injections.index(inj), bump)


def _add_second(rng: random.Random, case: Case) -> None:
    """A second procedure in the same session: another region, or phenol neurolysis."""
    s = case.scenario
    if s in ("stroke_spasticity", "cerebral_palsy", "ms_spasticity") and rng.random() < 0.6:
        limb_sides = sorted({i.side for i in case.injections})
        side = rng.choice(limb_sides)
        nerve = rng.choice(("obturator", "musculocutaneous", "tibial"))
        case.nerves.append((nerve, side))
        if rng.random() < 0.3:
            case.nerves.append((nerve, "L" if side == "R" else "R"))
        case.guided_regions = set()
        return
    if s == "cervical_dystonia":
        n0 = len(case.injections)
        for side in ("R", "L"):
            case.injections.append(Inj("oo", side, _small_dose(rng, case.product or "botox", (10, 12.5, 15))))
        case.extra["second"] = n0
        if case.guidance in ("emg", "estim"):
            case.extra["second_intro"] = rng.choice(
                (
                    "\nAlso treated for coexisting blepharospasm; the eyelid injections were placed by landmarks without guidance:\n",
                    "\nBlepharospasm was treated at the same session (periocular injections, no guidance):\n",
                )
            )
        else:
            case.extra["second_intro"] = rng.choice(
                ("\nAlso treated for coexisting blepharospasm:\n", "\nBlepharospasm was treated at the same session:\n")
            )
        case.dx.append(gold_dx(case, "blepharospasm"))
        case.dx_text.append("Blepharospasm")
        case.guided_regions = {"neck"} if case.guidance in ("emg", "estim") else set()
        return
    if s in ("writers_cramp", "stroke_spasticity"):
        n0 = len(case.injections)
        side = rng.choice("LR")
        for m in rng.sample(["scm", "splenius", "trapezius"], 2):
            case.injections.append(Inj(m, side, _dose(rng, case.product or "botox", 20, 50)))
        case.extra["second"] = n0
        g = {
            "emg": ", also under EMG guidance",
            "estim": ", also with electrical stimulation guidance",
            "ultrasound": ", also under ultrasound guidance",
        }.get(case.guidance, "")
        case.extra["second_intro"] = f"\nCervical muscles were also injected for cervical dystonia{g}:\n"
        case.dx.append(gold_dx(case, "cervical_dystonia"))
        case.dx_text.append("Cervical dystonia")
        case.guided_regions = set()
        return
    case.noise.remove("several_procedures")
    case.guided_regions = set()


SCENARIOS_BY_NAME = {name: fn for name, _, fn in SCENARIOS}


def build(index: int, seed: int) -> tuple[str, dict[str, Any]]:
    """(note text, gold record) for note ``index``."""
    case = make_case(index, seed)
    rng = random.Random(f"{seed}-{index}-text")
    gold_lines = gold_claim(case)
    # a conflicting muscle dose is a text-only error: render with the wrong dose, gold keeps the truth
    err = case.extra.get("muscle_error")
    case.extra["admin_truth"], case.extra["disc_truth"] = case.administered, case.discarded
    if err:
        k, bump = err
        case.injections[k].units += bump
    text = render(rng, case)
    if err:
        k, bump = err
        case.injections[k].units -= bump
    facts = {
        "product": case.billed_product if case.performed else None,
        "guidance": case.guidance if case.performed else "none",
        "administered_units": case.administered if case.performed else None,
        "discarded_units": case.discarded if case.performed else None,
        "vial_units": case.vial_total if case.performed else None,
        "injections": [
            {
                "text": i.text,
                "muscle": i.muscle.split(":", 1)[-1] if i.muscle.startswith("migraine:") else MUSCLES[i.muscle].name,
                "side": i.side,
                "units": i.units,
                "start": i.start,
                "end": i.start + len(i.text),
            }
            for i in case.injections
            if case.performed and i.start >= 0
        ],
        "nerves": [
            {"text": t, "nerve": n, "side": s} for (n, s), t in zip(case.nerves, case.extra.get("nerve_texts", []), strict=False)
        ],
    }
    for item in facts["nerves"]:
        i = text.find(item["text"])
        item["start"], item["end"] = i, i + len(item["text"])
    rec = {
        "dos": case.dos.isoformat(),
        "payer": "medicare",
        "style": f"generated: {case.extra['layout']}",
        "specialty": case.scenario,
        "accept": [gold_lines],
        "dx": case.dx if case.dx else None,
        "dx_optional": case.dx_optional,
        "facts": facts,
        "noise": sorted(case.noise),
        "split": split_of(case.note_id),
        "author": "generated",
    }
    return text, rec


def dump_gold(gold: dict[str, Any]) -> str:
    """JSON with one line per record: compact, and a changed note changes one line of the diff."""
    body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False, separators=(',', ':'))}" for k, v in gold.items())
    return "{\n" + body + "\n}\n"


def generate(out: Path, n: int = N_NOTES, seed: int = SEED) -> dict[str, Any]:
    notes = out / "notes"
    notes.mkdir(parents=True, exist_ok=True)
    for old in notes.glob("g*.txt"):
        old.unlink()
    gold: dict[str, Any] = {
        "_format": "btxcode gold (generated by nlp/training/generate.py): see training_data/README.md and "
        "training_data/generated/README.md. Keys are note file names under notes/.",
        "_generator": {"version": GENERATOR_VERSION, "seed": seed, "n": n},
    }
    for i in range(1, n + 1):
        text, rec = build(i, seed)
        name = f"g{i:04d}.txt"
        (notes / name).write_text(text, encoding="utf-8")
        gold[name] = rec
    (out / "gold.json").write_text(dump_gold(gold), encoding="utf-8")
    return gold


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=N_NOTES)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, default=Path("training_data/generated"))
    args = ap.parse_args(argv)
    gold = generate(args.out, args.n, args.seed)
    recs = [v for k, v in gold.items() if not k.startswith("_")]
    splits = Counter(r["split"] for r in recs)
    print(f"wrote {len(recs)} notes to {args.out}: {dict(splits)}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
