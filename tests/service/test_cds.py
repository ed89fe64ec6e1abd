"""CDS Hooks 2.0 round trips with JWTs signed by keys generated here; every refused token kind."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import jwt
import pytest
from fhir.resources.R4B.chargeitem import ChargeItem

pytestmark = pytest.mark.issue(4)

SERVICE = "/cds-services/btxcode-note-sign"
DISCHARGE = "/cds-services/btxcode-encounter-discharge"


def docref(text: str, *, doc_id: str = "note-1", doc_status: str | None = "final", patient: str = "p1",
           date: str = "2026-01-15T10:00:00Z", period_start: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "DocumentReference", "id": doc_id, "status": "current", "date": date,
        "type": {"coding": [{"system": "http://loinc.org", "code": "28570-0", "display": "Procedure note"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "content": [{"attachment": {"contentType": "text/plain; charset=utf-8",
                                    "data": base64.b64encode(text.encode()).decode()}}],
    }
    if doc_status:
        res["docStatus"] = doc_status
    if period_start:
        res["context"] = {"period": {"start": period_start}}
    return res


def request(note: dict[str, Any] | None = None, *, hook: str = "org.btxcode.note-sign", where: str = "context",
            **context: Any) -> dict[str, Any]:
    ctx = {"userId": "Practitioner/dr-1", "patientId": "p1", "encounterId": "e1", **context}
    body: dict[str, Any] = {"hook": hook, "hookInstance": str(uuid.uuid4()), "context": ctx}
    if note is not None and where == "context":
        ctx["document"] = note
    elif note is not None:
        ctx["documentId"] = note.get("id", "x")
        body["prefetch"] = {"document": note}
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_discovery_lists_both_hooks(client, make_jwt):
    r = client.get("/cds-services", headers=bearer(make_jwt("/cds-services")))
    assert r.status_code == 200, r.text
    services = {s["id"]: s for s in r.json()["services"]}
    sign = services["btxcode-note-sign"]
    assert sign["hook"].endswith("note-sign") and sign["hook"].count(".") >= 2  # reverse-domain form
    assert "{{context.documentId}}" in sign["prefetch"]["document"]
    assert services["btxcode-encounter-discharge"]["hook"] == "encounter-discharge"
    for s in services.values():
        assert s["description"] and s["id"]


def test_note_sign_round_trip_chargeitems_validate(client, make_jwt, seed_note, store):
    before = store.counts()
    r = client.post(SERVICE, json=request(docref(seed_note)), headers=bearer(make_jwt(SERVICE)))
    assert r.status_code == 200, r.text
    cards = r.json()["cards"]
    assert len(cards) == 1
    card = cards[0]
    assert len(card["summary"]) < 140 and card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["label"] and card["selectionBehavior"] in ("at-most-one", "any")
    assert card["overrideReasons"] and all(o["display"] and o["system"] and o["code"] for o in card["overrideReasons"])
    (suggestion,) = card["suggestions"]
    assert suggestion["uuid"] and suggestion["label"]
    actions = suggestion["actions"]
    assert actions and all(a["type"] == "create" and a["description"] for a in actions)
    codes = []
    for a in actions:
        item = ChargeItem.model_validate(a["resource"])  # FHIR R4 validation
        coding = item.code.coding[0]
        codes.append(coding.code)
        assert coding.system in ("http://www.ama-assn.org/go/cpt", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets")
        assert item.quantity.value >= 1
        assert item.subject.reference == "Patient/p1" and item.context.reference == "Encounter/e1"
        assert item.supportingInformation[0].reference == "DocumentReference/note-1"
        assert item.reason and item.reason[0].coding[0].system == "http://hl7.org/fhir/sid/icd-10-cm"
        assert str(item.occurrenceDateTime) == "2026-01-15"
    assert "J0585" in codes
    mods = [e for a in actions for e in a["resource"].get("extension", []) if e["url"].endswith("procedure-modifier")]
    assert all(e["valueCoding"]["code"] for e in mods)
    after = store.counts()
    assert after["suggestions"] == before["suggestions"] + 1 and after["cds_cards"] == before["cds_cards"] + 1


def test_date_of_service_from_the_document_selects_the_code_set(client, make_jwt, sample):
    note = docref(sample("01"), period_start="2008-06-01", date="2008-06-02T09:00:00Z")
    r = client.post(SERVICE, json=request(note), headers=bearer(make_jwt(SERVICE)))
    assert r.status_code == 200, r.text
    items = [a["resource"] for a in r.json()["cards"][0]["suggestions"][0]["actions"]]
    assert "64614" in {i["code"]["coding"][0]["code"] for i in items}  # the 2006-2013 code
    assert all(i["occurrenceDateTime"] == "2008-06-01" for i in items)
    assert items[0]["reason"][0]["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-9-cm"


def test_prefetch_variant_and_rsa_key(client, make_jwt, seed_note):
    r = client.post(SERVICE, json=request(docref(seed_note), where="prefetch"),
                    headers=bearer(make_jwt(SERVICE, key="rsa")))
    assert r.status_code == 200, r.text
    assert r.json()["cards"][0]["suggestions"]


def test_feedback_accepted_and_overridden_are_stored(client, make_jwt, seed_note, store):
    r = client.post(SERVICE, json=request(docref(seed_note)), headers=bearer(make_jwt(SERVICE)))
    card = r.json()["cards"][0]
    n_lines = len(card["suggestions"][0]["actions"])
    fb = f"{SERVICE}/feedback"
    before = store.counts()["decisions"]
    body = {"feedback": [{"card": card["uuid"], "outcome": "accepted",
                          "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                          "outcomeTimestamp": "2026-01-15T10:00:00Z"}]}
    r = client.post(fb, json=body, headers=bearer(make_jwt(fb)))
    assert r.status_code == 200, r.text
    assert store.counts()["decisions"] == before + n_lines
    card2 = client.post(SERVICE, json=request(docref(seed_note)), headers=bearer(make_jwt(SERVICE))).json()["cards"][0]
    body = {"feedback": [{"card": card2["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-01-15T10:01:00Z",
                          "overrideReason": {"reason": card2["overrideReasons"][0], "userComment": "per payer"}}]}
    r = client.post(fb, json=body, headers=bearer(make_jwt(SERVICE)))  # the service URL is accepted as aud too
    assert r.status_code == 200, r.text
    rows = [row for row in store.export_decisions() if row["suggestion_id"] in
            {store.card(card["uuid"])["suggestion_id"], store.card(card2["uuid"])["suggestion_id"]}]
    assert {row["decision"] for row in rows} == {"accepted", "rejected"}
    assert all(row["source"] == "cds" for row in rows)
    assert any(row["reason_code"] == card2["overrideReasons"][0]["code"] for row in rows)


@pytest.mark.parametrize(("body", "status"), [
    ({"feedback": [{"card": "nope", "outcome": "accepted", "acceptedSuggestions": [{"id": "x"}],
                    "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}, 404),
    ({"feedback": [{"card": "x", "outcome": "ignored", "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}, 422),
    ({"feedback": []}, 422),
    ({"nofeedback": 1}, 422),
])
def test_bad_feedback(client, make_jwt, store, body, status):
    fb = f"{SERVICE}/feedback"
    before = store.counts()
    r = client.post(fb, json=body, headers=bearer(make_jwt(fb)))
    assert r.status_code == status, r.text
    after = store.counts()
    assert after["decisions"] == before["decisions"] and after["suggestions"] == before["suggestions"]


def test_accepted_feedback_with_wrong_suggestion_id(client, make_jwt, seed_note, store):
    card = client.post(SERVICE, json=request(docref(seed_note)), headers=bearer(make_jwt(SERVICE))).json()["cards"][0]
    fb = f"{SERVICE}/feedback"
    before = store.counts()["decisions"]
    body = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "acceptedSuggestions": [{"id": "other"}],
                          "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    assert client.post(fb, json=body, headers=bearer(make_jwt(fb))).status_code == 400
    assert store.counts()["decisions"] == before


def test_encounter_discharge_with_bundle(client, make_jwt, seed_note, sample):
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": docref(seed_note, doc_id="n1")},
        {"resource": docref(sample("08"), doc_id="n2")},  # a consult with no procedure
        {"resource": docref(seed_note, doc_id="n3", doc_status="preliminary")},  # unsigned: not coded
    ]}
    body = {"hook": "encounter-discharge", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/1", "patientId": "p1", "encounterId": "e1"},
            "prefetch": {"notes": bundle}}
    r = client.post(DISCHARGE, json=body, headers=bearer(make_jwt(DISCHARGE)))
    assert r.status_code == 200, r.text
    refs = [a["resource"]["supportingInformation"][0]["reference"]
            for c in r.json()["cards"] for s in c.get("suggestions", []) for a in s["actions"]]
    assert refs and set(refs) == {"DocumentReference/n1"}


def test_unsigned_note_is_not_coded(client, make_jwt, seed_note, store):
    before = store.counts()
    r = client.post(SERVICE, json=request(docref(seed_note, doc_status="preliminary")), headers=bearer(make_jwt(SERVICE)))
    assert r.status_code == 200 and r.json() == {"cards": []}
    assert store.counts()["suggestions"] == before["suggestions"]


def _bad_requests(seed_note: str) -> list[Any]:
    good = docref(seed_note)
    no_data = copy.deepcopy(good)
    no_data["content"][0]["attachment"] = {"contentType": "text/plain", "url": "Binary/123"}
    bad_status = dict(good, status="bogus")
    not_base64 = copy.deepcopy(good)
    not_base64["content"][0]["attachment"]["data"] = "%%%not base64%%%"
    other_patient = docref(seed_note, patient="someone-else")
    binary = docref("x")
    binary["content"][0]["attachment"]["data"] = base64.b64encode(b"\x00\x01\x02PK\x03\x04" * 10).decode()
    empty = docref(" ")
    return [
        pytest.param(request(good, hook="order-sign"), 400, "WRONG_HOOK", id="wrong-hook"),
        pytest.param(request({"resourceType": "Patient", "id": "x"}), 400, "BAD_FHIR", id="not-a-docref"),
        pytest.param(request(bad_status), 400, "BAD_FHIR", id="invalid-fhir-status"),
        pytest.param(request({"resourceType": "DocumentReference", "status": "current"}), 400, "BAD_FHIR", id="no-content"),
        pytest.param(request(not_base64), 400, "BAD_FHIR", id="bad-base64"),
        pytest.param(request(no_data), 412, "PREFETCH_MISSING", id="url-only"),
        pytest.param(request(None), 412, "PREFETCH_MISSING", id="no-document"),
        pytest.param(request(other_patient), 400, "SUBJECT_MISMATCH", id="subject-mismatch"),
        pytest.param(request(binary), 422, "BINARY", id="binary-note"),
        pytest.param(request(empty), 422, "EMPTY", id="empty-note"),
        pytest.param(request(good, patientId=""), 400, "BAD_CONTEXT", id="no-patient"),
        pytest.param({"hook": "org.btxcode.note-sign", "context": {}}, 422, "INVALID_REQUEST", id="no-hookInstance"),
    ]


@pytest.mark.parametrize("case", range(12))
def test_bad_cds_requests_get_4xx_and_leave_store(client, make_jwt, seed_note, store, case):
    param = _bad_requests(seed_note)[case]
    body, status, code = param.values
    before = store.counts()
    r = client.post(SERVICE, json=body, headers=bearer(make_jwt(SERVICE)))
    assert r.status_code == status, (param.id, r.text)
    assert r.json()["error"]["code"] == code
    after = store.counts()
    assert {k: v for k, v in after.items() if k != "cds_jti"} == {k: v for k, v in before.items() if k != "cds_jti"}


def test_malformed_json_and_unknown_service(client, make_jwt, store):
    before = store.counts()
    r = client.post(SERVICE, content=b"{oops", headers={**bearer(make_jwt(SERVICE)), "Content-Type": "application/json"})
    assert r.status_code == 400
    path = "/cds-services/no-such-service"
    r = client.post(path, json=request(None), headers=bearer(make_jwt(path)))
    assert r.status_code == 404 and r.json()["error"]["code"] == "UNKNOWN_SERVICE"
    assert store.counts()["suggestions"] == before["suggestions"]


def _alg_none(path: str) -> str:
    enc = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()  # noqa: E731
    import time

    now = int(time.time())
    return f"{enc({'alg': 'none', 'typ': 'JWT', 'kid': 'ehr-ec-1'})}." \
           f"{enc({'iss': 'https://ehr.example.org', 'aud': 'http://testserver' + path, 'exp': now + 60, 'iat': now, 'jti': str(uuid.uuid4())})}."


@pytest.mark.parametrize("kind", ["missing", "garbage", "expired", "wrong-aud", "aud-other-service", "alg-none",
                                  "hs256", "unknown-iss", "unknown-kid", "wrong-key", "no-jti", "no-exp", "no-kid",
                                  "future-iat", "too-long-lived", "foreign-jku", "alg-mismatch"])
def test_refused_tokens(client, make_jwt, cds_keys, seed_note, store, kind):
    p = SERVICE
    tokens = {
        "garbage": "not.a.jwt",
        "expired": lambda: make_jwt(p, exp_in=-120),
        "wrong-aud": lambda: make_jwt(p, aud="https://other.example.org/cds-services/btxcode-note-sign"),
        "aud-other-service": lambda: make_jwt(p, aud="http://testserver/cds-services/btxcode-encounter-discharge"),
        "alg-none": lambda: _alg_none(p),
        "hs256": lambda: jwt.encode({"iss": "https://ehr.example.org", "aud": "http://testserver" + p, "exp": 9999999999,
                                     "iat": 1, "jti": "h"}, "secret-shared-key-that-is-long-enough-32b", algorithm="HS256",
                                    headers={"kid": "ehr-ec-1"}),
        "unknown-iss": lambda: make_jwt(p, iss="https://rogue.example.org"),
        "unknown-kid": lambda: make_jwt(p, kid="nope"),
        "wrong-key": lambda: make_jwt(p, key="stranger"),
        "no-jti": lambda: make_jwt(p, drop=("jti",)),
        "no-exp": lambda: make_jwt(p, drop=("exp",)),
        "no-kid": lambda: jwt.encode({"iss": "https://ehr.example.org", "aud": "http://testserver" + p},
                                     cds_keys["ec"], algorithm="ES384"),
        "future-iat": lambda: make_jwt(p, iat_shift=600, exp_in=900),
        "too-long-lived": lambda: make_jwt(p, exp_in=86_400),
        "foreign-jku": lambda: make_jwt(p, headers={"jku": "https://attacker.example/jwks.json"}),
        "alg-mismatch": lambda: make_jwt(p, key="rsa", alg="PS384"),
    }
    headers = {} if kind == "missing" else bearer(tokens[kind]() if callable(tokens[kind]) else tokens[kind])
    before = store.counts()
    r = client.post(SERVICE, json=request(docref(seed_note)), headers=headers)
    assert r.status_code == 401, (kind, r.text)
    assert r.json()["error"]["code"] == "BAD_JWT"
    assert "invalid_token" in r.headers["www-authenticate"]
    assert store.counts()["suggestions"] == before["suggestions"]


def test_replayed_token_is_refused(client, make_jwt, seed_note, store):
    token = make_jwt(SERVICE)
    assert client.post(SERVICE, json=request(docref(seed_note)), headers=bearer(token)).status_code == 200
    before = store.counts()
    r = client.post(SERVICE, json=request(docref(seed_note)), headers=bearer(token))
    assert r.status_code == 401 and "replay" in r.json()["error"]["message"]
    assert store.counts() == before


def test_discovery_needs_a_token_too(client, make_jwt):
    assert client.get("/cds-services").status_code == 401
    assert client.get("/cds-services", headers=bearer(make_jwt(SERVICE))).status_code == 401  # aud of another endpoint
