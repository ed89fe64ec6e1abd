"""REST API /v1: suggest, batch, feedback, health, codes. Every route needs an API key."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from nlp.loaders import profile_names, read_text, table
from service.coding import Coder
from service.deps import ApiError, KeyDep, SettingsDep, StoreDep, require_key
from service.schemas import (
    CODE_PATTERN,
    DATE_PATTERN,
    PAYER_PATTERN,
    ApiErrorBody,
    BatchRequest,
    BatchResponse,
    CodeInfo,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    Result,
    SuggestRequest,
)
from service.store import StoreError

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ApiErrorBody, "description": "malformed JSON"},
    401: {"model": ApiErrorBody, "description": "no or bad API key"},
    413: {"model": ApiErrorBody, "description": "note over 200 kB or request too large"},
    422: {"model": ApiErrorBody, "description": "request does not match the schema, or the note is empty/binary"},
    429: {"model": ApiErrorBody, "description": "rate limit for this key reached"},
}

router = APIRouter(prefix="/v1", tags=["v1"], dependencies=[Depends(require_key)], responses=ERRORS)


def get_coder(request: Request) -> Coder:
    return request.app.state.coder


CoderDep = Annotated[Coder, Depends(get_coder)]


@router.post("/suggest", response_model=Result, summary="Code one note")
def suggest(body: SuggestRequest, coder: CoderDep, key: KeyDep, request: Request) -> dict[str, Any]:
    """The result object of `btxcode suggest --format json` for one note, plus `suggestion_id`."""
    channel = "web" if request.headers.get("x-btx-client") == "web" else "api"
    return coder.suggest(body.text, date_of_service=body.date_of_service, payer=body.payer, note_id=body.id,
                         channel=channel, actor=key.name)


@router.post("/suggest/text", response_model=Result, summary="Code one note sent as raw text",
             openapi_extra={"requestBody": {"required": True, "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def suggest_text(request: Request, coder: CoderDep, key: KeyDep,
                       date_of_service: Annotated[str | None, Query(pattern=DATE_PATTERN)] = None,
                       payer: Annotated[str | None, Query(pattern=PAYER_PATTERN, max_length=80)] = None) -> Any:
    """The note as the request body (bytes: UTF-8 checked here, so binary or mis-encoded files get a clear 422)."""
    raw = await request.body()
    return await run_in_threadpool(lambda: coder.suggest(raw, date_of_service=date_of_service, payer=payer,
                                                         note_id=None, channel="api", actor=key.name))


@router.post("/suggest/batch", response_model=BatchResponse, summary="Code up to 100 notes")
def suggest_batch(body: BatchRequest, coder: CoderDep, key: KeyDep) -> dict[str, Any]:
    """Results in input order. A note that cannot be coded (empty, binary, bad date or payer) gets a
    result with `error` in its slot; a note over 200 kB makes the whole request 413."""
    notes = [n.model_dump() for n in body.notes]
    return {"results": coder.suggest_batch(notes, channel="batch", actor=key.name)}


@router.post("/feedback", response_model=FeedbackResponse, summary="Store a coder's decisions on a suggestion",
             responses={404: {"model": ApiErrorBody, "description": "unknown suggestion"}})
def feedback(body: FeedbackRequest, store: StoreDep, key: KeyDep, request: Request) -> dict[str, Any]:
    """Accept / reject / edit each suggested line (and add missing ones); all stored or none."""
    source = "web" if request.headers.get("x-btx-client") == "web" else "api"
    try:
        ids = store.record_decisions(body.suggestion_id, [d.model_dump() for d in body.decisions], source=source,
                                     actor=key.name, owner=None if key.admin else key.name)
    except StoreError as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    return {"suggestion_id": body.suggestion_id, "stored": len(ids), "decision_ids": ids}


@router.get("/suggestions/{suggestion_id}", summary="The audit record of a suggestion and its decisions",
            responses={404: {"model": ApiErrorBody}})
def get_suggestion(suggestion_id: Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")], store: StoreDep,
                   key: KeyDep) -> dict[str, Any]:
    rec = store.suggestion(suggestion_id)
    if rec is None or (not key.admin and rec["actor"] != key.name):
        raise ApiError(404, "UNKNOWN_SUGGESTION", f"no suggestion {suggestion_id!r} for this caller")
    return rec


@router.get("/me", summary="The key this request is authenticated with")
def me(key: KeyDep) -> dict[str, Any]:
    return {"name": key.name, "admin": key.admin}


@functools.cache
def _code_sets() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("codes/cpt.csv", "codes/hcpcs.csv", "codes/icd.csv", "codes/icd9cm.csv"):
        out[name] = {"rows": len(table(name)), "sha256": hashlib.sha256(read_text(name).encode()).hexdigest()[:12]}
    try:
        out["icd10cm_package"] = "simple-icd-10-cm " + importlib.metadata.version("simple-icd-10-cm")
    except importlib.metadata.PackageNotFoundError:
        pass
    return out


@router.get("/health", response_model=Health, summary="Model, engine and code-set versions")
def health(request: Request, settings: SettingsDep, store: StoreDep) -> dict[str, Any]:
    engine = request.app.state.engine
    return {"status": "ok", "versions": engine.versions, "code_sets": _code_sets(), "payers": profile_names(),
            "store": store.engine.dialect.name, "note_text_stored": settings.store_note_text}


def lookup_code(code: str) -> CodeInfo | None:
    c = code.strip().upper()
    for r in table("codes/cpt.csv"):
        if r["code"].upper() == c:
            return CodeInfo(code=r["code"], system="CPT", description=r["summary_own_words"],
                            valid_from=r.get("valid_from") or None, valid_to=r.get("valid_to") or None,
                            source_id=r.get("source_id"), details={"kind": r.get("kind")})
    for r in table("codes/hcpcs.csv"):
        if r["code"].upper() == c:
            return CodeInfo(code=r["code"], system="HCPCS", description=r["description"],
                            valid_from=r.get("valid_from") or None, valid_to=r.get("valid_to") or None,
                            source_id=r.get("source_id"),
                            details={"product": r.get("product"), "units_per_billing_unit": r.get("units_per_billing_unit")})
    rows = [r for r in table("codes/icd.csv") if r["code"].upper() == c]
    if rows:
        r = rows[0]
        return CodeInfo(code=r["code"], system=r["system"], description=r.get("description") or r["concept"],
                        valid_from=r.get("valid_from") or None, valid_to=r.get("valid_to") or None,
                        source_id=r.get("source_id"),
                        details={"concepts": sorted({x["concept"] for x in rows}), "rules": [x["rule_id"] for x in rows]})
    for r in table("codes/icd9cm.csv"):
        if r["code"].upper() == c:
            return CodeInfo(code=r["code"], system="ICD-9-CM", description=r["description"], valid_to="2015-09-30",
                            source_id=r.get("source_id"))
    if c[:1].isalpha():  # ICD-10-CM: the official code set, loaded lazily (~1.5 s once)
        import simple_icd_10_cm as icd

        if icd.is_valid_item(c):
            return CodeInfo(code=c, system="ICD-10-CM", description=icd.get_description(c),
                            details={"billable": icd.is_leaf(c)})
    return None


@router.get("/codes/{code}", response_model=CodeInfo, summary="Look up a CPT, HCPCS or ICD code",
            responses={404: {"model": ApiErrorBody, "description": "unknown code"}})
def get_code(code: Annotated[str, Path(pattern=CODE_PATTERN, description="e.g. 64642, J0585, G24.3, 333.83")],
             _key: KeyDep) -> CodeInfo:
    info = lookup_code(code)
    if info is None:
        raise ApiError(404, "UNKNOWN_CODE", f"{code} is not in btxcode's code tables")
    return info

