"""The engine: note text → scored result object (extract → facts → map → score).

``Engine.suggest`` codes one note; ``Engine.suggest_many`` codes an iterable of notes with one
pipeline, streaming through ``nlp.pipe``. Bad input raises :class:`InputError` with a stable code.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, cast

from nlp import __version__
from nlp.facts import Facts, facts_from_doc
from nlp.loaders import profile, tables_digest
from nlp.mapping.claim import map_claim
from nlp.mapping.diagnoses import code_system
from nlp.mapping.model import Claim
from nlp.pipeline import build_nlp
from nlp.scoring.model import score_batch

if TYPE_CHECKING:
    from spacy.tokens import Doc

SCHEMA_VERSION = "1.0"
MAX_NOTE_BYTES = 200_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20)])


class InputError(ValueError):
    """A note that cannot be coded; ``code`` is stable (EMPTY, BINARY, ENCODING, TOO_LARGE, BAD_DATE, BAD_PAYER)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def decode_note(data: bytes | str) -> str:
    """Validate and decode a note: UTF-8 text, not empty, not binary, at most 200 kB."""
    if isinstance(data, str):
        raw = data.encode("utf-8", errors="surrogatepass")
        text = data
    else:
        raw = data
        if len(raw) > MAX_NOTE_BYTES:
            raise InputError("TOO_LARGE", f"note is {len(raw)} bytes; the limit is {MAX_NOTE_BYTES}")
        if b"\x00" in raw:
            raise InputError("BINARY", "note contains NUL bytes: binary data, not text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError("ENCODING", f"note is not valid UTF-8 (byte {exc.start})") from None
    if len(raw) > MAX_NOTE_BYTES:
        raise InputError("TOO_LARGE", f"note is {len(raw)} bytes; the limit is {MAX_NOTE_BYTES}")
    if "\x00" in text:
        raise InputError("BINARY", "note contains NUL characters: binary data, not text")
    if not text.strip():
        raise InputError("EMPTY", "note is empty")
    # the characters of _CONTROL, counted on the UTF-8 bytes: they are single bytes there, and no byte of
    # a multi-byte sequence (nor of the BOM) is below 0x80
    control = len(raw) - len(raw.translate(None, _CONTROL_BYTES))
    if control > max(8, len(text) // 50):
        raise InputError("BINARY", "note is mostly control characters: binary data, not text")
    # keep every offset: CRLF becomes " \n" and a lone CR "\n", both the same length as before
    if "\r" not in text:
        return text
    return text.replace("\r\n", " \n").replace("\r", "\n")


_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_dos(value: str | date | None) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    return _parse_date(str(value))


@functools.lru_cache(maxsize=4096)
def _parse_date(value: str) -> date:
    if not _DATE.fullmatch(value):
        raise InputError("BAD_DATE", f"date_of_service must be YYYY-MM-DD, got {value!r}")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InputError("BAD_DATE", f"date_of_service must be YYYY-MM-DD, got {value!r}") from None


@dataclass(frozen=True)
class NoteInput:
    text: str
    id: Any = None
    date_of_service: str | date | None = None
    payer: str | None = None
    error: tuple[str, str] | None = None  # (code, message) when the input record itself was unusable


class Engine:
    """Loads the pipeline and tables once; codes notes."""

    def __init__(self, default_payer: str = "medicare", scorer: Any = None):
        self.nlp = build_nlp()
        self.default_payer = default_payer
        profile(default_payer)
        self.scorer = scorer
        self.tables_version = tables_digest()[:12]

    @property
    def versions(self) -> dict[str, str]:
        return {
            "engine": __version__,
            "tables": self.tables_version,
            "schema": SCHEMA_VERSION,
            "model": getattr(self.scorer, "version", None) or "none",
        }

    def suggest(
        self,
        text: str | bytes,
        date_of_service: str | date | None = None,
        payer: str | None = None,
        note_id: Any = None,
        today: date | None = None,
    ) -> dict[str, Any]:
        """The result object for one note; raises :class:`InputError` for a note that cannot be coded."""
        if isinstance(text, bytes):
            text = decode_note(text)
        result = next(self.suggest_many([NoteInput(text, note_id, date_of_service, payer)], today=today))
        if result.get("error"):
            raise InputError(result["error"]["code"], result["error"]["message"])
        return result

    def suggest_many(
        self, notes: Iterable[NoteInput], today: date | None = None, batch_size: int = 64
    ) -> Iterator[dict[str, Any]]:
        """Results in input order; a bad note yields an error result with its id instead of stopping."""
        prepared: deque[tuple[NoteInput, str | None, dict[str, Any] | None]] = deque()

        def texts() -> Iterator[str]:
            for item, text, err in prepared_iter():
                prepared.append((item, text, err))
                yield text or " "

        def prepared_iter() -> Iterator[tuple[NoteInput, str | None, dict[str, Any] | None]]:
            for item in notes:
                if item.error is not None:
                    yield item, None, error_result(item.id, *item.error)
                    continue
                try:
                    text = decode_note(item.text)
                    parse_dos(item.date_of_service)
                    profile(item.payer or self.default_payer)
                    yield item, text, None
                except InputError as exc:
                    yield item, None, error_result(item.id, exc.code, exc.message)
                except KeyError as exc:
                    yield item, None, error_result(item.id, "BAD_PAYER", str(exc.args[0]))

        batch: list[tuple[NoteInput, str | None, dict[str, Any] | None, Doc]] = []
        for doc in self.nlp.pipe(texts(), batch_size=batch_size):
            item, text, err = prepared.popleft()
            batch.append((item, text, err, doc))
            if len(batch) >= batch_size:
                yield from self._finish(batch, today)
                batch = []
        if batch:
            yield from self._finish(batch, today)

    def _finish(
        self, batch: list[tuple[NoteInput, str | None, dict[str, Any] | None, Doc]], today: date | None
    ) -> list[dict[str, Any]]:
        """The results of one ``nlp.pipe`` batch, in input order: each stage runs over the whole batch
        (facts, then mapping, then one scoring call), which keeps each stage's code and tables warm."""
        facts = [facts_from_doc(doc) if err is None else None for _, _, err, doc in batch]
        out: list[dict[str, Any]] = []
        to_score: list[tuple[dict[str, Any], Facts, Claim, dict[str, Any]]] = []
        for (item, text, err, _), f in zip(batch, facts, strict=True):
            if f is None:  # an input error: its error result stands in its place
                out.append(cast(dict[str, Any], err))
                continue
            result, claim, prof = self._result(item, text or "", f, today or date.today())
            out.append(result)
            to_score.append((result, f, claim, prof))
        if to_score and self.scorer is not None:
            score_batch(self.scorer, to_score)
        return out

    def _result(self, item: NoteInput, text: str, facts: Facts, today: date) -> tuple[dict[str, Any], Claim, dict[str, Any]]:
        """The result object of one note (not yet scored), its claim and its payer profile."""
        payer = item.payer or self.default_payer
        prof = profile(payer)
        options = tuple(prof["options"])
        given = parse_dos(item.date_of_service)
        dos = given or facts.date_of_service or today
        claim = map_claim(facts, dos, options)
        if given is None and facts.date_of_service is None:
            claim.warn("DOS_NOT_DOCUMENTED", dos=dos.isoformat())
        elif (
            given
            and facts.date_of_service
            and given != facts.date_of_service
            and not _day_month_swapped(given, facts.date_of_service)
        ):
            claim.warn("DOS_CONFLICT", given=given.isoformat(), noted=facts.date_of_service.isoformat())
        result: dict[str, Any] = {
            "id": item.id,
            "schema_version": SCHEMA_VERSION,
            "date_of_service": dos.isoformat(),
            "date_of_service_source": "given" if given else ("note" if facts.date_of_service else "today"),
            "code_set": {"procedures": f"CPT/HCPCS {dos.year}", "diagnoses": code_system(dos)},
            "payer": prof["name"],
            "lines": [ln.as_dict() for ln in claim.lines],
            "diagnoses": [d.as_dict() for d in claim.diagnoses],
            "confidence": None,
            "route": None,
            "warnings": [w.as_dict() for w in claim.warnings],
            "facts": facts.as_dict(),
            "versions": self.versions,
            "note_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        }
        return result, claim, prof


def _day_month_swapped(a: date, b: date) -> bool:
    """True when ``b`` is ``a`` read the other way round (10/09/2024 day-first vs month-first)."""
    return a.year == b.year and a.month == b.day and a.day == b.month


def error_result(note_id: Any, code: str, message: str) -> dict[str, Any]:
    """The result object for a note that could not be coded."""
    return {
        "id": note_id,
        "schema_version": SCHEMA_VERSION,
        "error": {"code": code, "message": message},
        "lines": [],
        "diagnoses": [],
        "warnings": [],
        "confidence": None,
        "route": "review",
    }
