"""HL7 v2 over HTTP: POST an MDM^T02 (ER7 text), get an ACK and, for a signed note, a DFT^P03."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from service import hl7v2
from service.deps import ApiError, KeyDep, require_key
from service.routers.api import ERRORS, CoderDep
from service.schemas import PAYER_PATTERN, Hl7Response

router = APIRouter(prefix="/v1/hl7v2", tags=["hl7v2"], dependencies=[Depends(require_key)], responses=ERRORS)

ER7 = {"x-application/hl7-v2+er7": {"schema": {"type": "string"}}, "text/plain": {"schema": {"type": "string"}}}


def _nak(status: int, code: str, message: str, control_id: str, sender: tuple[str, str], err: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={
        "ack": hl7v2.ack(code, control_id, sender, message, err), "dft": None, "suggestion_id": None, "lines": 0,
        "error": {"code": f"HL7_{code}", "message": message}})


@router.post("/mdm", response_model=Hl7Response, summary="Code a signed note sent as MDM^T02",
             openapi_extra={"requestBody": {"required": True, "content": ER7}},
             responses={400: {"description": "AR: not a parseable MDM^T02 (body has the ACK)"},
                        422: {"description": "AE: no TXA, no note text, or a note that cannot be coded (body has the ACK)"}})
async def mdm(request: Request, coder: CoderDep, key: KeyDep,
              payer: str | None = Query(None, pattern=PAYER_PATTERN, max_length=80)) -> Any:
    """TXA-17 AU/LA (signed): ACK AA and a DFT^P03 with one FT1 per suggested line. Other statuses:
    ACK AA, not coded. Malformed: ACK AR (HTTP 400). Unprocessable: ACK AE (HTTP 422)."""
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _nak(400, "AR", "message is not UTF-8 text", "", ("", ""), "102")
    try:
        doc = hl7v2.parse_mdm(text)
    except hl7v2.Hl7Error as exc:
        return _nak(400 if exc.ack_code == "AR" else 422, exc.ack_code, exc.message, exc.control_id, exc.sender, exc.err)
    if not doc.signed:
        msg = f"document status {doc.status or '(empty)'} is not signed (AU/LA); not coded"
        return {"ack": hl7v2.ack("AA", doc.control_id, doc.sender, msg), "dft": None, "suggestion_id": None, "lines": 0}
    try:
        result = await run_in_threadpool(lambda: coder.suggest(
            doc.text.encode("utf-8"), date_of_service=doc.date_of_service, payer=payer, note_id=doc.document_id,
            channel="hl7", actor=key.name, external_id=doc.document_id))
    except ApiError as exc:
        return _nak(exc.status_code if exc.status_code == 413 else 422, "AE", f"{exc.code}: {exc.message}",
                    doc.control_id, doc.sender, "102" if exc.code != "EMPTY" else "101")
    sid = result["suggestion_id"]
    return {"ack": hl7v2.ack("AA", doc.control_id, doc.sender), "dft": hl7v2.dft(doc, result, sid),
            "suggestion_id": sid, "lines": len(result["lines"])}
