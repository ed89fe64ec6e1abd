"""Calibration and routing metrics: Brier score, expected calibration error, reliability bins, AUROC,
accuracy/coverage curve and the routing threshold."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

N_BINS = 10


def brier(y: Sequence[int], p: Sequence[float]) -> float | None:
    if not y:
        return None
    return sum((pi - yi) ** 2 for yi, pi in zip(y, p, strict=True)) / len(y)


def reliability(y: Sequence[int], p: Sequence[float], bins: int = N_BINS) -> list[dict[str, Any]]:
    """Equal-width bins over [0, 1]: count, mean confidence and observed accuracy of each non-empty bin."""
    acc: list[list[float]] = [[0, 0.0, 0.0] for _ in range(bins)]
    for yi, pi in zip(y, p, strict=True):
        b = min(bins - 1, max(0, int(pi * bins)))
        acc[b][0] += 1
        acc[b][1] += pi
        acc[b][2] += yi
    out = []
    for b, (n, sp, sy) in enumerate(acc):
        if n:
            out.append({"lo": b / bins, "hi": (b + 1) / bins, "n": int(n), "confidence": sp / n, "accuracy": sy / n})
    return out


def ece(y: Sequence[int], p: Sequence[float], bins: int = N_BINS) -> float | None:
    """Expected calibration error: the count-weighted mean |accuracy − confidence| over equal-width bins."""
    if not y:
        return None
    return sum(b["n"] * abs(b["accuracy"] - b["confidence"]) for b in reliability(y, p, bins)) / len(y)


def auroc(y: Sequence[int], p: Sequence[float]) -> float | None:
    """Area under the ROC curve (None when only one class is present)."""
    pos = [pi for yi, pi in zip(y, p, strict=True) if yi]
    neg = [pi for yi, pi in zip(y, p, strict=True) if not yi]
    if not pos or not neg:
        return None
    # rank-based (Mann-Whitney U) with ties counted half
    allv = sorted([(pi, 1) for pi in pos] + [(pi, 0) for pi in neg])
    ranks: list[float] = [0.0] * len(allv)
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1][0] == allv[i][0]:
            j += 1
        r = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[k] = r
        i = j + 1
    rank_pos = sum(r for r, (_, lab) in zip(ranks, allv, strict=True) if lab)
    return (rank_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))


def coverage_curve(y: Sequence[int], p: Sequence[float]) -> list[dict[str, float]]:
    """Routing every claim with confidence ≥ t to auto, for each distinct t (high to low): coverage and accuracy."""
    pairs = sorted(zip(p, y, strict=True), key=lambda t: -t[0])
    out: list[dict[str, float]] = []
    right = 0
    for k, (pi, yi) in enumerate(pairs, start=1):
        right += yi
        if k == len(pairs) or pairs[k][0] != pi:
            out.append({"threshold": pi, "coverage": k / len(pairs), "accuracy": right / k, "n": k})
    return out


def wilson_lower(right: int, n: int, z: float) -> float:
    """One-sided Wilson score lower bound of a proportion (``z`` = 1.2816 for 90 %; 0 gives the point estimate)."""
    if n == 0:
        return 0.0
    p = right / n
    if z <= 0:
        return p
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return centre - half


def choose_threshold(y: Sequence[int], p: Sequence[float], target: float = 0.98, z: float = 0.0) -> float:
    """The lowest threshold whose auto-routed set (confidence ≥ threshold) is right at least ``target`` of the
    time — by the point estimate (``z`` = 0) or by a one-sided Wilson lower bound (``z`` > 0), which leaves a
    margin for the sampling error of a small dev split; 1.0 when no threshold reaches it."""
    best = None
    for pt in coverage_curve(y, p):
        if wilson_lower(round(pt["accuracy"] * pt["n"]), int(pt["n"]), z) >= target:
            best = pt["threshold"]
    return 1.0 if best is None else float(best)


def routing(y: Sequence[int], p: Sequence[float], threshold: float) -> dict[str, Any]:
    """Coverage and precision of the claims routed to auto at ``threshold``."""
    auto = [yi for yi, pi in zip(y, p, strict=True) if pi >= threshold]
    return {
        "threshold": threshold,
        "n": len(y),
        "auto": len(auto),
        "coverage": len(auto) / len(y) if y else 0.0,
        "auto_precision": (sum(auto) / len(auto)) if auto else None,
        "auto_errors": len(auto) - sum(auto),
    }


def summary(y: Sequence[int], p: Sequence[float]) -> dict[str, Any]:
    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 4)

    return {
        "n": len(y),
        "positive_rate": r(sum(y) / len(y)) if y else None,
        "brier": r(brier(y, p)),
        "ece": r(ece(y, p)),
        "auroc": r(auroc(y, p)),
        "mean_confidence": r(sum(p) / len(p)) if p else None,
    }
