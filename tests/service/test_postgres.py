"""The store on PostgreSQL, when a server is given: BTXCODE_TEST_PG_URL=postgresql+psycopg://user@host:port/db.
(Without it this module is skipped: CI has no PostgreSQL; SQLite is covered everywhere else.)"""

from __future__ import annotations

import os
import uuid
import warnings

import pytest

PG_URL = os.environ.get("BTXCODE_TEST_PG_URL")
pytestmark = [pytest.mark.issue(4), pytest.mark.skipif(not PG_URL, reason="set BTXCODE_TEST_PG_URL to run the store against PostgreSQL")]


def test_full_round_trip_on_postgres(tmp_path, monkeypatch, engine, cds_keys, settings_for, seed_note):
    pytest.importorskip("psycopg", reason="pip install 'psycopg[binary]' for PostgreSQL")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient
    from service.main import create_app

    monkeypatch.setenv("BTXCODE_DATABASE_URL", PG_URL or "")
    settings = settings_for(tmp_path / "pg", cds_keys["jwks"])
    app = create_app(settings, engine=engine)
    with TestClient(app) as c:
        store = app.state.store
        assert store.engine.dialect.name == "postgresql"
        _, key = store.create_key(f"pg-{uuid.uuid4().hex[:8]}", admin=True)
        h = {"Authorization": f"Bearer {key}"}
        assert c.get("/v1/health", headers=h).json()["store"] == "postgresql"
        sug = c.post("/v1/suggest", json={"text": seed_note}, headers=h).json()
        r = c.post("/v1/feedback", json={"suggestion_id": sug["suggestion_id"],
                                         "decisions": [{"line": 0, "decision": "accepted"}]}, headers=h)
        assert r.status_code == 200, r.text
        rec = c.get(f"/v1/suggestions/{sug['suggestion_id']}", headers=h).json()
        assert rec["decisions"][0]["decision"] == "accepted" and rec["lines"] == [
            {k: v for k, v in ln.items() if k != "evidence"} | {"evidence": [{"start": e["start"], "end": e["end"]}
                                                                   for e in ln["evidence"]]} for ln in sug["lines"]]
        assert store.use_jti("iss", "jti-" + key, 2_000_000_000, 1) and not store.use_jti("iss", "jti-" + key, 2_000_000_000, 1)
        assert any(row["suggestion_id"] == sug["suggestion_id"] for row in store.export_decisions())
