"""Training labels from gold: is each suggested line / diagnosis right, is the claim exactly right.

The normalisation is :mod:`nlp.evaluate`'s: of the ``accept`` alternatives the best-matching one is used;
RT/LT are dropped on codes whose reference lines carry no side; lines with the same code and modifiers
are summed; optional (``?CODEx*``) codes are always right. A line is right when its normalised key is in
the gold claim; the claim is right when it is exact (no extra, no missing line), as in ``btxcode eval``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from nlp.evaluate import line_key, normalised_groups, parse_line, score_note


def _alt_labels(pred: list[dict[str, Any]], alt: list[str]) -> tuple[list[int], int, int, int]:
    parsed = [parse_line(x) for x in alt]
    required = [(c, m, u) for opt, c, m, u in parsed if not opt and u is not None]
    optional = {c for opt, c, _, _ in parsed if opt}
    gold = Counter(line_key(c, m, u) for c, m, u in required)
    units, groups = normalised_groups(pred, required, optional)
    labels = [1] * len(pred)
    keys = Counter()
    for g, idx in groups.items():
        key = line_key(g[0], g[1], units[g])
        keys[key] += 1
        ok = gold[key] > 0
        for k in idx:
            labels[k] = int(ok)
    tp = sum((keys & gold).values())
    fp = sum(keys.values()) - tp
    fn = sum(gold.values()) - tp
    return labels, tp, fp, fn


def line_labels(result: dict[str, Any], ref: dict[str, Any]) -> list[int]:
    """1/0 for each line of ``result``, against the best-matching accepted claim of ``ref``."""
    pred = result.get("lines", [])
    best: tuple[tuple[bool, int], list[int]] | None = None
    for alt in ref.get("accept") or [[]]:
        labels, tp, fp, fn = _alt_labels(pred, alt)
        key = (fp == 0 and fn == 0, tp - fp - fn)
        if best is None or key > best[0]:
            best = (key, labels)
    assert best is not None
    return best[1]


def dx_labels(result: dict[str, Any], ref: dict[str, Any]) -> list[int] | None:
    """1/0 for each diagnosis of ``result`` (in a gold group or optional), or None when ``ref`` has no dx."""
    groups = ref.get("dx")
    if groups is None:
        return None
    allowed = {c for g in groups for c in g} | set(ref.get("dx_optional") or [])
    return [int(d["code"] in allowed) for d in result.get("diagnoses", [])]


def claim_label(name: str, result: dict[str, Any], ref: dict[str, Any]) -> int:
    """1 when the suggested lines are exactly the gold claim (``btxcode eval``'s exact-claim)."""
    return int(score_note(name, result, ref).exact)
