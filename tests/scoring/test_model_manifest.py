"""nlp.scoring.model: the manifest check, the sha256 check before unpickling, and the plain-NumPy path."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from nlp.scoring import features as F
from nlp.scoring.model import (
    KINDS,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    MODEL_FILE,
    ConfidenceScorer,
    ModelError,
    load_model,
    load_scorer,
    sha256_file,
)
from nlp.training.train_confidence import fit_calibrated


def _rows(n: int, seed: int) -> tuple[list[dict[str, Any]], list[int]]:
    rng = random.Random(seed)
    rows, y = [], []
    for _ in range(n):
        warn = rng.random() < 0.3
        gap = rng.random()
        rows.append(
            {
                "era": rng.choice(["2014+", "2006-2013"]),
                "n_lines": rng.randrange(5),
                "dose_gap": gap,
                "warnings": ["WASTAGE_UNDOCUMENTED"] if warn else [],
                "units_complete": rng.random() < 0.8,
            }
        )
        y.append(int(not warn and gap < 0.7 or rng.random() < 0.1))
    return rows, y


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small model with a valid manifest, trained on synthetic rows."""
    import joblib

    d = tmp_path_factory.mktemp("model")
    models = {}
    for k, kind in enumerate(KINDS):
        Xf, yf = _rows(120, k)
        Xc, yc = _rows(60, k + 10)
        models[kind] = fit_calibrated(kind, Xf, yf, Xc, yc)
    check = {kind: _rows(20, 99)[0] for kind in KINDS}
    joblib.dump(
        {"models": models, "feature_version": F.FEATURE_VERSION, "feature_hash": F.feature_hash(), "check_rows": check},
        d / MODEL_FILE,
    )
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": {"file": MODEL_FILE, "sha256": sha256_file(d / MODEL_FILE), "kinds": list(KINDS)},
        "features": {"version": F.FEATURE_VERSION, "hash": F.feature_hash(), "names": F.FEATURE_NAMES},
        "threshold": {"value": 0.9},
    }
    (d / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return d


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, MANIFEST_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def _edit_manifest(d: Path, **changes: Any) -> None:
    m = json.loads((d / MANIFEST_FILE).read_text(encoding="utf-8"))
    for path, value in changes.items():
        node = m
        *head, last = path.split("__")
        for key in head:
            node = node[key]
        node[last] = value
    (d / MANIFEST_FILE).write_text(json.dumps(m), encoding="utf-8")


def test_a_matching_model_loads(tiny_model: Path) -> None:
    models, manifest = load_model(tiny_model)
    assert set(KINDS) <= set(models) and manifest["features"]["hash"] == F.feature_hash()
    scorer = load_scorer(tiny_model)
    assert isinstance(scorer, ConfidenceScorer) and scorer.version.startswith("conf-")


def test_model_for_other_features_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    d = _copy(tiny_model, tmp_path / "m1")
    _edit_manifest(d, features__hash="0" * 64)
    with pytest.raises(ModelError, match="trained for other features.*make train"):
        load_model(d)
    d = _copy(tiny_model, tmp_path / "m2")
    _edit_manifest(d, features__version="0")
    with pytest.raises(ModelError, match="trained for other features"):
        load_scorer(d)


def test_feature_code_change_is_refused(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(F.FEATURE_NAMES, "line", [*F.FEATURE_NAMES["line"], "brand_new_feature"])
    with pytest.raises(ModelError, match="trained for other features"):
        load_model(tiny_model)


def test_file_not_described_by_the_manifest_is_not_unpickled(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _copy(tiny_model, tmp_path / "m3")
    with (d / MODEL_FILE).open("ab") as fh:
        fh.write(b"\0")
    import joblib

    def boom(*a: Any, **k: Any) -> Any:
        raise AssertionError("joblib.load must not run on an unverified file")

    monkeypatch.setattr(joblib, "load", boom)
    with pytest.raises(ModelError, match="sha256"):
        load_model(d)


def test_missing_or_malformed_files(tiny_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no confidence model"):
        load_model(tmp_path / "empty")
    d = _copy(tiny_model, tmp_path / "m4")
    (d / MANIFEST_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelError, match="not valid JSON"):
        load_model(d)
    d = _copy(tiny_model, tmp_path / "m5")
    _edit_manifest(d, format=99)
    with pytest.raises(ModelError, match="format"):
        load_model(d)
    d = _copy(tiny_model, tmp_path / "m6")
    _edit_manifest(d, model__kinds=["line"])
    with pytest.raises(ModelError, match="lacks"):
        load_model(d)


def test_no_model_means_no_scorer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BTXCODE_MODEL_DIR", "none")
    assert load_scorer() is None
    monkeypatch.setenv("BTXCODE_MODEL_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ModelError):
        load_scorer()


def test_fast_path_gives_predict_proba_numbers(tiny_model: Path) -> None:
    scorer = load_scorer(tiny_model)
    assert scorer is not None and scorer.fast is not None
    rows, _ = _rows(50, 7)
    for kind in KINDS:
        want = [round(float(v), 4) for v in scorer.models[kind].predict_proba(rows)[:, 1]]
        common = {k: v for k, v in rows[0].items() if k in ("era",)}
        parts = [{k: v for k, v in r.items() if k != "era"} for r in rows]
        got = scorer.fast.predict({kind: common}, {kind: parts})[kind]
        full = [{**common, **p} for p in parts]
        want_shared = [round(float(v), 4) for v in scorer.models[kind].predict_proba(full)[:, 1]]
        assert [round(v, 4) for v in got] == want_shared
        assert [round(v, 4) for v in scorer.fast.predict({kind: {}}, {kind: rows})[kind]] == want
