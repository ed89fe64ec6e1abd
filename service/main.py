"""App factory: ``create_app(settings)``. The engine loads once, in ``lifespan``; all state is under
``settings.home``. Security headers, a request-size limit and a note-free access log wrap every route."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from nlp import __version__
from service.coding import Coder
from service.deps import ApiError, RateLimiter
from service.settings import Settings
from service.store import Store

log = logging.getLogger("btxcode.service")

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
API_CSP = "default-src 'none'; frame-ancestors 'none'"
BATCH_BODY_LIMIT = 24 * 1024 * 1024
BODY_LIMIT = 2 * 1024 * 1024


class TooLarge(Exception):
    pass


def _json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class GuardMiddleware:
    """Pure ASGI: request-body limit (413), security headers, and an access log line without bodies
    or query strings (so neither note text nor login tokens reach the log)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limit = BATCH_BODY_LIMIT if path.startswith("/v1/suggest/batch") else BODY_LIMIT
        start = time.perf_counter()
        status_holder = {"status": 0}
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                too_big = False
            if too_big:
                await self._send_413(scope, receive, send, limit, status_holder)
                self._log(scope, status_holder["status"], start)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise TooLarge()
            return message

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                hdrs = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SECURITY_KEYS]
                ctype = next((v for k, v in hdrs if k.lower() == b"content-type"), b"")
                csp = (
                    PAGE_CSP if path == "/" or path.startswith("/static/") else DOCS_CSP if path.startswith("/docs") else API_CSP
                )
                hdrs += [(b"content-security-policy", csp.encode()), *_SECURITY_HEADERS]
                if not ctype.startswith(b"text/html") and path != "/" and not path.startswith(("/static/", "/docs")):
                    hdrs.append((b"cache-control", b"no-store"))
                message = {**message, "headers": hdrs}
            await send(message)

        try:
            await self.app(scope, limited_receive, send_with_headers)
        except TooLarge:
            if status_holder["status"] == 0:
                await self._send_413(scope, receive, send, limit, status_holder)
        finally:
            self._log(scope, status_holder["status"], start)

    async def _send_413(self, scope: Scope, receive: Receive, send: Send, limit: int, holder: dict[str, int]) -> None:
        resp = _json(413, "TOO_LARGE", f"request body over {limit} bytes")
        holder["status"] = 413

        async def send_wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), *_SECURITY_HEADERS, (b"content-security-policy", API_CSP.encode())],
                }
            await send(message)

        await resp(scope, receive, send_wrapped)

    @staticmethod
    def _log(scope: Scope, status: int, start: float) -> None:
        state = scope.get("state") or {}
        actor = state.get("actor", "-") if isinstance(state, dict) else "-"
        log.info(
            "%s %s %s %.0fms actor=%s",
            scope.get("method"),
            scope.get("path"),
            status,
            (time.perf_counter() - start) * 1000,
            actor,
        )


_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
]
_SECURITY_KEYS = {k for k, _ in _SECURITY_HEADERS} | {b"content-security-policy"}


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str, list[dict[str, Any]]]:
    errors = exc.errors()
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")} for e in errors[:20]]
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "BAD_JSON", "request body is not valid JSON", details
    parts = []
    for e in errors[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {e.get('msg')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return 422, "INVALID_REQUEST", "; ".join(parts) + more, details


def create_app(settings: Settings | None = None, engine: Any = None) -> FastAPI:
    """The service. ``engine``: an already loaded :class:`nlp.engine.Engine` to share (tests, workers);
    by default one is loaded in ``lifespan``."""
    settings = settings or Settings.load()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from nlp import load_engine
        from nlp.loaders import tables_digest

        store = Store(settings.database_url)
        eng = engine if engine is not None else load_engine(payer=settings.payer)
        tables_digest()
        app.state.settings = settings
        app.state.store = store
        app.state.engine = eng
        app.state.coder = Coder(eng, store, settings)
        app.state.limiter = RateLimiter()
        log.info(
            "btxcode service ready: engine %s, tables %s, store %s",
            eng.versions.get("engine"),
            eng.versions.get("tables"),
            store.engine.dialect.name,
        )
        try:
            yield
        finally:
            store.close()

    app = FastAPI(
        title="btxcode",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description="Billing-code suggestions for botulinum-toxin procedure notes: REST API (`/v1`, API key "
        "as `Authorization: Bearer KEY`), CDS Hooks 2.0 (`/cds-services`, signed JWT) and HL7 v2 "
        "(`/v1/hl7v2/mdm`). The coder page is at `/`.",
    )
    app.state.settings = settings

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status_code, exc.code, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 401: "UNAUTHORIZED", 403: "FORBIDDEN"}.get(
            exc.status_code, f"HTTP_{exc.status_code}"
        )
        return _json(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        status, code, message, details = _validation_message(exc)
        return JSONResponse({"error": {"code": code, "message": message, "details": details}}, status_code=status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The exception's message may quote input: log its type and frames only.
        log.error(
            "internal error on %s %s: %s\n%s",
            request.method,
            request.url.path,
            type(exc).__name__,
            "".join(traceback.format_tb(exc.__traceback__)),
        )
        return _json(500, "INTERNAL", "internal error; it has been logged")

    from service.routers import api, cds_hooks, hl7, web

    app.include_router(web.router)
    app.include_router(api.router)
    app.include_router(hl7.router)
    app.include_router(cds_hooks.router)
    app.mount("/static", StaticFiles(directory=str(resources.files("service").joinpath("static"))), name="static")
    try:
        import swagger_ui_bundle

        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="docs-assets")
    except ImportError:  # docs page then shows a plain link to /openapi.json
        pass
    if settings.cors_origins:  # for browser-based CDS clients; nothing is shared cross-origin by default
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )
    app.add_middleware(GuardMiddleware)
    return app


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory service.main:app_from_env`` (and ``btxcode serve``, in every worker process):
    the settings come from the environment (``BTXCODE_HOME``, ``BTXCODE_PUBLIC_URL``, …)."""
    return create_app(Settings.load())


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP protocol with TCP_NODELAY on every connection (``btxcode serve`` passes it as ``http=``).

    With ``--workers`` > 1 uvicorn binds the listening socket itself as ``socket.socket(AF_INET)``, whose
    ``proto`` is 0, so asyncio does not set TCP_NODELAY on the connections it accepts (it does so only when
    ``proto == IPPROTO_TCP``). A response then leaves as head and body in two segments, and Nagle's algorithm
    holds the body back until the client's delayed ACK: about 40 ms on every keep-alive request (measured:
    8 ms per request with one worker, 52 ms with two, the same time spent in the server)."""

    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
