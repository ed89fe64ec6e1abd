"""FHIR R4 resources in and out, built and validated with ``fhir.resources`` (R4B models; ChargeItem
and DocumentReference are unchanged between R4 and R4B)."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.chargeitem import ChargeItem
from fhir.resources.R4B.documentreference import DocumentReference
from pydantic import ValidationError

SYSTEMS = {
    "CPT": "http://www.ama-assn.org/go/cpt",
    "HCPCS": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
    "ICD-10-CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD-9-CM": "http://hl7.org/fhir/sid/icd-9-cm",
}
MODIFIER_EXTENSION = "https://btxcode.org/fhir/StructureDefinition/procedure-modifier"
RULE_EXTENSION = "https://btxcode.org/fhir/StructureDefinition/rule-id"
SIGNED_DOC_STATUS = {"final", "amended"}
DOC_STATUS = {"current", "superseded", "entered-in-error"}
COMPOSITION_STATUS = {"preliminary", "final", "amended", "entered-in-error"}


class FhirError(ValueError):
    """A FHIR payload that is not what the hook needs (status 400) or is missing (412)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _brief(exc: ValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()))
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts)


def parse_document_reference(data: Any, where: str) -> DocumentReference:
    if not isinstance(data, dict) or data.get("resourceType") != "DocumentReference":
        raise FhirError(f"{where} must be a FHIR DocumentReference resource")
    try:
        doc = DocumentReference.model_validate(data)
    except ValidationError as exc:
        raise FhirError(f"{where} is not a valid FHIR R4 DocumentReference: {_brief(exc)}") from None
    # required bindings the models do not enforce
    if doc.status not in DOC_STATUS:
        raise FhirError(f"{where}.status {doc.status!r} is not one of {', '.join(sorted(DOC_STATUS))}")
    if doc.docStatus is not None and doc.docStatus not in COMPOSITION_STATUS:
        raise FhirError(f"{where}.docStatus {doc.docStatus!r} is not one of {', '.join(sorted(COMPOSITION_STATUS))}")
    return doc


def documents_from_bundle(data: Any, where: str) -> list[DocumentReference]:
    if isinstance(data, dict) and data.get("resourceType") == "DocumentReference":
        return [parse_document_reference(data, where)]
    if not isinstance(data, dict) or data.get("resourceType") != "Bundle":
        raise FhirError(f"{where} must be a DocumentReference or a searchset Bundle of them")
    try:
        Bundle.model_validate({k: v for k, v in data.items() if k != "entry"} | {"entry": []})
    except ValidationError as exc:
        raise FhirError(f"{where} is not a valid FHIR R4 Bundle: {_brief(exc)}") from None
    docs = []
    for i, entry in enumerate(data.get("entry") or []):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") == "DocumentReference":
            docs.append(parse_document_reference(res, f"{where}.entry[{i}].resource"))
    return docs


def is_signed(doc: DocumentReference) -> bool:
    """A current document whose docStatus is final or amended (absent docStatus counts as signed on
    the note-sign hook, which fires at signing)."""
    return doc.status == "current" and (doc.docStatus is None or doc.docStatus in SIGNED_DOC_STATUS)


def note_text(doc: DocumentReference, where: str) -> bytes:
    """The note's bytes from the first inline text/plain attachment."""
    for content in doc.content or []:
        att = content.attachment
        ctype = (att.contentType or "text/plain").split(";")[0].strip().lower()
        if ctype not in ("text/plain", "text/markdown") or att.data is None:
            continue
        raw = att.data
        if isinstance(raw, bytes):
            try:
                return base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                return raw
        try:
            return base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise FhirError(f"{where}: attachment.data is not base64") from None
    if any(c.attachment.url for c in doc.content or []):
        raise FhirError(f"{where}: the note is only referenced by URL; send it inline "
                        "(attachment.data, text/plain) or through prefetch", 412)
    raise FhirError(f"{where} has no text/plain attachment with inline data")


def service_date(doc: DocumentReference) -> str | None:
    """The date of service: the document's context period start, else the document's date."""
    for value in ((doc.context.period.start if doc.context and doc.context.period else None), doc.date):
        if value is not None:
            return value.isoformat()[:10] if hasattr(value, "isoformat") else str(value)[:10]
    return None


def doc_reference(doc: DocumentReference) -> dict[str, Any]:
    if doc.id:
        return {"reference": f"DocumentReference/{doc.id}", "type": "DocumentReference"}
    if doc.masterIdentifier is not None:
        return {"type": "DocumentReference", "identifier": doc.masterIdentifier.model_dump(exclude_none=True)}
    return {"type": "DocumentReference", "display": doc.description or "signed procedure note"}


def _ref(kind: str, value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    return {"reference": value if "/" in value else f"{kind}/{value}"}


def charge_items(result: dict[str, Any], *, patient_id: str, encounter_id: str | None,
                 document: dict[str, Any], user_id: str | None = None) -> list[dict[str, Any]]:
    """One validated ChargeItem per suggested line: CPT/HCPCS code, quantity, modifiers (extension),
    reason = the suggested diagnoses, supportingInformation = the note."""
    reasons = [{"coding": [{"system": SYSTEMS.get(d["system"], d["system"]), "code": d["code"],
                            **({"display": d["description"]} if d.get("description") else {})}]}
               for d in result.get("diagnoses", []) if d.get("code")]
    entered = datetime.now(UTC).replace(microsecond=0).isoformat()
    items = []
    for line in result.get("lines", []):
        units = line.get("units")
        resource: dict[str, Any] = {
            "resourceType": "ChargeItem",
            "status": "billable",
            "code": {"coding": [{"system": SYSTEMS.get(line["system"], line["system"]), "code": line["code"],
                                 **({"display": line["description"]} if line.get("description") else {})}],
                     "text": "-".join([line["code"], *line.get("modifiers", [])])},
            "subject": _ref("Patient", patient_id),
            "quantity": {"value": units if units is not None else 1},
            "enteredDate": entered,
            "supportingInformation": [document],
        }
        if encounter_id:
            resource["context"] = _ref("Encounter", encounter_id)
        if user_id:
            resource["enterer"] = _ref("Practitioner", user_id)
        if result.get("date_of_service"):
            resource["occurrenceDateTime"] = result["date_of_service"]
        if reasons:
            resource["reason"] = reasons
        ext = [{"url": MODIFIER_EXTENSION, "valueCoding": {"system": SYSTEMS["HCPCS"] if m.isalpha() else SYSTEMS["CPT"],
                                                           "code": m}} for m in line.get("modifiers", [])]
        if line.get("rule"):
            ext.append({"url": RULE_EXTENSION, "valueString": line["rule"]})
        if ext:
            resource["extension"] = ext
        if line.get("reason"):
            resource["note"] = [{"text": line["reason"]}]
        validated = ChargeItem.model_validate(resource)
        items.append(validated.model_dump(mode="json", exclude_none=True))
    return items


def validate_charge_item(resource: dict[str, Any]) -> ChargeItem:
    return ChargeItem.model_validate(resource)
