"""Pydantic request/response models. Requests are strict (unknown fields → 422); responses carry the
engine's result object and let fields the engine adds later pass through."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
PAYER_PATTERN = r"^[A-Za-z0-9_]+(\+[A-Za-z0-9_]+)*$"
CODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9.]{0,9}$"
MODIFIER_PATTERN = r"^[A-Za-z0-9]{2}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# ---- the result object (documented; engine fields beyond these pass through) -------------------
class Evidence(Open):
    start: int
    end: int
    text: str | None = None


class Line(Open):
    system: str
    code: str
    units: float | int
    modifiers: list[str] = []
    description: str | None = None
    rule: str | None = None
    reason: str | None = None
    evidence: list[Evidence] = []
    confidence: float | None = None


class Diagnosis(Open):
    system: str
    code: str
    description: str | None = None
    evidence: list[Evidence] = []
    confidence: float | None = None


class Warning(Open):
    code: str
    message: str
    id: str | None = None
    severity: str | None = None


class ErrorInfo(Open):
    code: str
    message: str


class Result(Open):
    """The engine's result object (as ``btxcode suggest --format json`` prints it) plus its audit id."""

    suggestion_id: str | None = Field(None, description="audit id; send it back with /v1/feedback")
    id: Any = None
    schema_version: str
    date_of_service: str | None = None
    code_set: dict[str, Any] | None = None
    payer: str | None = None
    lines: list[Line] = []
    diagnoses: list[Diagnosis] = []
    warnings: list[Warning] = []
    confidence: float | None = None
    route: str | None = None
    note_sha256: str | None = None
    versions: dict[str, Any] | None = None
    error: ErrorInfo | None = None


# ---- /v1 requests ---------------------------------------------------------------------------------
class SuggestRequest(Strict):
    text: str = Field(..., description="the note, UTF-8 text of at most 200 kB", max_length=400_000)
    date_of_service: str | None = Field(None, pattern=DATE_PATTERN, description="YYYY-MM-DD; default: the note's date, else today")
    payer: str | None = Field(None, pattern=PAYER_PATTERN, max_length=80, description="payer profile, e.g. medicare, commercial, medicare+rt_lt_lines")
    id: str | int | None = Field(None, description="your id, echoed in the result")


class BatchNote(Strict):
    id: str | int | None = None
    text: str = Field(..., max_length=400_000)
    date_of_service: str | None = Field(None, pattern=DATE_PATTERN)
    payer: str | None = Field(None, pattern=PAYER_PATTERN, max_length=80)


class BatchRequest(Strict):
    notes: list[BatchNote] = Field(..., min_length=1, max_length=100, description="1 to 100 notes")


class BatchResponse(BaseModel):
    results: list[Result]


class FinalLine(Strict):
    system: Literal["CPT", "HCPCS", "ICD-10-CM", "ICD-9-CM"] | None = None
    code: str = Field(..., pattern=CODE_PATTERN)
    units: float | None = Field(None, ge=0, le=100_000)
    modifiers: list[str] = Field([], max_length=6)


class LineDecision(Strict):
    line: int | None = Field(None, ge=0, le=10_000, description="index into the suggestion's lines; null for an added line")
    code: str | None = Field(None, pattern=CODE_PATTERN, description="the code the coder saw (checked against the line)")
    decision: Literal["accepted", "rejected", "edited", "added"]
    final: FinalLine | None = Field(None, description="the coder's version of an edited or added line")
    reason_code: str | None = Field(None, max_length=80)
    comment: str | None = Field(None, max_length=500)


class FeedbackRequest(Strict):
    suggestion_id: str = Field(..., pattern=r"^[0-9a-f-]{36}$")
    decisions: list[LineDecision] = Field(..., min_length=1, max_length=200)


class FeedbackResponse(BaseModel):
    suggestion_id: str
    stored: int
    decision_ids: list[int]


class CodeInfo(BaseModel):
    code: str
    system: str
    description: str
    valid_from: str | None = None
    valid_to: str | None = None
    source_id: str | None = None
    details: dict[str, Any] = {}


class Health(BaseModel):
    status: Literal["ok"]
    versions: dict[str, Any]
    code_sets: dict[str, Any]
    payers: list[str]
    store: str
    note_text_stored: bool


class ApiErrorBody(BaseModel):
    error: ErrorInfo


class Hl7Response(BaseModel):
    ack: str = Field(..., description="ACK (ER7; segments separated by carriage returns)")
    dft: str | None = Field(None, description="DFT^P03 with one FT1 per suggested line, when the document was signed")
    suggestion_id: str | None = None
    lines: int = 0


# ---- CDS Hooks 2.0 ----------------------------------------------------------------------------------
class Coding(BaseModel):
    code: str
    system: str
    display: str | None = None


class CdsRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    hook: str
    hookInstance: str = Field(..., min_length=1, max_length=80)
    fhirServer: str | None = None
    fhirAuthorization: dict[str, Any] | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None


class AcceptedSuggestion(BaseModel):
    id: str


class OverrideReason(BaseModel):
    reason: Coding | None = None
    userComment: str | None = Field(None, max_length=1000)


class CdsFeedbackItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    card: str = Field(..., min_length=1, max_length=80)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = None
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: datetime


class CdsFeedback(BaseModel):
    model_config = ConfigDict(extra="allow")
    feedback: list[CdsFeedbackItem] = Field(..., min_length=1, max_length=100)
