"""Typed outputs of the mapper: claim lines, diagnoses and warnings."""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass, field
from typing import Any

from nlp.facts import Evidence
from nlp.loaders import table


@dataclass(slots=True)
class ClaimLine:
    system: str  # "CPT" | "HCPCS"
    code: str
    units: int
    modifiers: list[str]
    description: str
    rule: str
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    confidence: float | None = None
    kind: str = "procedure"  # procedure | guidance | drug | neurolysis
    sources: list[Any] = field(default_factory=list)  # the Injection facts behind a procedure line

    @property
    def key(self) -> str:
        """``CODE[-MOD…]xUNITS`` as written in gold files."""
        mods = "".join(f"-{m}" for m in self.modifiers)
        return f"{self.code}{mods}x{self.units}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "code": self.code,
            "units": self.units,
            "modifiers": list(self.modifiers),
            "description": self.description,
            "rule": self.rule,
            "reason": self.reason,
            "evidence": [e.as_dict() for e in _dedupe(self.evidence)],
            "confidence": self.confidence,
        }


@dataclass(slots=True)
class DiagnosisCode:
    system: str
    code: str
    description: str
    rule: str
    reason: str
    evidence: list[Evidence] = field(default_factory=list)
    confidence: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "code": self.code,
            "description": self.description,
            "rule": self.rule,
            "reason": self.reason,
            "evidence": [e.as_dict() for e in _dedupe(self.evidence)],
            "confidence": self.confidence,
        }


@dataclass(slots=True)
class Warning_:
    code: str
    id: str
    severity: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "id": self.id, "severity": self.severity, "message": self.message}


@dataclass(slots=True)
class Claim:
    lines: list[ClaimLine] = field(default_factory=list)
    diagnoses: list[DiagnosisCode] = field(default_factory=list)
    warnings: list[Warning_] = field(default_factory=list)

    def warn(self, warning: str, **values: Any) -> None:
        """Add a catalogued warning (``rules/warnings.csv``), once per code and message."""
        row = warning_catalog()[warning]
        msg = row["message"].format(**values) if values else row["message"]
        if not any(w.code == warning and w.message == msg for w in self.warnings):
            self.warnings.append(Warning_(warning, row["id"], row["severity"], msg))


@functools.cache
def warning_catalog() -> dict[str, dict[str, str]]:
    return {r["code"]: dict(r) for r in table("rules/warnings.csv")}


_START_END = operator.attrgetter("start", "end")


def _dedupe(evidence: list[Evidence]) -> list[Evidence]:
    """Evidence in text order, once per (start, end)."""
    if len(evidence) < 2:
        return list(evidence)
    seen = set()
    out = []
    for e in sorted(evidence, key=_START_END):
        if (e.start, e.end) not in seen:
            seen.add((e.start, e.end))
            out.append(e)
    return out
