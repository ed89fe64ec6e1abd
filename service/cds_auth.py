"""CDS Hooks 2.0 "Trusting CDS Clients": every call carries a JWT signed by an allow-listed EHR.

Checks, in order: an ``Authorization: Bearer`` JWT; header ``typ`` JWT, ``kid`` present, ``alg`` an
asymmetric algorithm (``none`` and HMAC are refused); ``iss`` on the allow-list with its JWK Set
configured locally (a ``jku`` header must be one the issuer is configured with; nothing is fetched);
the signature with the key named by ``kid``; ``aud`` exactly the URL of the endpoint being called;
``exp``, ``iat`` and ``jti`` present, ``exp`` in the future and not too far; ``jti`` never seen before.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
from fastapi import Request

from service.deps import ApiError
from service.settings import Settings
from service.store import Store

ASYMMETRIC_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                             "ES256", "ES384", "ES512", "EdDSA"})


def _refuse(message: str) -> ApiError:
    return ApiError(401, "BAD_JWT", message, {"WWW-Authenticate": 'Bearer error="invalid_token"'})


def expected_audiences(settings: Settings, path: str) -> set[str]:
    """The ``aud`` values accepted for a call to ``path``: that endpoint's URL (the service's URL too,
    for its feedback endpoint)."""
    base = settings.base_url
    auds = {base + path}
    if path.endswith("/feedback"):
        auds.add(base + path[: -len("/feedback")])
    return auds


def verify_token(token: str, settings: Settings, store: Store, path: str, now: float | None = None) -> dict[str, Any]:
    """The verified claims of a CDS client JWT, or :class:`ApiError` 401."""
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise _refuse(f"malformed JWT: {exc}") from None
    alg = header.get("alg")
    if alg not in ASYMMETRIC_ALGS:
        raise _refuse(f"JWT alg {alg!r} refused: CDS Hooks requires an asymmetric algorithm (e.g. ES384, RS384)")
    if str(header.get("typ", "")).upper() != "JWT":
        raise _refuse("JWT header typ must be 'JWT'")
    kid = header.get("kid")
    if not kid or not isinstance(kid, str):
        raise _refuse("JWT header has no kid")
    iss = unverified.get("iss")
    issuer = settings.issuer(iss) if isinstance(iss, str) else None
    if issuer is None:
        raise _refuse(f"issuer {iss!r} is not on this service's allow-list")
    jku = header.get("jku")
    if jku is not None and jku not in issuer.jku:
        raise _refuse("JWT jku is not a JWK Set URL configured for this issuer")
    try:
        jwks = jwt.PyJWKSet.from_dict(issuer.jwks)
    except jwt.PyJWTError as exc:
        raise ApiError(500, "BAD_JWKS", f"the JWK Set configured for {iss} is unusable: {exc}") from None
    key = next((k for k in jwks.keys if k.key_id == kid), None)
    raw = next((k for k in issuer.jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid), {})
    if key is None:
        raise _refuse(f"no key {kid!r} in the JWK Set of {iss}")
    if raw.get("alg") and raw["alg"] != alg:
        raise _refuse(f"JWT alg {alg} does not match key {kid} ({raw['alg']})")
    auds = expected_audiences(settings, path)
    now_ts = time.time() if now is None else now
    try:
        claims = jwt.decode(
            token, key=key.key, algorithms=[alg], issuer=iss, audience=None,
            leeway=settings.cds_clock_skew_s,
            options={"require": ["iss", "aud", "exp", "iat", "jti"], "verify_aud": False,
                     "verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise _refuse(f"JWT rejected: {exc}") from None
    aud = claims.get("aud")
    aud_values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(a, str) and a in auds for a in aud_values):
        raise _refuse(f"JWT aud {aud!r} is not this endpoint ({sorted(auds)[0]})")
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise _refuse("JWT exp and iat must be numbers")
    skew = settings.cds_clock_skew_s
    if exp <= now_ts - skew:
        raise _refuse("JWT has expired")
    if iat > now_ts + skew:
        raise _refuse("JWT iat is in the future")
    if exp - now_ts > settings.cds_max_token_lifetime_s + skew:
        raise _refuse(f"JWT lifetime exceeds {settings.cds_max_token_lifetime_s}s")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _refuse("JWT has no jti")
    if not store.use_jti(iss, jti, int(exp), int(now_ts)):
        raise _refuse("JWT jti already used (replay)")
    return claims


def verify_cds_jwt(request: Request) -> dict[str, Any]:
    """Router-level dependency for every CDS Hooks route."""
    settings: Settings = request.app.state.settings
    if request.url.path.rstrip("/") == "/cds-services" and not settings.cds_discovery_requires_jwt:
        return {}
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _refuse("CDS Hooks calls need `Authorization: Bearer <JWT>` signed by an allow-listed EHR")
    claims = verify_token(token.strip(), settings, request.app.state.store, request.url.path)
    request.state.actor = f"cds:{claims['iss']}"
    return claims
