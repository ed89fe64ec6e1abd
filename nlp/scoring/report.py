"""Calibration report for ``btxcode eval --calibration-report DIR``: Brier score, expected calibration
error, AUROC, a reliability diagram and the claims' accuracy/coverage curve (PNG, matplotlib Agg).

:func:`calibration_report` takes the engine's results (with ``confidence`` and ``route`` filled by the
confidence model) and the reference records, labels every line, diagnosis and claim as
:mod:`nlp.scoring.labels` does for training, and writes ``calibration.json``, ``reliability.png`` and
``coverage.png`` into the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlp.scoring import metrics
from nlp.scoring.labels import claim_label, dx_labels, line_labels


def _series(results: list[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {"line": ([], []), "dx": ([], []), "claim": ([], [])}
    for r in results:
        name = r.get("id")
        if r.get("error") or name not in refs or r.get("confidence") is None:
            continue
        ref = refs[name]
        for ln, y in zip(r["lines"], line_labels(r, ref), strict=True):
            out["line"][0].append(y)
            out["line"][1].append(float(ln["confidence"]))
        dy = dx_labels(r, ref)
        if dy is not None:
            for d, y in zip(r["diagnoses"], dy, strict=True):
                out["dx"][0].append(y)
                out["dx"][1].append(float(d["confidence"]))
        out["claim"][0].append(claim_label(name, r, ref))
        out["claim"][1].append(float(r["confidence"]))
    return out


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


LABELS = {"line": "claim lines", "dx": "diagnoses", "claim": "claims (exact)"}


def plot_reliability(series: dict[str, tuple[list[int], list[float]]], path: Path, title: str = "Reliability") -> None:
    """One panel per kind: observed accuracy against mean confidence in 10 bins, with counts."""
    plt = _plt()
    kinds = [k for k in ("line", "dx", "claim") if series.get(k) and series[k][0]]
    fig, axes = plt.subplots(1, max(1, len(kinds)), figsize=(4.2 * max(1, len(kinds)), 4.2), squeeze=False)
    for ax, kind in zip(axes[0], kinds, strict=False):
        y, p = series[kind]
        bins = metrics.reliability(y, p)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.bar(
            [b["lo"] + 0.05 for b in bins],
            [b["accuracy"] for b in bins],
            width=0.09,
            alpha=0.35,
            color="tab:blue",
            label="accuracy per bin",
        )
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], marker="o", color="tab:blue")
        for b in bins:
            ax.annotate(str(b["n"]), (b["lo"] + 0.05, min(0.97, b["accuracy"] + 0.02)), ha="center", fontsize=7)
        e, br = metrics.ece(y, p), metrics.brier(y, p)
        ax.set_title(f"{LABELS[kind]}: ECE {e:.3f}, Brier {br:.3f}", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("confidence")
        ax.set_ylabel("observed accuracy")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def plot_coverage(
    y: list[int], p: list[float], threshold: float | None, path: Path, title: str = "Claims: accuracy vs coverage"
) -> None:
    """Accuracy of the auto-routed claims against the share routed, as the threshold falls."""
    plt = _plt()
    curve = metrics.coverage_curve(y, p)
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    ax.plot([c["coverage"] for c in curve], [c["accuracy"] for c in curve], color="tab:green", marker=".", markersize=3)
    ax.axhline(0.98, linestyle="--", color="grey", linewidth=1, label="98 % exact")
    if threshold is not None:
        r = metrics.routing(y, p, threshold)
        if r["auto"]:
            ax.plot(
                [r["coverage"]],
                [r["auto_precision"]],
                marker="o",
                color="tab:red",
                label=f"threshold {threshold:.3f}: {r['coverage']:.0%} auto, {r['auto_precision']:.1%} exact",
            )
    ax.set_xlim(0, 1.01)
    lo = min([c["accuracy"] for c in curve] + [0.9])
    ax.set_ylim(max(0.0, lo - 0.05), 1.01)
    ax.set_xlabel("coverage (share of claims routed to auto)")
    ax.set_ylabel("share of auto-routed claims exactly right")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def calibration_report(results: list[dict[str, Any]], refs: dict[str, dict[str, Any]], out_dir: str | Path) -> dict[str, Any]:
    """Write ``calibration.json``, ``reliability.png`` and ``coverage.png`` into ``out_dir``; return the numbers.

    ``results`` are the engine's result objects (``id`` = the reference key); ``refs`` the reference records
    (``nlp.evaluate.load_reference``). Routing figures use each result's own ``route``."""
    out = Path(out_dir)
    series = _series(results, refs)
    scored = [r for r in results if r.get("id") in refs and not r.get("error")]
    if not series["claim"][0]:
        report: dict[str, Any] = {"scored": False, "reason": "no confidences in the results (no confidence model loaded)"}
        out.mkdir(parents=True, exist_ok=True)
        (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        return report
    auto = [r for r in scored if r.get("route") == "auto"]
    auto_right = sum(claim_label(r["id"], r, refs[r["id"]]) for r in auto)
    threshold = _threshold(scored, auto)
    report = {
        "scored": True,
        **{kind: metrics.summary(*series[kind]) for kind in ("line", "dx", "claim")},
        "routing": {
            "threshold": threshold,
            "claims": len(scored),
            "auto": len(auto),
            "coverage": round(len(auto) / len(scored), 4) if scored else None,
            "auto_precision": round(auto_right / len(auto), 4) if auto else None,
            "auto_errors": len(auto) - auto_right,
        },
        "reliability": {kind: metrics.reliability(*series[kind]) for kind in ("line", "dx", "claim")},
        "coverage_curve": metrics.coverage_curve(*series["claim"]),
        "files": ["calibration.json", "reliability.png", "coverage.png"],
    }
    out.mkdir(parents=True, exist_ok=True)
    plot_reliability(series, out / "reliability.png")
    plot_coverage(*series["claim"], threshold, out / "coverage.png")
    (out / "calibration.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return report


def _threshold(scored: list[dict[str, Any]], auto: list[dict[str, Any]]) -> float | None:
    """The payer profile's ``routing.auto_threshold`` the results were routed with (else the lowest
    auto-routed confidence)."""
    from nlp.loaders import profile

    payers = {r.get("payer") for r in scored if r.get("payer")}
    if len(payers) == 1:
        try:
            return float(profile(payers.pop())["routing"]["auto_threshold"])
        except (KeyError, TypeError, ValueError):
            pass
    return min((float(r["confidence"]) for r in auto), default=None)


def attach_calibration(report: dict[str, Any], results: list[dict[str, Any]], gold: str | Path, out_dir: str | Path) -> str:
    """For ``btxcode eval --calibration-report DIR``: add ``report["calibration"]`` (and write its files into
    ``out_dir``) for the results of :func:`nlp.evaluate.evaluate`; returns a one-line summary."""
    from nlp.evaluate import load_reference

    report["calibration"] = calibration_report(results, load_reference(Path(gold)), out_dir)
    return format_summary(report["calibration"]) + f" (files in {out_dir})"


def format_summary(report: dict[str, Any]) -> str:
    """One line for the terminal."""
    if not report.get("scored"):
        return f"calibration: {report.get('reason')}"
    ln, dx, cl, rt = report["line"], report["dx"], report["claim"], report["routing"]
    return (
        f"calibration: lines ECE {ln['ece']} Brier {ln['brier']}  dx ECE {dx['ece']}  claims AUROC {cl['auroc']} "
        f"Brier {cl['brier']}  auto {rt['auto']}/{rt['claims']} ({rt['coverage']}) exact {rt['auto_precision']}"
    )
