"""The feedback and audit store (SQLAlchemy; SQLite under BTXCODE_HOME by default, PostgreSQL by URL).

What is kept: API keys (hashed), login tokens and sessions (hashed), every suggestion served (codes,
units, modifiers, rule ids, evidence *offsets*, warning codes, engine/tables/model versions and the
note's SHA-256), every coder or EHR decision, CDS Hooks card ids and used JWT ids. Note text and the
text of evidence spans are never stored unless the operator sets ``store_note_text``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

KEY_PREFIX = "btx_"


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (API keys, login and session tokens are 256-bit random)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(16))
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_limit: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class LoginToken(Base):
    __tablename__ = "login_tokens"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class WebSession(Base):
    __tablename__ = "sessions"
    session_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    expires_at: Mapped[datetime] = mapped_column(DateTime)


class Suggestion(Base):
    __tablename__ = "suggestions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    channel: Mapped[str] = mapped_column(String(16))  # web | api | batch | cds | hl7
    actor: Mapped[str] = mapped_column(String(200))
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    note_sha256: Mapped[str] = mapped_column(String(64), index=True)
    note_bytes: Mapped[int] = mapped_column(Integer)
    date_of_service: Mapped[str | None] = mapped_column(String(10), nullable=True)
    payer: Mapped[str | None] = mapped_column(String(80), nullable=True)
    code_set: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    engine_version: Mapped[str] = mapped_column(String(40))
    tables_version: Mapped[str] = mapped_column(String(40))
    model_version: Mapped[str] = mapped_column(String(80))
    schema_version: Mapped[str] = mapped_column(String(16))
    lines: Mapped[list[Any]] = mapped_column(JSON, default=list)
    diagnoses: Mapped[list[Any]] = mapped_column(JSON, default=list)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    route: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note_text: Mapped[str | None] = mapped_column(Text, nullable=True)


class Decision(Base):
    __tablename__ = "decisions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    suggestion_id: Mapped[str] = mapped_column(ForeignKey("suggestions.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now, index=True)
    source: Mapped[str] = mapped_column(String(16))  # web | api | cds
    actor: Mapped[str] = mapped_column(String(200))
    line_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    system: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(16))
    units: Mapped[float | None] = mapped_column(Float, nullable=True)
    modifiers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    rule: Mapped[str | None] = mapped_column(String(80), nullable=True)
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    decision: Mapped[str] = mapped_column(String(16))  # accepted | rejected | edited | added
    final: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    reason_code: Mapped[str | None] = mapped_column(String(80), nullable=True)
    comment: Mapped[str | None] = mapped_column(String(1000), nullable=True)
    note_sha256: Mapped[str] = mapped_column(String(64))
    engine_version: Mapped[str] = mapped_column(String(40))
    tables_version: Mapped[str] = mapped_column(String(40))
    model_version: Mapped[str] = mapped_column(String(80))


class CdsCard(Base):
    __tablename__ = "cds_cards"
    card_uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    suggestion_id: Mapped[str] = mapped_column(ForeignKey("suggestions.id"), index=True)
    service_id: Mapped[str] = mapped_column(String(80))
    suggestion_uuid: Mapped[str | None] = mapped_column(String(36), nullable=True)
    hook_instance: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=now)


class UsedJti(Base):
    __tablename__ = "cds_jti"
    iss: Mapped[str] = mapped_column(String(300), primary_key=True)
    jti: Mapped[str] = mapped_column(String(300), primary_key=True)
    exp: Mapped[int] = mapped_column(Integer, index=True)


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    admin: bool
    rate_limit: int | None


def _key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(id=row.id, name=row.name, admin=row.admin, rate_limit=row.rate_limit)


class StoreError(ValueError):
    """A request the store cannot honour (unknown suggestion, bad line index …); nothing was written."""

    def __init__(self, code: str, message: str, status: int = 422):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def scrub(value: Any) -> Any:
    """A copy of an engine structure with every ``text`` field removed (no note text in the store)."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k != "text"}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


