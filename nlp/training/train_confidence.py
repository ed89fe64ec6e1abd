"""Train the calibrated confidence model and its routing threshold (issue 3).

``python -m nlp.training.train_confidence train``   rebuild ``models/confidence/`` from ``training_data/``
``python -m nlp.training.train_confidence verify``  retrain into a temporary folder and check that the
                                                    metrics (and the model file) equal the committed ones
``python -m nlp.training.train_confidence check``   is the committed model fresh (training data, tables, features)?
``python -m nlp.training.train_confidence tune``    rank hyper-parameters on the dev split (never the test split)

How
---
1. The engine (without a scorer) codes every annotated note of ``training_data/gold.json`` (hand-written)
   and ``training_data/generated/gold.json`` (``nlp.training.generate``) with the note's date of service
   and payer, and a recording scorer keeps each note's Facts and Claim.
2. Labels (:mod:`nlp.scoring.labels`): a line is right when it is in the gold claim after
   ``btxcode eval``'s normalisation; a diagnosis when it is in a gold group or optional; the claim when it
   is exact. Features: :mod:`nlp.scoring.features`.
3. Split: the notes' fixed ``split`` (``nlp.training.gold.split_of``). The *train* notes are divided by a
   second hash byte into a fit part (≈80 %) and a calibration part (≈20 %): the base pipeline
   (``DictVectorizer`` + gradient boosting) is fit on the first, and ``CalibratedClassifierCV(
   FrozenEstimator(base), method="sigmoid")`` on the second. One model each for lines, diagnoses, claims.
4. Threshold: on *dev*, the lowest claim confidence at which the claims routed to auto are exactly right
   ≥ 98 % of the time, by a one-sided 90 % Wilson lower bound (a margin for the sampling error of a
   ~230-claim dev split), not just the point estimate. It is written to ``[routing] auto_threshold``
   of ``nlp/tables/profiles/medicare.toml`` and ``commercial.toml``.
5. Metrics on *test* (and dev, and per source), CV metrics on train, reliability and coverage plots,
   ``model.joblib`` and ``manifest.json`` (sha256 of training data, tables digest, features, library
   versions, git commit, metrics, threshold, sha256 of ``model.joblib``) go to ``models/confidence/``.

Everything is deterministic (fixed hashes and ``random_state``), so ``verify`` reproduces the metrics.
Never trains on ``shared/realworld``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import re
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from nlp.scoring import metrics
from nlp.scoring.features import FEATURE_NAMES, FEATURE_VERSION, feature_hash, note_rows
from nlp.scoring.labels import claim_label, dx_labels, line_labels
from nlp.scoring.model import KINDS, MANIFEST_FILE, MANIFEST_FORMAT, MODEL_FILE, sha256_file

TARGET_PRECISION = 0.98
# the threshold must reach TARGET_PRECISION by a one-sided 90 % Wilson lower bound on the dev claims, not
# just by the point estimate: ~230 dev claims leave a sampling error of about ±1.5 points at 98 %
THRESHOLD_Z = 1.2816
RANDOM_STATE = 0
SETS = (("hand", "gold.json", "notes"), ("generated", "generated/gold.json", "generated/notes"))
PROFILES = ("medicare", "commercial")


# ----------------------------------------------------------------------------------------------
# data


@dataclass
class NoteRows:
    name: str
    source: str
    split: str
    part: str  # fit | cal (train notes), else the split
    line_rows: list[dict[str, Any]] = field(default_factory=list)
    line_y: list[int] = field(default_factory=list)
    dx_rows: list[dict[str, Any]] = field(default_factory=list)
    dx_y: list[int] | None = None
    claim_row: dict[str, Any] = field(default_factory=dict)
    claim_y: int = 0


class _Recorder:
    """A scorer that keeps each note's Facts and Claim (and changes nothing)."""

    def __init__(self) -> None:
        self.seen: dict[Any, tuple[Any, Any]] = {}

    def score(self, result: dict[str, Any], facts: Any, claim: Any, prof: dict[str, Any]) -> None:
        self.seen[result["id"]] = (facts, claim)


