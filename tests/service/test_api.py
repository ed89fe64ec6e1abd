"""REST /v1 against the real app and engine: every route, every kind of bad input, store left intact."""

from __future__ import annotations

import logging
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from service.main import create_app

pytestmark = pytest.mark.issue(4)


def test_suggest_returns_result_object_with_audit_id(client, auth, seed_note):
    r = client.post("/v1/suggest", json={"text": seed_note, "date_of_service": "2026-01-15"}, headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["schema_version"] and body["suggestion_id"]
    codes = {ln["code"] for ln in body["lines"]}
    assert "J0585" in codes
    for ln in body["lines"]:
        assert {"code", "units", "modifiers", "description", "rule", "reason", "evidence", "confidence"} <= set(ln)
        for ev in ln["evidence"]:
            assert seed_note[ev["start"]:ev["end"]] == ev["text"]
    assert len(body["note_sha256"]) == 64


def test_suggest_real_note_2008_codes(client, auth, sample):
    r = client.post("/v1/suggest", json={"text": sample("01"), "date_of_service": "2008-06-01"}, headers=auth)
    assert r.status_code == 200
    codes = [ln["code"] for ln in r.json()["lines"]]
    assert "64614" in codes and r.json()["code_set"]["diagnoses"] == "ICD-9-CM"


def test_suggest_text_route_checks_encoding(client, auth, seed_note, store):
    r = client.post("/v1/suggest/text?date_of_service=2026-01-15", content=seed_note.encode(), headers=auth)
    assert r.status_code == 200 and r.json()["lines"]
    before = store.counts()
    r = client.post("/v1/suggest/text", content="caf\u00e9 note".encode("latin-1"), headers=auth)
    assert r.status_code == 422 and r.json()["error"]["code"] == "ENCODING"
    r = client.post("/v1/suggest/text", content=b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", headers=auth)
    assert r.status_code == 422 and r.json()["error"]["code"] == "BINARY"
    assert store.counts() == before


def test_batch_in_order_with_per_note_errors(client, auth, seed_note):
    notes = [{"id": "a", "text": seed_note, "date_of_service": "2026-01-15"}, {"id": "b", "text": "   "},
             {"id": 3, "text": seed_note, "date_of_service": "2010-03-01"}]
    r = client.post("/v1/suggest/batch", json={"notes": notes}, headers=auth)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["id"] for x in results] == ["a", "b", 3]
    assert results[1]["error"]["code"] == "EMPTY" and results[1]["suggestion_id"] is None
    assert results[0]["suggestion_id"] and results[2]["suggestion_id"]
    assert results[0]["code_set"] != results[2]["code_set"] or results[0]["lines"] != results[2]["lines"]


def test_batch_limits(client, auth, store):
    before = store.counts()
    r = client.post("/v1/suggest/batch", json={"notes": [{"text": "x"}] * 101}, headers=auth)
    assert r.status_code == 422 and "notes" in r.json()["error"]["message"]
    r = client.post("/v1/suggest/batch", json={"notes": []}, headers=auth)
    assert r.status_code == 422
    r = client.post("/v1/suggest/batch", json={"notes": [{"text": "ok note"}, {"text": "y" * 200_001}]}, headers=auth)
    assert r.status_code == 413 and "notes[1]" in r.json()["error"]["message"]
    assert store.counts() == before


@pytest.mark.parametrize(("payload", "status", "code"), [
    ({"text": ""}, 422, "EMPTY"),
    ({"text": "   \n\t "}, 422, "EMPTY"),
    ({"text": "abc\u0000def"}, 422, "BINARY"),
    ({"text": "\u0001\u0002\u0003" * 50}, 422, "BINARY"),
    ({"text": "a" * 200_001}, 413, "TOO_LARGE"),
    ({"text": "note", "date_of_service": "2026-02-30"}, 422, "BAD_DATE"),
    ({"text": "note", "date_of_service": "01/02/2026"}, 422, "INVALID_REQUEST"),
    ({"text": "note", "payer": "nosuchpayer"}, 422, "BAD_PAYER"),
    ({"text": "note", "payer": "medicare+nosuchoption"}, 422, "BAD_PAYER"),
    ({"text": "note", "extra": 1}, 422, "INVALID_REQUEST"),
    ({"note": "wrong field"}, 422, "INVALID_REQUEST"),
    ({"text": 42}, 422, "INVALID_REQUEST"),
    (b'{"text": "\\ud800 lone surrogate"}', 422, "INVALID_REQUEST"),
])
def test_bad_notes_get_clear_4xx_and_store_is_untouched(client, auth, store, payload, status, code):
    before = store.counts()
    if isinstance(payload, bytes):
        r = client.post("/v1/suggest", content=payload, headers={**auth, "Content-Type": "application/json"})
    else:
        r = client.post("/v1/suggest", json=payload, headers=auth)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]
    assert store.counts() == before


