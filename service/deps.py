"""FastAPI dependencies: settings, engine, store, API-key / session authentication, rate limiting.

Every dependency reads ``request.app.state`` so tests can build an app with their own settings
(``create_app(Settings.load(tmp))``) or override a dependency with ``app.dependency_overrides``.
"""

from __future__ import annotations

import threading
import time
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from nlp.engine import Engine
from service.settings import Settings
from service.store import KeyInfo, Store

SESSION_COOKIE = "btx_session"


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_engine(request: Request) -> Engine:
    return request.app.state.engine


def get_store(request: Request) -> Store:
    return request.app.state.store


SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
StoreDep = Annotated[Store, Depends(get_store)]


class ApiError(HTTPException):
    """An HTTP error with a stable code; rendered as ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(status_code=status, detail=message, headers=headers)
        self.code = code
        self.message = message


class RateLimiter:
    """Token bucket per key: ``per_minute`` requests a minute, bursts up to the same number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str, per_minute: int) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        if per_minute <= 0:
            return True, 0.0
        rate = per_minute / 60.0
        t = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(per_minute), t))
            tokens = min(float(per_minute), tokens + (t - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, t)
                return True, 0.0
            self._buckets[key] = (tokens, t)
            return False, (1.0 - tokens) / rate


_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer btx_…`")


def require_key(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> KeyInfo:
    """The caller's API key (bearer header, or the coder page's session cookie); rate limited per key."""
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    key: KeyInfo | None = None
    if creds is not None:
        key = store.verify_key(creds.credentials)
        if key is None:
            raise ApiError(401, "BAD_KEY", "unknown or revoked API key", {"WWW-Authenticate": "Bearer"})
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            key = store.session_key(cookie)
            if key is not None and request.method not in ("GET", "HEAD"):
                origin = request.headers.get("origin")
                if origin and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
                    raise ApiError(403, "BAD_ORIGIN", "cross-origin request refused")
        if key is None:
            raise ApiError(401, "NO_KEY", "send an API key as `Authorization: Bearer KEY` "
                           "(or log in to the page through the URL printed by `btxcode serve`)",
                           {"WWW-Authenticate": "Bearer"})
    limiter: RateLimiter = request.app.state.limiter
    ok, wait = limiter.allow(key.name, key.rate_limit or settings.rate_limit_per_minute)
    if not ok:
        raise ApiError(429, "RATE_LIMITED", f"rate limit for key {key.name!r} reached; retry in {wait:.1f}s",
                       {"Retry-After": str(max(1, int(wait + 0.999)))})
    request.state.actor = key.name
    return key


KeyDep = Annotated[KeyInfo, Depends(require_key)]


def require_admin(key: KeyDep) -> KeyInfo:
    if not key.admin:
        raise ApiError(403, "NOT_ADMIN", "this needs an admin key")
    return key


def client_host(request: Request) -> Any:
    return request.client.host if request.client else None