def fit_part(name: str) -> str:
    """Train notes: ``fit`` (≈80 %) or ``cal`` (≈20 %), by the second byte of the id's SHA-256."""
    return "fit" if hashlib.sha256(name.encode("utf-8")).digest()[1] < 204 else "cal"


def training_files(root: Path) -> list[Path]:
    files = []
    for _, gold, notes in SETS:
        g = root / gold
        if g.is_file():
            files.append(g)
            files.extend(sorted((root / notes).glob("*.txt")))
    return files


def training_data_sha256(root: Path) -> str:
    """SHA-256 over the gold files and note texts the model is trained from (paths relative to ``root``)."""
    h = hashlib.sha256()
    for p in training_files(root):
        h.update(p.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def collect(root: Path, engine: Any = None) -> list[NoteRows]:
    """Run the engine over every annotated note and build feature rows and labels."""
    from nlp.engine import Engine, NoteInput
    from nlp.evaluate import load_reference
    from nlp.training.gold import split_of

    engine = engine or Engine()
    recorder = _Recorder()
    old = engine.scorer
    engine.scorer = recorder
    out: list[NoteRows] = []
    try:
        for source, gold, notes in SETS:
            gpath = root / gold
            if not gpath.is_file():
                continue
            ref = load_reference(gpath)
            names = sorted(ref)
            inputs = [
                NoteInput((root / notes / n).read_text(encoding="utf-8"), n, ref[n].get("dos"), ref[n].get("payer"))
                for n in names
            ]
            for n, result in zip(names, engine.suggest_many(inputs), strict=True):
                if result.get("error"):
                    continue
                facts, claim = recorder.seen.pop(n)
                split = ref[n].get("split") or split_of(n)
                rows = NoteRows(n, source, split, fit_part(n) if split == "train" else split)
                rows.line_rows, rows.dx_rows, rows.claim_row = note_rows(facts, claim, result)
                rows.line_y = line_labels(result, ref[n])
                rows.dx_y = dx_labels(result, ref[n])
                rows.claim_y = claim_label(n, result, ref[n])
                out.append(rows)
    finally:
        engine.scorer = old
    return out


def _xy(notes: list[NoteRows], kind: str) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    X: list[dict[str, Any]] = []
    y: list[int] = []
    owner: list[str] = []
    for n in notes:
        if kind == "line":
            X += n.line_rows
            y += n.line_y
            owner += [n.name] * len(n.line_rows)
        elif kind == "dx":
            if n.dx_y is None:
                continue
            X += n.dx_rows
            y += n.dx_y
            owner += [n.name] * len(n.dx_rows)
        else:
            X.append(n.claim_row)
            y.append(n.claim_y)
            owner.append(n.name)
    return X, y, owner


# ----------------------------------------------------------------------------------------------
# model


# Hyper-parameters per model. The claim model's were chosen on the *dev* split (coverage at 98 % auto
# precision, then AUROC) from the grid of ``tune``; the line and diagnosis models use plain defaults.
PARAMS: dict[str, dict[str, Any]] = {
    "line": {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.05, "subsample": 1.0, "min_samples_leaf": 5},
    "dx": {"n_estimators": 100, "max_depth": 2, "learning_rate": 0.05, "subsample": 1.0, "min_samples_leaf": 5},
    "claim": {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.025, "subsample": 0.7, "min_samples_leaf": 15},
}
TUNE_GRID = {
    "n_estimators": (150, 300, 500),
    "learning_rate": (0.025, 0.05),
    "subsample": (0.7, 1.0),
    "max_depth": (2, 3),
    "min_samples_leaf": (5, 15),
}


def base_estimator(kind: str, **override: Any) -> Any:
    """The uncalibrated pipeline: one-hot/numeric features → gradient-boosted trees."""
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.pipeline import make_pipeline

    params = {**PARAMS[kind], **override}
    return make_pipeline(DictVectorizer(sparse=True), GradientBoostingClassifier(random_state=RANDOM_STATE, **params))


MIN_CAL_PER_CLASS = 5


def ensure_both_classes(fit: list[NoteRows], cal: list[NoteRows], kind: str) -> tuple[list[NoteRows], list[NoteRows], list[str]]:
    """The fit and calibration notes for ``kind``, with fit notes moved to calibration (in name order) until
    the calibration rows hold at least :data:`MIN_CAL_PER_CLASS` of each label — right diagnoses are so
    common that a plain hash split can leave the calibration part without a single wrong one."""
    fit, cal = list(fit), list(cal)
    moved: list[str] = []
    for label in (0, 1):
        have = _xy(cal, kind)[1].count(label)
        for n in sorted(fit, key=lambda n: n.name):
            if have >= MIN_CAL_PER_CLASS:
                break
            k = _xy([n], kind)[1].count(label)
            if k and _xy(fit, kind)[1].count(label) - k >= MIN_CAL_PER_CLASS:
                fit.remove(n)
                cal.append(n)
                moved.append(n.name)
                have += k
    return fit, cal, moved


def fit_calibrated(
    kind: str, X_fit: list[dict[str, Any]], y_fit: list[int], X_cal: list[dict[str, Any]], y_cal: list[int], **params: Any
) -> Any:
    """Base pipeline fit on the fit part, sigmoid calibration on the held-out calibration part (P11)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    base = base_estimator(kind, **params).fit(X_fit, y_fit)
    with warnings.catch_warnings():
        # a frozen estimator is not refit: the CV split CalibratedClassifierCV still makes only groups the
        # calibration rows, so its "least populated class" warning does not apply
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return CalibratedClassifierCV(FrozenEstimator(base), method="sigmoid").fit(X_cal, y_cal)


def proba(model: Any, X: list[dict[str, Any]]) -> list[float]:
    if not X:
        return []
    return [round(float(v), 4) for v in model.predict_proba(X)[:, 1]]


def cv_metrics(notes: list[NoteRows], kind: str, folds: int = 5) -> dict[str, Any]:
    """Grouped (by note) k-fold CV of the base pipeline on the train notes: out-of-fold AUROC and Brier."""
    X, y, owner = _xy(notes, kind)
    if len(set(y)) < 2:
        return {}
    fold = [hashlib.sha256(o.encode()).digest()[2] % folds for o in owner]
    oof = [0.0] * len(y)
    for k in range(folds):
        tr = [i for i in range(len(y)) if fold[i] != k]
        te = [i for i in range(len(y)) if fold[i] == k]
        ytr = [y[i] for i in tr]
        if len(set(ytr)) < 2 or not te:
            continue
        m = base_estimator(kind).fit([X[i] for i in tr], ytr)
        for i, v in zip(te, m.predict_proba([X[i] for i in te])[:, 1], strict=True):
            oof[i] = float(v)
    s = metrics.summary(y, oof)
    return {"folds": folds, "auroc": s["auroc"], "brier": s["brier"], "n": len(y)}


# ----------------------------------------------------------------------------------------------
# evaluation


def evaluate_models(models: dict[str, Any], notes: list[NoteRows], threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {"notes": len(notes)}
    for kind in KINDS:
        X, y, _ = _xy(notes, kind)
        p = proba(models[kind], X)
        out[kind] = metrics.summary(y, p)
        if kind == "claim":
            out["routing"] = {
                k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.routing(y, p, threshold).items()
            }
    return out


def predictions(models: dict[str, Any], notes: list[NoteRows], kind: str) -> tuple[list[int], list[float]]:
    X, y, _ = _xy(notes, kind)
    return y, proba(models[kind], X)


# ----------------------------------------------------------------------------------------------
# persistence


def _versions() -> dict[str, str]:
    import joblib
    import numpy
    import scipy
    import sklearn

    v = {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }
    try:
        import spacy

        v["spacy"] = spacy.__version__
    except ImportError:  # pragma: no cover
        pass
    return v


def _git(repo: Path) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        dirty = (
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=repo,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            != ""
        )
        return {"commit": commit or None, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def write_threshold(threshold: float, profiles: tuple[str, ...] = PROFILES) -> list[str]:
    """Set ``[routing] auto_threshold`` in the shipped payer profiles; returns the files changed."""
    from nlp.loaders import _files

    changed = []
    for name in profiles:
        path = Path(str(_files().joinpath("profiles", f"{name}.toml")))
        text = path.read_text(encoding="utf-8")
        new = re.sub(r"(?m)^(auto_threshold[ \t]*=[ \t]*)[0-9.]+[ \t]*$", lambda m: f"{m.group(1)}{threshold:.4f}", text)
        if "auto_threshold" not in new:
            new = text.rstrip("\n") + f"\n\n[routing]\nauto_threshold = {threshold:.4f}\n"
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(str(path))
    return changed


def _clear_table_caches() -> None:
    from nlp import loaders

    loaders.tables_digest.cache_clear()
    loaders.profile.cache_clear()


# ----------------------------------------------------------------------------------------------
# commands


def train(
    root: Path, out: Path, write_profiles: bool = True, plots: bool = True, engine: Any = None, log: Any = print
) -> dict[str, Any]:
    """Train, choose the threshold, evaluate, and write ``model.joblib`` + ``manifest.json`` into ``out``."""
    import joblib

    from nlp import __version__
    from nlp.loaders import tables_digest

    data_sha = training_data_sha256(root)
    log(f"coding {len(training_files(root))} training files …")
    notes = collect(root, engine)
    by_part = {p: [n for n in notes if n.part == p] for p in ("fit", "cal", "dev", "test")}
    log("notes: " + ", ".join(f"{k} {len(v)}" for k, v in by_part.items()))
    models: dict[str, Any] = {}
    cal_moved: dict[str, list[str]] = {}
    for kind in KINDS:
        fit, cal, moved = ensure_both_classes(by_part["fit"], by_part["cal"], kind)
        cal_moved[kind] = moved
        Xf, yf, _ = _xy(fit, kind)
        Xc, yc, _ = _xy(cal, kind)
        models[kind] = fit_calibrated(kind, Xf, yf, Xc, yc)
    y_dev, p_dev = predictions(models, by_part["dev"], "claim")
    threshold = metrics.choose_threshold(y_dev, p_dev, TARGET_PRECISION, THRESHOLD_Z)
    train_notes = by_part["fit"] + by_part["cal"]
    report: dict[str, Any] = {
        "test": evaluate_models(models, by_part["test"], threshold),
        "dev": evaluate_models(models, by_part["dev"], threshold),
        "test_by_source": {
            src: evaluate_models(models, [n for n in by_part["test"] if n.source == src], threshold)
            for src in sorted({n.source for n in notes})
        },
        "cv_train": {kind: cv_metrics(train_notes, kind) for kind in KINDS},
    }
    y_test, p_test = predictions(models, by_part["test"], "claim")
    report["test_coverage_curve"] = [
        {k: round(v, 4) if isinstance(v, float) else v for k, v in pt.items()} for pt in metrics.coverage_curve(y_test, p_test)
    ]
    out.mkdir(parents=True, exist_ok=True)
    check_rows = {kind: _xy(by_part["cal"], kind)[0][:40] for kind in KINDS}
    bundle = {"models": models, "feature_version": FEATURE_VERSION, "feature_hash": feature_hash(), "check_rows": check_rows}
    fpath = out / MODEL_FILE
    joblib.dump(bundle, fpath, compress=3)
    changed = write_threshold(threshold) if write_profiles else []
    _clear_table_caches()
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_by": "python -m nlp.training.train_confidence train",
        "engine_version": __version__,
        "model": {
            "file": MODEL_FILE,
            "sha256": sha256_file(fpath),
            "kinds": list(KINDS),
            "estimator": "DictVectorizer + GradientBoostingClassifier, CalibratedClassifierCV(FrozenEstimator, sigmoid)",
            "params": PARAMS,
            "random_state": RANDOM_STATE,
        },
        "features": {"version": FEATURE_VERSION, "hash": feature_hash(), "names": FEATURE_NAMES},
        "training_data": {
            "sha256": data_sha,
            "files": len(training_files(root)),
            "sets": [s for s, _, _ in SETS],
            "notes": {p: len(v) for p, v in by_part.items()},
            "rows": {kind: {p: len(_xy(v, kind)[1]) for p, v in by_part.items()} for kind in KINDS},
            "fit_cal": "train notes: SHA-256(id)[1] < 204 → fit, else calibration; notes moved to "
            f"calibration so that each label has ≥ {MIN_CAL_PER_CLASS} rows there",
            "moved_to_calibration": cal_moved,
        },
        "tables_digest": tables_digest(),
        "engine_code_sha256": engine_code_sha256(),
        "libraries": _versions(),
        "git": _git(root.resolve().parent),
        "threshold": {
            "value": threshold,
            "target_precision": TARGET_PRECISION,
            "chosen_on": "dev",
            "rule": "lowest claim confidence whose dev auto-routed claims are exact >= target by a one-sided "
            f"Wilson lower bound (z = {THRESHOLD_Z})",
            "dev_routing": metrics.routing(y_dev, p_dev, threshold),
            "profiles": list(PROFILES),
        },
        "metrics": report,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    if plots:
        from nlp.scoring.report import plot_coverage, plot_reliability

        series = {kind: predictions(models, by_part["test"], kind) for kind in KINDS}
        plot_reliability(series, out / "reliability_test.png", title="Reliability on the test split")
        plot_coverage(y_test, p_test, threshold, out / "coverage_test.png", title="Claims: accuracy vs coverage (test)")
    if changed:
        log(f"threshold {threshold:.4f} written to {', '.join(changed)}")
    return manifest


def tune(root: Path, kind: str = "claim", log: Any = print) -> list[dict[str, Any]]:
    """Rank :data:`TUNE_GRID` for one model on the *dev* split only (claims: coverage at the 98 % threshold,
    then AUROC; lines and diagnoses: ECE, then AUROC). The test split is not looked at."""
    import itertools

    notes = collect(root)
    parts = {p: [n for n in notes if n.part == p] for p in ("fit", "cal", "dev")}
    fit, cal, _ = ensure_both_classes(parts["fit"], parts["cal"], kind)
    Xf, yf, _ = _xy(fit, kind)
    Xc, yc, _ = _xy(cal, kind)
    keys = list(TUNE_GRID)
    out = []
    for values in itertools.product(*(TUNE_GRID[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        if params["n_estimators"] * params["learning_rate"] > 16:
            continue
        model = fit_calibrated(kind, Xf, yf, Xc, yc, **params)
        y, p = predictions({kind: model}, parts["dev"], kind)
        row = {"params": params, "auroc": metrics.auroc(y, p), "ece": metrics.ece(y, p)}
        if kind == "claim":
            th = metrics.choose_threshold(y, p, TARGET_PRECISION, THRESHOLD_Z)
            row["coverage"] = metrics.routing(y, p, th)["coverage"]
        out.append(row)
    if kind == "claim":
        out.sort(key=lambda r: (-r["coverage"], -(r["auroc"] or 0)))
    else:
        out.sort(key=lambda r: (r["ece"], -(r["auroc"] or 0)))
    for r in out[:10]:
        log(json.dumps(r))
    return out


def headline(manifest: dict[str, Any]) -> str:
    t = manifest["metrics"]["test"]
    r = t["routing"]
    return (
        f"test: lines ECE {t['line']['ece']} Brier {t['line']['brier']} AUROC {t['line']['auroc']} (n {t['line']['n']}); "
        f"dx ECE {t['dx']['ece']} (n {t['dx']['n']}); claims AUROC {t['claim']['auroc']} ECE {t['claim']['ece']} "
        f"(n {t['claim']['n']}, exact {t['claim']['positive_rate']}); threshold {manifest['threshold']['value']} → "
        f"coverage {r['coverage']} auto precision {r['auto_precision']} ({r['auto_errors']} errors)"
    )


def engine_code_sha256() -> str:
    """SHA-256 over the engine's Python sources (``nlp/**/*.py`` except ``nlp/training``): recorded so that
    ``check`` can say when the extractor or mapper changed since training (the features then shift)."""
    base = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for p in sorted(base.rglob("*.py")):
        rel = p.relative_to(base).as_posix()
        if rel.startswith("training/"):
            continue
        h.update(rel.encode("utf-8") + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def stale_notes(model_dir: Path) -> list[str]:
    """Advisory differences (not failures): engine code changed since the model was trained."""
    mpath = model_dir / MANIFEST_FILE
    if not mpath.is_file():
        return []
    m = json.loads(mpath.read_text(encoding="utf-8"))
    if m.get("engine_code_sha256") and m["engine_code_sha256"] != engine_code_sha256():
        return ["the engine's code changed since the model was trained (features may have shifted): consider `make train`"]
    return []


def check(root: Path, model_dir: Path) -> list[str]:
    """What makes the committed model stale (empty when it is fresh)."""
    from nlp.loaders import tables_digest

    problems = []
    mpath = model_dir / MANIFEST_FILE
    if not mpath.is_file():
        return [f"no {mpath}"]
    m = json.loads(mpath.read_text(encoding="utf-8"))
    if m.get("training_data", {}).get("sha256") != training_data_sha256(root):
        problems.append("training data changed since the model was trained")
    if m.get("tables_digest") != tables_digest():
        problems.append("nlp/tables changed since the model was trained")
    if m.get("features", {}).get("hash") != feature_hash():
        problems.append("feature code changed since the model was trained")
    fpath = model_dir / MODEL_FILE
    if not fpath.is_file() or sha256_file(fpath) != m.get("model", {}).get("sha256"):
        problems.append(f"{fpath} does not match the manifest")
    return problems


def verify(root: Path, model_dir: Path) -> list[str]:
    """Retrain into a temporary folder; differences from the committed metrics (empty when reproduced)."""
    committed = json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory() as tmp:
        fresh = train(root, Path(tmp), write_profiles=False, plots=False, log=lambda *_: None)
    diffs = []
    if committed.get("engine_code_sha256") not in (None, fresh.get("engine_code_sha256")):
        diffs.append("the engine's code changed since the committed model was trained, so its features differ")
    if committed.get("tables_digest") != fresh.get("tables_digest"):
        diffs.append("nlp/tables changed since the committed model was trained")
    if committed.get("training_data", {}).get("sha256") != fresh.get("training_data", {}).get("sha256"):
        diffs.append("the training data changed since the committed model was trained")
    if fresh["metrics"] != committed["metrics"]:
        for split in ("test", "dev"):
            if fresh["metrics"][split] != committed["metrics"][split]:
                diffs.append(f"{split} metrics differ: {fresh['metrics'][split]} vs {committed['metrics'][split]}")
        if not diffs:
            diffs.append("metrics differ")
    if fresh["threshold"]["value"] != committed["threshold"]["value"]:
        diffs.append(f"threshold differs: {fresh['threshold']['value']} vs {committed['threshold']['value']}")
    if fresh["model"]["sha256"] != committed["model"]["sha256"]:
        diffs.append("model.joblib bytes differ (metrics equal)" if not diffs else "model.joblib bytes differ")
    return diffs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m nlp.training.train_confidence", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=("train", "verify", "check", "tune"))
    ap.add_argument("--kind", choices=KINDS, default="claim", help="tune: which model")
    ap.add_argument("--data", type=Path, default=Path("training_data"), help="training_data folder")
    ap.add_argument("--out", type=Path, default=Path("models/confidence"), help="model folder")
    ap.add_argument("--no-profiles", action="store_true", help="do not write the threshold into the payer profiles")
    args = ap.parse_args(argv)
    if args.command == "train":
        m = train(args.data, args.out, write_profiles=not args.no_profiles)
        print(headline(m))  # noqa: T201
        print(f"wrote {args.out / MODEL_FILE} and {args.out / MANIFEST_FILE} ({date.today().isoformat()})")  # noqa: T201
        return 0
    if args.command == "tune":
        tune(args.data, args.kind)
        return 0
    if args.command == "check":
        problems = check(args.data, args.out)
        for note in stale_notes(args.out):
            print(f"note: {note}", file=sys.stderr)  # noqa: T201
        for p in problems:
            print(f"stale: {p} — run `make train`", file=sys.stderr)  # noqa: T201
        return 1 if problems else 0
    diffs = verify(args.data, args.out)
    for d in diffs:
        print(f"not reproduced: {d}", file=sys.stderr)  # noqa: T201
    if not diffs:
        print("retraining reproduces the committed model (metrics, threshold and model bytes)")  # noqa: T201
    only_bytes = diffs and all("bytes differ (metrics equal)" in d for d in diffs)
    return 0 if not diffs or only_bytes else 1


if __name__ == "__main__":
    raise SystemExit(main())
