"""The one place the service calls the engine: validate the note, code it, audit it."""

from __future__ import annotations

import threading
from typing import Any

from nlp.engine import Engine, InputError, NoteInput, decode_note, parse_dos
from nlp.loaders import profile
from service.deps import ApiError
from service.settings import Settings
from service.store import Store

STATUS = {"TOO_LARGE": 413}


def input_error(exc: InputError, where: str = "") -> ApiError:
    prefix = f"{where}: " if where else ""
    return ApiError(STATUS.get(exc.code, 422), exc.code, prefix + exc.message)


def check_note(text: str | bytes, date_of_service: str | None, payer: str | None, settings: Settings) -> str:
    """The decoded note, or :class:`InputError` (EMPTY, BINARY, ENCODING, TOO_LARGE, BAD_DATE, BAD_PAYER)."""
    raw = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text
    if len(raw) > settings.max_note_bytes:
        raise InputError("TOO_LARGE", f"note is {len(raw)} bytes; the limit is {settings.max_note_bytes}")
    try:
        raw.decode("utf-8") if isinstance(text, str) else None
    except UnicodeDecodeError:
        raise InputError("ENCODING", "note contains unpaired surrogates: not valid Unicode text") from None
    note = decode_note(text)
    parse_dos(date_of_service)
    try:
        profile(payer or settings.payer)
    except KeyError as exc:
        raise InputError("BAD_PAYER", str(exc.args[0])) from None
    return note


class Coder:
    """Engine + store, with the engine behind a lock (one note at a time through the pipeline)."""

    def __init__(self, engine: Engine, store: Store, settings: Settings):
        self.engine, self.store, self.settings = engine, store, settings
        self.lock = threading.Lock()

    def suggest(self, text: str | bytes, *, date_of_service: str | None, payer: str | None, note_id: Any,
                channel: str, actor: str, external_id: str | None = None, where: str = "") -> dict[str, Any]:
        try:
            note = check_note(text, date_of_service, payer, self.settings)
        except InputError as exc:
            raise input_error(exc, where) from None
        try:
            with self.lock:
                result = self.engine.suggest(note, date_of_service=date_of_service, payer=payer or self.settings.payer,
                                             note_id=note_id)
        except InputError as exc:  # the engine's own checks (newer engines raise, older return an error result)
            raise input_error(exc, where) from None
        if result.get("error"):
            err = result["error"]
            raise ApiError(STATUS.get(err["code"], 422), err["code"], err["message"])
        result["suggestion_id"] = self.store.record_suggestion(
            result, channel=channel, actor=actor, note_bytes=len(note.encode("utf-8")),
            note_text=note if self.settings.store_note_text else None, external_id=external_id)
        return result

    def suggest_batch(self, notes: list[dict[str, Any]], *, channel: str, actor: str) -> list[dict[str, Any]]:
        inputs = []
        for i, n in enumerate(notes):
            text = n["text"]
            size = len(text.encode("utf-8", errors="surrogatepass"))
            if size > self.settings.max_note_bytes:
                raise ApiError(413, "TOO_LARGE", f"notes[{i}] is {size} bytes; the limit is {self.settings.max_note_bytes}")
            error = None
            try:
                text = check_note(text, n.get("date_of_service"), n.get("payer"), self.settings)
            except InputError as exc:
                error = (exc.code, exc.message)
            inputs.append(NoteInput(text=text if error is None else "", id=n.get("id"),
                                    date_of_service=n.get("date_of_service"),
                                    payer=n.get("payer") or self.settings.payer, error=error))
        with self.lock:
            results = list(self.engine.suggest_many(inputs))
        for inp, result in zip(inputs, results, strict=True):
            if result.get("error"):
                continue
            result["suggestion_id"] = self.store.record_suggestion(
                result, channel=channel, actor=actor, note_bytes=len(inp.text.encode("utf-8")),
                note_text=inp.text if self.settings.store_note_text else None)
        return results