@pytest.mark.parametrize("body", [b"{not json", b"", b"[1,2", b"\xff\xfe\x00\x01", b"null", b"[]"])
def test_malformed_json(client, auth, store, body):
    before = store.counts()
    r = client.post("/v1/suggest", content=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["code"] in ("BAD_JSON", "INVALID_REQUEST")
    assert store.counts() == before


def test_huge_request_body_is_413_before_parsing(client, auth, store):
    before = store.counts()
    r = client.post("/v1/suggest", content=b'{"text": "' + b"a" * 3_000_000 + b'"}',
                    headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "TOO_LARGE"
    assert store.counts() == before


def test_auth_required_everywhere_on_v1(client, store, user_key):
    before = store.counts()
    for method, path in [("post", "/v1/suggest"), ("post", "/v1/suggest/batch"), ("post", "/v1/feedback"),
                         ("get", "/v1/health"), ("get", "/v1/codes/64642"), ("post", "/v1/hl7v2/mdm"),
                         ("get", "/v1/me")]:
        r = getattr(client, method)(path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        r = getattr(client, method)(path, headers={"Authorization": "Bearer btx_wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "BAD_KEY"
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {user_key}"}).json() == {"name": "test-user", "admin": False}
    assert store.counts() == before


def test_feedback_round_trip_and_audit_record(client, auth, seed_note, store):
    sug = client.post("/v1/suggest", json={"text": seed_note, "date_of_service": "2026-01-15"}, headers=auth).json()
    lines = sug["lines"]
    assert len(lines) >= 2
    decisions = [{"line": 0, "code": lines[0]["code"], "decision": "accepted"},
                 {"line": 1, "code": lines[1]["code"], "decision": "rejected", "reason_code": "not-documented"},
                 {"line": None, "decision": "added", "final": {"system": "CPT", "code": "95874", "units": 1}}]
    if len(lines) > 2:
        decisions.append({"line": 2, "decision": "edited", "final": {"code": lines[2]["code"], "units": 2, "modifiers": ["59"]}})
    r = client.post("/v1/feedback", json={"suggestion_id": sug["suggestion_id"], "decisions": decisions}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == len(decisions)
    rec = client.get(f"/v1/suggestions/{sug['suggestion_id']}", headers=auth).json()
    assert [d["decision"] for d in rec["decisions"]] == [d["decision"] for d in decisions]
    assert rec["note_sha256"] == sug["note_sha256"]
    assert rec["versions"]["tables"] == sug["versions"]["tables"]
    assert rec["decisions"][0]["rule"] == lines[0]["rule"]
    assert rec["note_text_stored"] is False
    for ln in rec["lines"]:  # offsets kept, note text never
        assert all("text" not in ev for ev in ln["evidence"])


@pytest.mark.parametrize(("decisions", "status", "code"), [
    ([{"line": 99, "decision": "accepted"}], 422, "BAD_DECISION"),
    ([{"line": 0, "code": "99999", "decision": "accepted"}], 422, "BAD_DECISION"),
    ([{"line": 0, "decision": "edited"}], 422, "BAD_DECISION"),
    ([{"line": 0, "decision": "added", "final": {"code": "64642"}}], 422, "BAD_DECISION"),
    ([{"line": 0, "decision": "maybe"}], 422, "INVALID_REQUEST"),
    ([{"line": -1, "decision": "accepted"}], 422, "INVALID_REQUEST"),
    ([], 422, "INVALID_REQUEST"),
    ([{"line": 0, "decision": "accepted"}, {"line": 50, "decision": "accepted"}], 422, "BAD_DECISION"),
])
def test_bad_feedback_is_refused_whole(client, auth, seed_note, store, decisions, status, code):
    sid = client.post("/v1/suggest", json={"text": seed_note}, headers=auth).json()["suggestion_id"]
    before = store.counts()
    r = client.post("/v1/feedback", json={"suggestion_id": sid, "decisions": decisions}, headers=auth)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert store.counts() == before


def test_feedback_unknown_or_foreign_suggestion(client, auth, seed_note, user_key, store):
    before = store.counts()
    r = client.post("/v1/feedback", json={"suggestion_id": "00000000-0000-0000-0000-000000000000",
                                          "decisions": [{"line": 0, "decision": "accepted"}]}, headers=auth)
    assert r.status_code == 404
    sid = client.post("/v1/suggest", json={"text": seed_note}, headers=auth).json()["suggestion_id"]
    user = {"Authorization": f"Bearer {user_key}"}
    r = client.post("/v1/feedback", json={"suggestion_id": sid, "decisions": [{"line": 0, "decision": "accepted"}]},
                    headers=user)
    assert r.status_code == 404  # another key's suggestion is invisible
    assert client.get(f"/v1/suggestions/{sid}", headers=user).status_code == 404
    assert store.counts()["decisions"] == before["decisions"]


def test_health_reports_versions(client, auth, engine):
    body = client.get("/v1/health", headers=auth).json()
    assert body["status"] == "ok"
    assert body["versions"] == engine.versions
    assert "codes/cpt.csv" in body["code_sets"] and "medicare" in body["payers"]
    assert client.get("/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize(("code", "system"), [("64642", "CPT"), ("64614", "CPT"), ("J0585", "HCPCS"),
                                              ("G24.3", "ICD-10-CM"), ("333.83", "ICD-9-CM"), ("g43.709", "ICD-10-CM")])
def test_codes(client, auth, code, system):
    r = client.get(f"/v1/codes/{code}", headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["system"] == system and r.json()["description"]


def test_codes_unknown_and_malformed(client, auth):
    assert client.get("/v1/codes/99999", headers=auth).json()["error"]["code"] == "UNKNOWN_CODE"
    assert client.get("/v1/codes/%3Cscript%3E", headers=auth).status_code == 422


def test_rate_limit_per_key(client, store, seed_note):
    _, key = store.create_key("slow-key", rate_limit=3)
    h = {"Authorization": f"Bearer {key}"}
    statuses = [client.get("/v1/me", headers=h).status_code for _ in range(6)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses[3:]
    r = client.get("/v1/me", headers=h)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert r.json()["error"]["code"] == "RATE_LIMITED"


def test_security_headers_on_page_and_api(client, auth):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "http" not in csp  # nothing from elsewhere
    for h in ("x-content-type-options", "x-frame-options", "referrer-policy"):
        assert h in page.headers
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    api = client.get("/v1/health", headers=auth)
    assert api.headers["cache-control"] == "no-store" and api.headers["x-content-type-options"] == "nosniff"
    for asset in ("/static/app.js", "/static/app.css"):
        assert client.get(asset).status_code == 200


def test_openapi_and_offline_docs(client):
    spec = client.get("/openapi.json").json()
    for path in ("/v1/suggest", "/v1/suggest/batch", "/v1/feedback", "/v1/health", "/v1/codes/{code}",
                 "/v1/hl7v2/mdm", "/cds-services", "/cds-services/{service_id}", "/cds-services/{service_id}/feedback"):
        assert path in spec["paths"], path
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200


def test_no_note_text_in_logs(client, auth, caplog, store):
    marker = "Zanzibarquux"
    note = f"Patient {marker} received Botox 50 units to the right orbicularis oculi for blepharospasm."
    with caplog.at_level(logging.DEBUG):
        r = client.post("/v1/suggest", json={"text": note}, headers=auth)
        client.post("/v1/suggest", json={"text": note + "\u0000"}, headers=auth)
        client.post("/v1/suggest", content=("{" + marker).encode(), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 200
    assert "/v1/suggest" in caplog.text  # the access log is there…
    assert marker not in caplog.text  # …without the note
    rec = store.suggestion(r.json()["suggestion_id"])
    assert marker not in str(rec)


def test_note_text_stored_only_when_operator_enables_it(tmp_path, engine, cds_keys, settings_for, seed_note):
    settings = settings_for(tmp_path / "h", cds_keys["jwks"], "store_note_text = true")
    app = create_app(settings, engine=engine)
    with TestClient(app) as c:
        _, key = app.state.store.create_key("k")
        r = c.post("/v1/suggest", json={"text": seed_note}, headers={"Authorization": f"Bearer {key}"})
        assert c.get("/v1/health", headers={"Authorization": f"Bearer {key}"}).json()["note_text_stored"] is True
        assert app.state.store.suggestion(r.json()["suggestion_id"])["note_text_stored"] is True


def test_state_lives_under_btxcode_home(tmp_path, engine, cds_keys, settings_for):
    settings = settings_for(tmp_path / "state", cds_keys["jwks"])
    assert settings.database_url == f"sqlite:///{tmp_path / 'state' / 'btxcode.db'}"
    with TestClient(create_app(settings, engine=engine)):
        pass
    assert (tmp_path / "state" / "btxcode.db").is_file()


def test_postgres_url_switches_the_store(tmp_path, monkeypatch, cds_keys, settings_for):
    monkeypatch.setenv("BTXCODE_DATABASE_URL", "postgresql+psycopg://btx@db.invalid/btxcode")
    settings = settings_for(tmp_path / "pg", cds_keys["jwks"])
    assert settings.database_url.startswith("postgresql")
    from sqlalchemy.engine import make_url

    assert make_url(settings.database_url).get_backend_name() == "postgresql"


def test_page_session_login_with_one_time_url(app, client, store):
    key = store.key_by_name("test-admin") or store.create_key("test-admin", admin=True)[0]
    token = store.create_login_token(key.id)
    with TestClient(app) as c:
        assert c.get("/v1/me").status_code == 401
        r = c.get(f"/login?token={token}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/v1/me").json()["name"] == "test-admin"
        # cross-site POST with the session cookie is refused
        r = c.post("/v1/suggest", json={"text": "x"}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
    with TestClient(app) as c2:  # the token is spent
        assert c2.get(f"/login?token={token}", follow_redirects=False).status_code == 401
        assert c2.get("/v1/me").status_code == 401


def test_page_login_with_api_key(app, user_key):
    with TestClient(app) as c:
        assert c.post("/login", json={"api_key": "btx_" + "x" * 20}).status_code == 401
        assert c.post("/login", json={"api_key": user_key}).status_code == 204
        assert c.get("/v1/me").json()["name"] == "test-user"
        assert c.post("/logout").status_code == 204
        assert c.get("/v1/me").status_code == 401



def test_cors_only_for_configured_origins(tmp_path, engine, cds_keys, settings_for, client):
    preflight = {"Origin": "https://ehr-ui.example.org", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    r = client.options("/cds-services/btxcode-note-sign", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    settings = settings_for(tmp_path / "cors", cds_keys["jwks"], 'cors_origins = ["https://ehr-ui.example.org"]')
    with TestClient(create_app(settings, engine=engine)) as c:
        r = c.options("/cds-services/btxcode-note-sign", headers=preflight)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ehr-ui.example.org"
