"""The coder page, its login (one-time URL or API key → session cookie) and the offline API docs."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from service.deps import SESSION_COOKIE, ApiError
from service.settings import Settings
from service.store import Store

router = APIRouter(include_in_schema=False)


def _static(name: str) -> str:
    return resources.files("service").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/", response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse(_static("index.html"), headers={"Cache-Control": "no-store"})


@router.get("/docs", response_class=HTMLResponse)
def docs() -> HTMLResponse:
    return HTMLResponse(_static("docs.html"))


@router.get("/favicon.ico")
def favicon() -> RedirectResponse:
    return RedirectResponse("/static/favicon.svg", status_code=308)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness for load balancers (no key needed; /v1/health has the versions)."""
    return {"status": "ok"}


def _set_session(request: Request, response: Response, key_id: int) -> None:
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    token = store.create_session(key_id, settings.session_hours)
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_hours * 3600, httponly=True,
                        samesite="strict", secure=request.url.scheme == "https", path="/")


@router.get("/login")
def login_with_token(request: Request, token: str = "") -> Response:
    """Spend a one-time login token (printed by `btxcode serve`) and go to the page with a session."""
    store: Store = request.app.state.store
    key = store.redeem_login_token(token) if token and len(token) < 200 else None
    if key is None:
        return HTMLResponse("<!doctype html><title>btxcode</title><p>This login link is invalid, expired or "
                            "already used. Start <code>btxcode serve</code> again for a new one, or "
                            "<a href=\"/\">log in with an API key</a>.</p>", status_code=401)
    response = RedirectResponse("/", status_code=303)
    _set_session(request, response, key.id)
    return response


class KeyLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(..., min_length=10, max_length=200)


@router.post("/login")
def login_with_key(body: KeyLogin, request: Request) -> Response:
    store: Store = request.app.state.store
    key = store.verify_key(body.api_key)
    if key is None:
        raise ApiError(401, "BAD_KEY", "unknown or revoked API key")
    response = Response(status_code=204)
    _set_session(request, response, key.id)
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    store: Store = request.app.state.store
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        store.end_session(cookie)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response