class Store:
    """All persistence for the service. Thread-safe, and safe for several processes sharing one SQLite file
    (``btxcode serve --workers N``): WAL journal (readers never wait for the writer), a 30 s busy timeout,
    and every write transaction opened with ``BEGIN IMMEDIATE`` so it holds SQLite's write lock from its
    first statement. (A deferred transaction that reads first and writes later can fail at once with
    "database is locked" when another process committed in between; and a read-check-write such as
    spending a one-time login token would not be atomic across processes.) Within one process SQLite
    writes are also serialised by a lock, so the processes' writers queue on the file lock, not on retries.
    """

    def __init__(self, url: str):
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True, "pool_pre_ping": not self.is_sqlite}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        write_engine = self.engine
        if self.is_sqlite:

            @event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
                dbapi_conn.isolation_level = None  # the driver emits no BEGIN of its own: _begin below does
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @event.listens_for(self.engine, "begin")
            def _begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("btx_write") else "BEGIN")

            write_engine = self.engine.execution_options(btx_write=True)
        Base.metadata.create_all(write_engine)  # under the write lock: processes starting together do not race
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_sessions = sessionmaker(write_engine, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.is_sqlite else None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        lock = self._write_lock
        if lock:
            lock.acquire()
        try:
            with self._write_sessions.begin() as s:
                yield s
        finally:
            if lock:
                lock.release()

    def _read(self) -> Session:
        return self._sessions()

    # ---- API keys -------------------------------------------------------------------------------
    def has_keys(self) -> bool:
        with self._read() as s:
            return s.scalar(select(func.count()).select_from(ApiKey)) > 0

    def create_key(self, name: str, admin: bool = False, rate_limit: int | None = None) -> tuple[KeyInfo, str]:
        """A new key; the plaintext is returned once and only its hash is kept."""
        if not name or len(name) > 80:
            raise StoreError("BAD_NAME", "key name must be 1-80 characters")
        plain = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with self._write() as s:
                row = ApiKey(name=name, key_hash=digest(plain), prefix=plain[:10], admin=admin, rate_limit=rate_limit)
                s.add(row)
                s.flush()
                info = _key_info(row)
        except IntegrityError:
            raise StoreError("DUPLICATE_NAME", f"a key named {name!r} already exists", 409) from None
        return info, plain

    def verify_key(self, plain: str) -> KeyInfo | None:
        with self._read() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.key_hash == digest(plain), ApiKey.revoked_at.is_(None)))
            return _key_info(row) if row else None

    def key_by_name(self, name: str) -> KeyInfo | None:
        with self._read() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
            return _key_info(row) if row else None

    def list_keys(self) -> list[dict[str, Any]]:
        with self._read() as s:
            return [
                {
                    "name": r.name,
                    "prefix": r.prefix,
                    "admin": r.admin,
                    "rate_limit": r.rate_limit,
                    "created_at": r.created_at.isoformat(),
                    "revoked": r.revoked_at is not None,
                }
                for r in s.scalars(select(ApiKey).order_by(ApiKey.id))
            ]

    def revoke_key(self, name: str) -> bool:
        with self._write() as s:
            row = s.scalar(select(ApiKey).where(ApiKey.name == name, ApiKey.revoked_at.is_(None)))
            if row is None:
                return False
            row.revoked_at = now()
            return True

    # ---- one-time login tokens and web sessions ---------------------------------------------------
    def create_login_token(self, key_id: int, hours: int = 24) -> str:
        token = secrets.token_urlsafe(32)
        with self._write() as s:
            s.add(LoginToken(token_hash=digest(token), key_id=key_id, expires_at=now() + timedelta(hours=hours)))
        return token

    def redeem_login_token(self, token: str) -> KeyInfo | None:
        """The key a login token stands for, once: the token is spent by this call."""
        with self._write() as s:
            row = s.get(LoginToken, digest(token))
            if row is None or row.used_at is not None or row.expires_at < now():
                return None
            row.used_at = now()
            key = s.get(ApiKey, row.key_id)
            return _key_info(key) if key and key.revoked_at is None else None

    def create_session(self, key_id: int, hours: int = 12) -> str:
        token = secrets.token_urlsafe(32)
        with self._write() as s:
            s.add(WebSession(session_hash=digest(token), key_id=key_id, expires_at=now() + timedelta(hours=hours)))
        return token

    def session_key(self, token: str) -> KeyInfo | None:
        with self._read() as s:
            row = s.get(WebSession, digest(token))
            if row is None or row.expires_at < now():
                return None
            key = s.get(ApiKey, row.key_id)
            return _key_info(key) if key and key.revoked_at is None else None

    def end_session(self, token: str) -> None:
        with self._write() as s:
            row = s.get(WebSession, digest(token))
            if row is not None:
                s.delete(row)

    # ---- suggestions and decisions ---------------------------------------------------------------
    def record_suggestion(
        self,
        result: dict[str, Any],
        *,
        channel: str,
        actor: str,
        note_bytes: int,
        note_text: str | None = None,
        external_id: str | None = None,
    ) -> str:
        """Audit one served result; returns its suggestion id."""
        sid = str(uuid.uuid4())
        versions = result.get("versions") or {}
        with self._write() as s:
            s.add(
                Suggestion(
                    id=sid,
                    channel=channel,
                    actor=actor[:200],
                    external_id=(external_id or None) and external_id[:200],
                    note_sha256=result.get("note_sha256", ""),
                    note_bytes=note_bytes,
                    date_of_service=result.get("date_of_service"),
                    payer=result.get("payer"),
                    code_set=result.get("code_set") or {},
                    engine_version=str(versions.get("engine", "")),
                    tables_version=str(versions.get("tables", "")),
                    model_version=str(versions.get("model", "")),
                    schema_version=str(result.get("schema_version", "")),
                    lines=scrub(result.get("lines", [])),
                    diagnoses=scrub(result.get("diagnoses", [])),
                    warnings=[w.get("code") for w in result.get("warnings", [])],
                    facts=scrub(result.get("facts") or {}),
                    confidence=result.get("confidence"),
                    route=result.get("route"),
                    note_text=note_text,
                )
            )
        return sid

    def suggestion(self, sid: str) -> dict[str, Any] | None:
        with self._read() as s:
            row = s.get(Suggestion, sid)
            if row is None:
                return None
            decisions = s.scalars(select(Decision).where(Decision.suggestion_id == sid).order_by(Decision.id)).all()
            return {
                "suggestion_id": row.id,
                "created_at": row.created_at.isoformat() + "Z",
                "channel": row.channel,
                "actor": row.actor,
                "external_id": row.external_id,
                "note_sha256": row.note_sha256,
                "note_bytes": row.note_bytes,
                "date_of_service": row.date_of_service,
                "payer": row.payer,
                "code_set": row.code_set,
                "versions": {
                    "engine": row.engine_version,
                    "tables": row.tables_version,
                    "model": row.model_version,
                    "schema": row.schema_version,
                },
                "lines": row.lines,
                "diagnoses": row.diagnoses,
                "warnings": row.warnings,
                "confidence": row.confidence,
                "route": row.route,
                "note_text_stored": row.note_text is not None,
                "decisions": [_decision_dict(d) for d in decisions],
            }

    def record_decisions(
        self, sid: str, decisions: list[dict[str, Any]], *, source: str, actor: str, owner: str | None = None
    ) -> list[int]:
        """Store coder/EHR decisions on suggestion ``sid`` in one transaction (all or nothing).

        Each item: ``line`` (index into the suggestion's lines, or None for an added line), ``decision``
        (accepted/rejected/edited/added), optional ``final`` {code, units, modifiers}, ``reason_code``,
        ``comment``. ``owner``: when given, the suggestion must have been served to this actor.
        """
        with self._write() as s:
            row = s.get(Suggestion, sid)
            if row is None or (owner is not None and row.actor != owner):
                raise StoreError("UNKNOWN_SUGGESTION", f"no suggestion {sid!r} for this caller", 404)
            ids = []
            for i, d in enumerate(decisions):
                idx = d.get("line")
                kind = d["decision"]
                final = d.get("final")
                if kind == "added":
                    if idx is not None:
                        raise StoreError("BAD_DECISION", f"decisions[{i}]: an added line has no line index")
                    if not final:
                        raise StoreError("BAD_DECISION", f"decisions[{i}]: an added line needs final code/units")
                    line: dict[str, Any] = {
                        "system": final.get("system") or "",
                        "code": final["code"],
                        "units": None,
                        "modifiers": [],
                        "rule": None,
                        "confidence": None,
                    }
                else:
                    if idx is None or not 0 <= idx < len(row.lines):
                        raise StoreError(
                            "BAD_DECISION",
                            f"decisions[{i}]: line {idx} is not a line of the suggestion (it has {len(row.lines)})",
                        )
                    line = row.lines[idx]
                    expected = d.get("code")
                    if expected is not None and expected != line.get("code"):
                        raise StoreError("BAD_DECISION", f"decisions[{i}]: line {idx} is {line.get('code')}, not {expected}")
                    if kind == "edited" and not final:
                        raise StoreError("BAD_DECISION", f"decisions[{i}]: an edited line needs final values")
                    if kind in ("accepted", "rejected"):
                        final = None
                rec = Decision(
                    suggestion_id=sid,
                    source=source,
                    actor=actor[:200],
                    line_index=idx,
                    system=str(line.get("system") or "")[:16],
                    code=str(line.get("code") or "")[:16],
                    units=line.get("units"),
                    modifiers=list(line.get("modifiers") or []),
                    rule=line.get("rule"),
                    confidence=line.get("confidence"),
                    decision=kind,
                    final=final,
                    reason_code=(d.get("reason_code") or None),
                    comment=(d.get("comment") or None),
                    note_sha256=row.note_sha256,
                    engine_version=row.engine_version,
                    tables_version=row.tables_version,
                    model_version=row.model_version,
                )
                s.add(rec)
                s.flush()
                ids.append(rec.id)
            return ids

    def export_decisions(self) -> Iterator[dict[str, Any]]:
        """Every decision as a training row for the confidence model, oldest first."""
        with self._read() as s:
            q = select(Decision, Suggestion).join(Suggestion, Decision.suggestion_id == Suggestion.id).order_by(Decision.id)
            for d, sug in s.execute(q):
                line = sug.lines[d.line_index] if d.line_index is not None and d.line_index < len(sug.lines) else None
                yield {
                    "decision_id": d.id,
                    "suggestion_id": d.suggestion_id,
                    "created_at": d.created_at.isoformat() + "Z",
                    "source": d.source,
                    "channel": sug.channel,
                    "decision": d.decision,
                    "label": {"accepted": 1, "rejected": 0, "edited": 0, "added": None}[d.decision],
                    "line_index": d.line_index,
                    "line": line,
                    "final": d.final,
                    "reason_code": d.reason_code,
                    "note_sha256": d.note_sha256,
                    "date_of_service": sug.date_of_service,
                    "payer": sug.payer,
                    "code_set": sug.code_set,
                    "facts": sug.facts,
                    "claim_confidence": sug.confidence,
                    "all_lines": sug.lines,
                    "diagnoses": sug.diagnoses,
                    "warnings": sug.warnings,
                    "versions": {
                        "engine": d.engine_version,
                        "tables": d.tables_version,
                        "model": d.model_version,
                        "schema": sug.schema_version,
                    },
                }

    def counts(self) -> dict[str, int]:
        with self._read() as s:
            return {
                t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0
                for t in (ApiKey, Suggestion, Decision, CdsCard, UsedJti, LoginToken, WebSession)
            }

    # ---- CDS Hooks --------------------------------------------------------------------------------
    def record_card(self, card_uuid: str, sid: str, service_id: str, suggestion_uuid: str | None, hook_instance: str) -> None:
        with self._write() as s:
            s.add(
                CdsCard(
                    card_uuid=card_uuid,
                    suggestion_id=sid,
                    service_id=service_id,
                    suggestion_uuid=suggestion_uuid,
                    hook_instance=hook_instance[:80],
                )
            )

    def card(self, card_uuid: str) -> dict[str, Any] | None:
        with self._read() as s:
            row = s.get(CdsCard, card_uuid)
            if row is None:
                return None
            return {
                "card_uuid": row.card_uuid,
                "suggestion_id": row.suggestion_id,
                "service_id": row.service_id,
                "suggestion_uuid": row.suggestion_uuid,
            }

    def use_jti(self, iss: str, jti: str, exp: int, now_ts: int) -> bool:
        """Record a JWT id; False when it was seen before (a replay). Forgets ids past their expiry."""
        try:
            with self._write() as s:
                s.query(UsedJti).filter(UsedJti.exp < now_ts - 3600).delete()
                s.add(UsedJti(iss=iss[:300], jti=jti[:300], exp=exp))
        except IntegrityError:
            return False
        return True


def _decision_dict(d: Decision) -> dict[str, Any]:
    return {
        "id": d.id,
        "created_at": d.created_at.isoformat() + "Z",
        "source": d.source,
        "actor": d.actor,
        "line": d.line_index,
        "system": d.system,
        "code": d.code,
        "units": d.units,
        "modifiers": d.modifiers,
        "rule": d.rule,
        "decision": d.decision,
        "final": d.final,
        "reason_code": d.reason_code,
        "comment": d.comment,
    }
