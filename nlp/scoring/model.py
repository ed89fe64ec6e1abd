"""Load the calibrated confidence model and score results (confidence for lines, diagnoses and the claim,
and the auto/review route).

The model lives in ``models/confidence/``: ``model.joblib`` (three ``CalibratedClassifierCV`` pipelines:
``line``, ``dx``, ``claim``) next to ``manifest.json``. Loading checks, in order and before anything is
unpickled:

1. the manifest's ``features.version`` and ``features.hash`` equal :data:`nlp.scoring.features.FEATURE_VERSION`
   and :func:`nlp.scoring.features.feature_hash` — a model trained for other features is refused;
2. the sha256 of ``model.joblib`` equals the manifest's ``model.sha256`` — pickle files execute code, so
   a file that is not the one the manifest describes is never loaded.

Either failure raises :class:`ModelError` with a message that says what differs and to run ``make train``.

Where the model is looked for (:func:`find_model_dir`): the ``model_dir`` argument, else
``$BTXCODE_MODEL_DIR`` (empty or ``none`` disables scoring), else ``./models/confidence`` in the working
directory, else ``models/confidence`` of the source checkout the ``nlp`` package sits in. No model found →
no scorer, and ``confidence``/``route`` stay null.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from nlp.scoring.features import FEATURE_VERSION, feature_hash, note_parts

MODEL_FILE = "model.joblib"
MANIFEST_FILE = "manifest.json"
MANIFEST_FORMAT = 1
KINDS = ("line", "dx", "claim")


class ModelError(RuntimeError):
    """The confidence model cannot be used (manifest mismatch, tampered or missing file)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_model_dir(model_dir: str | Path | None = None) -> Path | None:
    """The folder holding ``manifest.json`` and ``model.joblib``, or None when there is none."""
    if model_dir is not None:
        return Path(model_dir)
    env = os.environ.get("BTXCODE_MODEL_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "none", "off") else Path(env)
    for cand in (Path.cwd() / "models" / "confidence", Path(__file__).resolve().parents[2] / "models" / "confidence"):
        if (cand / MANIFEST_FILE).is_file():
            return cand
    return None


def check_manifest(manifest: dict[str, Any]) -> None:
    """Raise :class:`ModelError` unless ``manifest`` describes a model for this feature code."""
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(
            f"confidence model manifest has format {manifest.get('format')!r}, this code reads "
            f"format {MANIFEST_FORMAT}; run `make train`"
        )
    feats = manifest.get("features") or {}
    if feats.get("version") != FEATURE_VERSION or feats.get("hash") != feature_hash():
        raise ModelError(
            "confidence model was trained for other features (manifest: version "
            f"{feats.get('version')!r}, hash {str(feats.get('hash'))[:12]}; code: version {FEATURE_VERSION!r}, hash "
            f"{feature_hash()[:12]}); refusing to load it — run `make train` to rebuild models/confidence"
        )
    missing = [k for k in KINDS if k not in (manifest.get("model") or {}).get("kinds", [])]
    if missing:
        raise ModelError(f"confidence model manifest lacks the {', '.join(missing)} model(s); run `make train`")


def load_model(model_dir: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(estimators by kind, manifest), after the manifest and sha256 checks."""
    d = Path(model_dir)
    mpath, fpath = d / MANIFEST_FILE, d / MODEL_FILE
    if not mpath.is_file() or not fpath.is_file():
        raise ModelError(f"no confidence model in {d} (need {MANIFEST_FILE} and {MODEL_FILE}); run `make train`")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ModelError(f"{mpath} is not valid JSON: {exc}") from None
    check_manifest(manifest)
    want = manifest["model"].get("sha256")
    got = sha256_file(fpath)
    if got != want:
        raise ModelError(
            f"{fpath} has sha256 {got[:16]}…, but its manifest says {str(want)[:16]}…; refusing to "
            "unpickle a file the manifest does not describe — run `make train`"
        )
    import joblib  # imported here: only a verified file is unpickled

    bundle = joblib.load(fpath)
    if not isinstance(bundle, dict) or bundle.get("feature_hash") != feature_hash():
        raise ModelError(f"{fpath} does not carry the feature hash of its manifest; run `make train`")
    models = {k: bundle["models"][k] for k in KINDS}
    models["_check_rows"] = bundle.get("check_rows") or {}
    return models, manifest


class ConfidenceScorer:
    """The ``scorer`` of :class:`nlp.engine.Engine`: fills ``confidence`` and ``route`` of a result.

    On the compiled path (:mod:`nlp.scoring.fast`) :meth:`score_many` scores a whole batch of notes (the
    engine's ``nlp.pipe`` batch) in one evaluation; on the scikit-learn path all lines of a note are scored
    in one ``predict_proba`` call (likewise its diagnoses), then the claim."""

    def __init__(self, models: dict[str, Any], manifest: dict[str, Any]):
        self.models = {k: models[k] for k in KINDS}
        self.manifest = manifest
        self.version = f"conf-{manifest['model']['sha256'][:12]}"
        self.default_threshold = float(manifest.get("threshold", {}).get("value", 1.0))
        self.fast = _compile(self.models, models.get("_check_rows") or {})

    def _proba(self, kind: str, rows: list[dict[str, Any]]) -> list[float]:
        """scikit-learn's ``predict_proba`` for all rows of one kind (the reference path)."""
        if not rows:
            return []
        return [round(float(v), 4) for v in self.models[kind].predict_proba(rows)[:, 1]]

    def predict(self, facts: Any, claim: Any, result: dict[str, Any]) -> tuple[list[float], list[float], float]:
        """(line confidences, diagnosis confidences, claim confidence) for one note: every row of the note is
        evaluated in one batch (one call per kind on the scikit-learn path)."""
        if self.fast is not None:
            return self._predict_fast([note_parts(facts, claim, result)])[0]
        note, parts = note_parts(facts, claim, result)
        rows = {k: [{**note, **x} for x in parts[k]] for k in KINDS}
        return self._proba("line", rows["line"]), self._proba("dx", rows["dx"]), self._proba("claim", rows["claim"])[0]

    def _predict_fast(self, notes: list[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]) -> list[Any]:
        """:meth:`predict` of many notes (``note_parts`` of each) in one compiled evaluation."""
        out = []
        for p in self.fast.predict_notes(notes):
            line, dx = p.get("line", ()), p.get("dx", ())
            out.append(([round(v, 4) for v in line], [round(v, 4) for v in dx], round(p["claim"][0], 4)))
        return out

    def score(self, result: dict[str, Any], facts: Any, claim: Any, prof: dict[str, Any]) -> None:
        self._fill(result, self.predict(facts, claim, result), prof)

    def score_many(self, items: list[tuple[dict[str, Any], Any, Any, dict[str, Any]]]) -> None:
        """:meth:`score` for many notes ``(result, facts, claim, prof)``: one compiled evaluation for all their
        rows (the same numbers as note by note)."""
        if self.fast is None:
            for item in items:
                self.score(*item)
            return
        preds = self._predict_fast([note_parts(facts, claim, result) for result, facts, claim, _ in items])
        for (result, _, _, prof), pred in zip(items, preds, strict=True):
            self._fill(result, pred, prof)

    def _fill(self, result: dict[str, Any], pred: tuple[list[float], list[float], float], prof: dict[str, Any]) -> None:
        lines, dxs, conf = pred
        for ln, c in zip(result["lines"], lines, strict=True):
            ln["confidence"] = c
        for d, c in zip(result["diagnoses"], dxs, strict=True):
            d["confidence"] = c
        result["confidence"] = conf
        threshold = float((prof.get("routing") or {}).get("auto_threshold", self.default_threshold))
        result["route"] = "auto" if conf >= threshold else "review"


def score_batch(scorer: Any, items: list[tuple[dict[str, Any], Any, Any, dict[str, Any]]]) -> None:
    """Score many notes ``(result, facts, claim, prof)`` with ``scorer``: in one batch when it has
    ``score_many``, else note by note with its ``score``."""
    many = getattr(scorer, "score_many", None)
    if many is not None:
        many(items)
    else:
        for item in items:
            scorer.score(*item)


def _compile(models: dict[str, Any], check_rows: dict[str, list[dict[str, Any]]]) -> Any:
    """A plain-NumPy evaluator of the three models (:mod:`nlp.scoring.fast`), used only when it gives
    ``predict_proba``'s numbers on the reference rows stored with the model; else None."""
    from nlp.scoring.fast import CompiledModel, CompiledSet

    compiled = {}
    for kind in KINDS:
        fast = CompiledModel.from_sklearn(models[kind])
        rows = check_rows.get(kind) or []
        if fast is None or not rows:
            return None
        want = models[kind].predict_proba(rows)[:, 1]
        got = fast.predict(rows)
        if max(abs(float(a) - b) for a, b in zip(want, got, strict=True)) > 1e-9:
            return None
        compiled[kind] = fast
    return CompiledSet(compiled)


def load_scorer(model_dir: str | Path | None = None) -> ConfidenceScorer | None:
    """The scorer for the model found by :func:`find_model_dir` (None when there is no model).

    A model that is present but does not match this code raises :class:`ModelError`."""
    env = os.environ.get("BTXCODE_MODEL_DIR")
    explicit = model_dir is not None or (env is not None and env.strip().lower() not in ("", "none", "off"))
    d = find_model_dir(model_dir)
    if d is None or (not explicit and not (d / MANIFEST_FILE).is_file()):
        return None
    models, manifest = load_model(d)
    return ConfidenceScorer(models, manifest)
