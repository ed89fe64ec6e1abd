"""Score suggestions against reference claims (format of ``shared/realworld/mtsamples/reference.json``).

A reference line is ``CODE[-MOD…]xUNITS``; ``?CODEx*`` is optional. ``accept`` lists alternative full
claims (the best-matching one is used); where an accepted claim writes a code without RT/LT, RT/LT are
treated as informational on that code (stripped and units summed). ``dx`` lists groups of acceptable
alternatives; ``dx_optional`` codes are neither rewarded nor penalised.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlp.engine import Engine, NoteInput

_LINE = re.compile(r"^(?P<opt>\?)?(?P<code>[A-Z0-9]{5})(?P<mods>(?:-[A-Z0-9]{2})*)x(?P<units>\d+|\*)$")
SIDES = {"RT", "LT"}


def parse_line(s: str) -> tuple[bool, str, tuple[str, ...], int | None]:
    m = _LINE.match(s.strip())
    if not m:
        raise ValueError(f"bad reference line {s!r}")
    mods = tuple(x for x in m.group("mods").split("-") if x)
    units = None if m.group("units") == "*" else int(m.group("units"))
    return bool(m.group("opt")), m.group("code"), mods, units


def line_key(code: str, mods: Iterable[str], units: int) -> str:
    return code + "".join(f"-{x}" for x in mods) + f"x{units}"


def normalised_groups(
    pred: list[dict[str, Any]], required: list[tuple[str, tuple[str, ...], int]], optional: set[str]
) -> tuple[Counter[tuple[str, tuple[str, ...]]], dict[tuple[str, tuple[str, ...]], list[int]]]:
    """Predicted units per (code, modifiers), with RT/LT dropped on codes whose reference lines carry no
    side and optional codes left out; and which predicted lines fell into each group."""
    sided_codes = {c for c, mods, _ in required if SIDES & set(mods)}
    units: Counter[tuple[str, tuple[str, ...]]] = Counter()
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for k, ln in enumerate(pred):
        code = ln["code"]
        if code in optional:
            continue
        mods = tuple(ln["modifiers"])
        if code not in sided_codes:
            mods = tuple(m for m in mods if m not in SIDES)
        units[(code, mods)] += int(ln["units"])
        groups.setdefault((code, mods), []).append(k)
    return units, groups


def _normalise(pred: list[dict[str, Any]], required: list[tuple[str, tuple[str, ...], int]], optional: set[str]) -> Counter[str]:
    """Predicted line keys, normalised as :func:`normalised_groups` says."""
    units, _ = normalised_groups(pred, required, optional)
    return Counter(line_key(c, m, u) for (c, m), u in units.items())


@dataclass
class NoteScore:
    name: str
    tp: int
    fp: int
    fn: int
    exact: bool
    predicted: list[str]
    expected: list[str]
    dx_tp: int = 0
    dx_fp: int = 0
    dx_fn: int = 0
    dx_scored: bool = False
    dx_predicted: list[str] = field(default_factory=list)
    dx_expected: list[list[str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def score_note(name: str, result: dict[str, Any], ref: dict[str, Any]) -> NoteScore:
    best: NoteScore | None = None
    for alt in ref.get("accept") or [[]]:
        parsed = [parse_line(x) for x in alt]
        required = [(c, m, u) for opt, c, m, u in parsed if not opt and u is not None]
        optional = {c for opt, c, _, _ in parsed if opt}
        gold = Counter(line_key(c, m, u) for c, m, u in required)
        pred = _normalise(result.get("lines", []), required, optional)
        tp = sum((pred & gold).values())
        fp = sum(pred.values()) - tp
        fn = sum(gold.values()) - tp
        cand = NoteScore(name, tp, fp, fn, fp == 0 and fn == 0, sorted(pred.elements()), sorted(gold.elements()))
        if best is None or (cand.exact, cand.tp - cand.fp - cand.fn) > (best.exact, best.tp - best.fp - best.fn):
            best = cand
    assert best is not None
    dx_groups = ref.get("dx")
    best.warnings = [w["code"] for w in result.get("warnings", [])]
    if dx_groups is not None:
        pred_dx = [d["code"] for d in result.get("diagnoses", [])]
        optional_dx = set(ref.get("dx_optional") or [])
        matched = [any(p in group for p in pred_dx) for group in dx_groups]
        allowed = {c for g in dx_groups for c in g} | optional_dx
        best.dx_scored = True
        best.dx_tp = sum(matched)
        best.dx_fn = len(dx_groups) - best.dx_tp
        best.dx_fp = sum(1 for p in pred_dx if p not in allowed)
        best.dx_predicted = pred_dx
        best.dx_expected = dx_groups
    return best


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def summarise(scores: list[NoteScore]) -> dict[str, Any]:
    tp, fp, fn = (sum(getattr(s, k) for s in scores) for k in ("tp", "fp", "fn"))
    dx = [s for s in scores if s.dx_scored]
    dtp, dfp, dfn = (sum(getattr(s, k) for s in dx) for k in ("dx_tp", "dx_fp", "dx_fn"))
    return {
        "notes": len(scores),
        "lines": {**_prf(tp, fp, fn), "tp": tp, "fp": fp, "fn": fn},
        "exact_claim_rate": round(sum(s.exact for s in scores) / len(scores), 4) if scores else 0.0,
        "diagnoses": {**_prf(dtp, dfp, dfn), "notes_scored": len(dx)},
        "per_note": [
            {
                "note": s.name,
                "exact": s.exact,
                "predicted": s.predicted,
                "expected": s.expected,
                "missing": sorted((Counter(s.expected) - Counter(s.predicted)).elements()),
                "extra": sorted((Counter(s.predicted) - Counter(s.expected)).elements()),
                "dx_predicted": s.dx_predicted,
                "dx_expected": s.dx_expected,
                "warnings": s.warnings,
            }
            for s in scores
        ],
    }


def load_reference(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def evaluate(
    engine: Engine, gold: Path, notes_dir: Path, split: str | None = None, strip_codes: bool = False
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the engine over the reference notes and score them; returns (report, results)."""
    ref = load_reference(gold)
    names = [n for n in sorted(ref) if split is None or ref[n].get("split") == split]
    inputs = []
    for n in names:
        text = (notes_dir / n).read_text(encoding="utf-8")
        if strip_codes:
            text = strip_listed_codes(text)
        inputs.append(NoteInput(text, n, ref[n].get("dos"), ref[n].get("payer")))
    results = list(engine.suggest_many(inputs))
    scores = [score_note(n, r, ref[n]) for n, r in zip(names, results, strict=True)]
    return summarise(scores), results


# up to the end of the line, or of the field in comma-joined (CSV-flattened) notes
_CODES_LINE = re.compile(
    r"(?:^|(?<=\.,))[ \t]*(?:PROCEDURE CODES?|CPT CODES?|CPT|BILLING CODES?)\s*:.*?(?:\.,(?=[A-Z ])|\n|$)",
    re.IGNORECASE | re.MULTILINE,
)


def strip_listed_codes(text: str) -> str:
    """The note without its ``PROCEDURE CODES:`` lines (to test that suggestions do not copy them)."""
    return _CODES_LINE.sub("", text)
