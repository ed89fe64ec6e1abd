"""CDS Hooks 2.0: discovery, two services, and their feedback endpoints. JWT-checked at router level.

* ``btxcode-note-sign`` on the custom hook ``org.btxcode.note-sign``: context ``userId``, ``patientId``,
  ``encounterId`` and the signed note as a DocumentReference, inline as ``context.document`` or as
  ``prefetch.document`` (template ``DocumentReference/{{context.documentId}}``).
* ``btxcode-encounter-discharge`` on ``encounter-discharge``: the encounter's notes arrive as
  ``prefetch.notes`` (a searchset Bundle of DocumentReferences).

Each signed note with suggested lines gets a card whose one suggestion creates a FHIR ChargeItem per
line; the card carries ``overrideReasons``. Feedback outcomes are stored as line decisions.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict
from starlette.concurrency import run_in_threadpool

from service import fhir
from service.cds_auth import verify_cds_jwt
from service.coding import Coder
from service.deps import ApiError
from service.schemas import ApiErrorBody, CdsFeedback, CdsRequest
from service.store import Store, StoreError

NOTE_SIGN_HOOK = "org.btxcode.note-sign"
OVERRIDE_SYSTEM = "https://btxcode.org/fhir/CodeSystem/override-reason"
TOPIC = {"system": "https://btxcode.org/fhir/CodeSystem/card-topic", "code": "charge-capture",
         "display": "Charge capture"}
OVERRIDE_REASONS = [
    {"code": "documentation-insufficient", "system": OVERRIDE_SYSTEM, "display": "Documentation does not support these codes"},
    {"code": "different-code", "system": OVERRIDE_SYSTEM, "display": "A different code or unit count is correct"},
    {"code": "already-charged", "system": OVERRIDE_SYSTEM, "display": "Already charged elsewhere"},
    {"code": "payer-policy", "system": OVERRIDE_SYSTEM, "display": "Payer policy differs"},
    {"code": "not-performed", "system": OVERRIDE_SYSTEM, "display": "Procedure was not performed as documented"},
]

SERVICES: dict[str, dict[str, Any]] = {
    "btxcode-note-sign": {
        "hook": NOTE_SIGN_HOOK,
        "title": "btxcode charge suggestions at note signing",
        "description": "When a botulinum-toxin procedure note is signed, suggests CPT/HCPCS charge lines "
                       "(with units, modifiers and ICD-10-CM reasons) as FHIR ChargeItems.",
        "id": "btxcode-note-sign",
        "prefetch": {"document": "DocumentReference/{{context.documentId}}"},
        "usageRequirements": "Context: userId, patientId, encounterId, and the signed note as context.document "
                             "(a DocumentReference with an inline text/plain attachment) or context.documentId "
                             "with the prefetch.",
    },
    "btxcode-encounter-discharge": {
        "hook": "encounter-discharge",
        "title": "btxcode charge suggestions at discharge",
        "description": "At encounter discharge, suggests charge lines for each signed botulinum-toxin "
                       "procedure note of the encounter.",
        "id": "btxcode-encounter-discharge",
        "prefetch": {"notes": "DocumentReference?encounter={{context.encounterId}}&status=current"},
    },
}


class Discovery(BaseModel):
    model_config = ConfigDict(extra="allow")
    services: list[dict[str, Any]]


class CardsResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    cards: list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiErrorBody, "description": "malformed request, wrong hook or invalid FHIR"},
    401: {"model": ApiErrorBody, "description": "missing or invalid CDS Hooks JWT"},
    404: {"model": ApiErrorBody, "description": "unknown service or card"},
    412: {"model": ApiErrorBody, "description": "the note was neither in context nor in prefetch"},
}

router = APIRouter(prefix="/cds-services", tags=["cds-hooks"], dependencies=[Depends(verify_cds_jwt)],
                   responses=ERRORS)


@router.get("", response_model=Discovery, summary="CDS Hooks discovery")
def discovery() -> dict[str, Any]:
    return {"services": list(SERVICES.values())}


def _service(service_id: str) -> dict[str, Any]:
    svc = SERVICES.get(service_id)
    if svc is None:
        raise ApiError(404, "UNKNOWN_SERVICE", f"no CDS service {service_id!r}; see GET /cds-services")
    return svc


def _context_str(ctx: dict[str, Any], name: str, required: bool) -> str | None:
    value = ctx.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, "BAD_CONTEXT", f"context.{name} must be a non-empty string")
    return value


def _documents(service_id: str, body: CdsRequest) -> list[Any]:
    ctx, prefetch = body.context, body.prefetch or {}
    try:
        if service_id == "btxcode-note-sign":
            if "document" in ctx:
                return [fhir.parse_document_reference(ctx["document"], "context.document")]
            if prefetch.get("document") is not None:
                return fhir.documents_from_bundle(prefetch["document"], "prefetch.document")
            raise fhir.FhirError("the signed note is neither in context.document nor in prefetch.document", 412)
        if prefetch.get("notes") is None:
            raise fhir.FhirError("prefetch.notes (the encounter's DocumentReferences) is missing", 412)
        return fhir.documents_from_bundle(prefetch["notes"], "prefetch.notes")
    except fhir.FhirError as exc:
        raise ApiError(exc.status, "BAD_FHIR" if exc.status == 400 else "PREFETCH_MISSING", exc.message) from None


def _summary(result: dict[str, Any]) -> str:
    codes = ", ".join("-".join([ln["code"], *ln.get("modifiers", [])]) + (f" x{ln['units']:g}" if ln.get("units") not in (None, 1) else "")
                      for ln in result["lines"])
    text = f"Suggested charges: {codes}"
    return text if len(text) < 140 else text[:136] + "..."


def _detail(result: dict[str, Any]) -> str:
    rows = ["| Code | Units | Modifiers | Description | Rule |", "|---|---|---|---|---|"]
    for ln in result["lines"]:
        rows.append(f"| {ln['code']} | {ln.get('units')} | {' '.join(ln.get('modifiers', []))} | "
                    f"{(ln.get('description') or '').replace('|', '/')} | {ln.get('rule') or ''} |")
    dx = ", ".join(f"{d['code']} ({d.get('description') or ''})" for d in result.get("diagnoses", []))
    parts = ["\n".join(rows)]
    if dx:
        parts.append(f"Diagnoses ({result.get('code_set', {}).get('diagnoses', '')}): {dx}")
    if result.get("warnings"):
        parts.append("Check before billing:\n" + "\n".join(f"- **{w['code']}**: {w['message']}" for w in result["warnings"]))
    if result.get("confidence") is not None:
        parts.append(f"Claim confidence {result['confidence']:.2f} (route: {result.get('route')})")
    return "\n\n".join(parts)


def _card(result: dict[str, Any], items: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    card_uuid = str(uuid.uuid4())
    severe = any(w.get("severity") == "warning" for w in result.get("warnings", []))
    card: dict[str, Any] = {
        "uuid": card_uuid, "indicator": "warning" if severe else "info",
        "source": {"label": "btxcode", "topic": TOPIC},
    }
    if not result["lines"]:
        card["summary"] = "No billable botulinum-toxin procedure found in the signed note"
        card["detail"] = "\n".join(f"- **{w['code']}**: {w['message']}" for w in result["warnings"])
        return card, None
    suggestion_uuid = str(uuid.uuid4())
    card["summary"] = _summary(result)
    card["detail"] = _detail(result)
    card["suggestions"] = [{
        "label": f"Add {len(items)} charge item{'s' if len(items) != 1 else ''}",
        "uuid": suggestion_uuid, "isRecommended": True,
        "actions": [{"type": "create", "description": f"Add charge {it['code']['text']} x{it['quantity']['value']:g}",
                     "resource": it} for it in items],
    }]
    card["selectionBehavior"] = "at-most-one"
    card["overrideReasons"] = OVERRIDE_REASONS
    return card, suggestion_uuid


@router.post("/{service_id}", response_model=CardsResponse, response_model_exclude_none=True,
             summary="Call a CDS service")
async def call_service(service_id: str, body: CdsRequest, request: Request) -> dict[str, Any]:
    svc = _service(service_id)
    if body.hook != svc["hook"]:
        raise ApiError(400, "WRONG_HOOK", f"service {service_id} answers hook {svc['hook']!r}, not {body.hook!r}")
    ctx = body.context
    user_id = _context_str(ctx, "userId", True)
    patient_id = _context_str(ctx, "patientId", True)
    encounter_id = _context_str(ctx, "encounterId", service_id == "btxcode-encounter-discharge")
    docs = _documents(service_id, body)
    coder: Coder = request.app.state.coder
    store: Store = request.app.state.store
    actor = request.state.actor
    cards = []
    for i, doc in enumerate(docs):
        if not fhir.is_signed(doc):
            continue
        subject = doc.subject.reference if doc.subject is not None else None
        if subject and subject not in (patient_id, f"Patient/{patient_id}"):
            raise ApiError(400, "SUBJECT_MISMATCH", f"document {i} is about {subject}, not Patient/{patient_id}")
        try:
            raw = fhir.note_text(doc, f"document {i}")
        except fhir.FhirError as exc:
            raise ApiError(exc.status, "BAD_FHIR" if exc.status == 400 else "PREFETCH_MISSING", exc.message) from None
        dos = fhir.service_date(doc)
        result = await run_in_threadpool(lambda raw=raw, doc=doc, i=i, dos=dos: coder.suggest(
            raw, date_of_service=dos, payer=None, note_id=doc.id, channel="cds", actor=actor,
            external_id=doc.id, where=f"document {i}"))
        items = fhir.charge_items(result, patient_id=patient_id or "", encounter_id=encounter_id,
                                  document=fhir.doc_reference(doc), user_id=user_id)
        if not result["lines"] and not any(w.get("severity") == "warning" for w in result["warnings"]):
            continue  # nothing to bill and nothing a coder must act on: no card
        card, suggestion_uuid = _card(result, items)
        store.record_card(card["uuid"], result["suggestion_id"], service_id, suggestion_uuid, body.hookInstance)
        cards.append(card)
    return {"cards": cards}


@router.post("/{service_id}/feedback", summary="Feedback on cards: accepted or overridden")
def service_feedback(service_id: str, body: CdsFeedback, request: Request) -> dict[str, Any]:
    _service(service_id)
    store: Store = request.app.state.store
    plans = []
    for i, item in enumerate(body.feedback):
        card = store.card(item.card)
        if card is None or card["service_id"] != service_id:
            raise ApiError(404, "UNKNOWN_CARD", f"feedback[{i}]: no card {item.card!r} from service {service_id}")
        rec = store.suggestion(card["suggestion_id"])
        lines = rec["lines"] if rec else []
        if item.outcome == "accepted":
            accepted = {s.id for s in item.acceptedSuggestions or []}
            if not accepted:
                raise ApiError(400, "BAD_FEEDBACK", f"feedback[{i}]: an accepted outcome needs acceptedSuggestions")
            if card["suggestion_uuid"] not in accepted:
                raise ApiError(400, "BAD_FEEDBACK", f"feedback[{i}]: unknown suggestion id(s) for card {item.card}")
            decisions = [{"line": j, "code": ln["code"], "decision": "accepted"} for j, ln in enumerate(lines)]
        else:
            reason = item.overrideReason
            decisions = [{"line": j, "code": ln["code"], "decision": "rejected",
                          "reason_code": reason.reason.code if reason and reason.reason else None,
                          "comment": (reason.userComment or None) if reason else None} for j, ln in enumerate(lines)]
        plans.append((card["suggestion_id"], decisions))
    stored = 0
    for sid, decisions in plans:
        if not decisions:
            continue
        try:
            stored += len(store.record_decisions(sid, decisions, source="cds", actor=request.state.actor))
        except StoreError as exc:
            raise ApiError(exc.status, exc.code, exc.message) from None
    return {"stored": stored}
