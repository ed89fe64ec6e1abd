"""The engine with the committed confidence model: confidences in [0, 1], a route, batching per note,
the payer profile's threshold, and freshness of the model (P12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nlp.scoring.model import MANIFEST_FILE, ConfidenceScorer, find_model_dir

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "confidence"

NOTES = [
    (
        "PROCEDURE: Chemodenervation of cervical muscles under EMG guidance.\nDate of service: 03/14/2024\n"
        "Botox, one 200-unit vial. Left sternocleidomastoid 40 units. Right splenius capitis 60 units.\n"
        "Total 100 units; 100 units discarded.\nDiagnosis: cervical dystonia.\n"
    ),
    (
        "Procedure note 2006-05-02. Botox 100 units to the right biceps, brachialis and flexor carpi radialis "
        "for spasticity after stroke (right hemiparesis). No waste. EMG guidance used.\n"
    ),
    "Follow-up visit. Botox was discussed; the patient declined injection today.\n",
]


@pytest.fixture(scope="module")
def scored(engine: Any) -> list[dict[str, Any]]:
    if engine.scorer is None:
        pytest.skip("no confidence model installed (models/confidence)")
    return [engine.suggest(t, note_id=i) for i, t in enumerate(NOTES)]


class _Spy:
    """Wraps a scorer and records each note's result, facts, claim and payer profile."""

    def __init__(self, inner: ConfidenceScorer):
        self.inner = inner
        self.seen: list[tuple[dict[str, Any], Any, Any, dict[str, Any]]] = []
        self.version = inner.version

    def score(self, result: dict[str, Any], facts: Any, claim: Any, prof: dict[str, Any]) -> None:
        self.seen.append((result, facts, claim, prof))
        self.inner.score(result, facts, claim, prof)


def test_model_is_committed_and_found() -> None:
    assert (MODEL_DIR / MANIFEST_FILE).is_file(), "models/confidence is missing: run `make train`"
    assert find_model_dir() is not None


def test_scores_in_unit_interval_and_route(scored: list[dict[str, Any]]) -> None:
    for r in scored:
        assert 0.0 <= r["confidence"] <= 1.0
        assert r["route"] in ("auto", "review")
        for item in [*r["lines"], *r["diagnoses"]]:
            assert isinstance(item["confidence"], float) and 0.0 <= item["confidence"] <= 1.0
        assert r["versions"]["model"].startswith("conf-")
    assert scored[0]["lines"], "the first note should be coded"


def test_route_follows_the_profile_threshold(engine: Any) -> None:
    if engine.scorer is None:
        pytest.skip("no confidence model installed")
    spy = _Spy(engine.scorer)
    engine.scorer = spy
    try:
        r = engine.suggest(NOTES[0])
    finally:
        engine.scorer = spy.inner
    result, facts, claim, prof = spy.seen[0]
    threshold = prof["routing"]["auto_threshold"]
    assert r["route"] == ("auto" if r["confidence"] >= threshold else "review")
    for t, route in ((0.0, "auto"), (1.01, "review")):
        res = json.loads(json.dumps(result))
        spy.inner.score(res, facts, claim, {"routing": {"auto_threshold": t}})
        assert res["route"] == route


def test_batched_per_note_and_same_numbers_as_sklearn(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """One evaluation per kind and note (never one per line), and the fast path equals predict_proba."""
    if engine.scorer is None:
        pytest.skip("no confidence model installed")
    scorer: ConfidenceScorer = engine.scorer
    spy = _Spy(scorer)
    engine.scorer = spy
    try:
        results = [engine.suggest(t) for t in NOTES]
    finally:
        engine.scorer = scorer
    calls: list[tuple[str, int]] = []
    for kind, model in scorer.models.items():
        orig = model.predict_proba

        def counting(rows: Any, _orig: Any = orig, _kind: str = kind) -> Any:
            calls.append((_kind, len(rows)))
            return _orig(rows)

        monkeypatch.setattr(model, "predict_proba", counting)
    fast = scorer.fast
    monkeypatch.setattr(scorer, "fast", None)
    for (result, facts, claim, _), done in zip(spy.seen, results, strict=True):
        calls.clear()
        lines, dxs, conf = scorer.predict(facts, claim, result)
        assert [c for c in calls if c[0] == "line"] == ([("line", len(claim.lines))] if claim.lines else [])
        assert [c for c in calls if c[0] == "dx"] == ([("dx", len(claim.diagnoses))] if claim.diagnoses else [])
        assert [c for c in calls if c[0] == "claim"] == [("claim", 1)]
        assert lines == [ln["confidence"] for ln in done["lines"]] or fast is None
        assert dxs == [d["confidence"] for d in done["diagnoses"]] or fast is None
        assert conf == done["confidence"] or fast is None


def test_committed_model_is_fresh() -> None:
    """P12: the model records the hashes of what it was built from; a change to the rule tables, the
    training data or the feature code needs a retrain."""
    from nlp.training.train_confidence import check

    if not (MODEL_DIR / MANIFEST_FILE).is_file():
        pytest.fail("models/confidence is missing: run `make train`")
    problems = check(REPO / "training_data", MODEL_DIR)
    assert not problems, "; ".join(problems) + " — run `make train`"
