"""Service settings: everything lives under ``BTXCODE_HOME`` (default ``./var``).

``$BTXCODE_HOME/config.toml`` (optional) overrides the defaults; environment variables
``BTXCODE_DATABASE_URL`` and ``BTXCODE_PUBLIC_URL`` override the file. Example::

    database_url = "postgresql+psycopg://btx@db/btxcode"   # default: SQLite in $BTXCODE_HOME
    store_note_text = false          # keep note text in the audit store (off by default)
    rate_limit_per_minute = 120      # per API key (0: unlimited); `btxcode keys create --rate-limit N` per key
    cors_origins = []                # browser-based CDS clients allowed to call (CORS); none by default
    public_base_url = "https://btx.example.org"   # what CDS Hooks JWTs must name in `aud`

    [[cds.issuers]]                  # EHRs allowed to call the CDS Hooks services
    iss = "https://ehr.example.org"
    jwks_file = "cds/ehr-jwks.json"  # relative to BTXCODE_HOME; never fetched over the network
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAX_NOTE_BYTES = 200_000
MAX_BATCH = 100


@dataclass(frozen=True)
class CdsIssuer:
    """One allow-listed CDS client: its ``iss`` and its JWK Set (configured locally)."""

    iss: str
    jwks: dict[str, Any]
    jku: tuple[str, ...] = ()  # jku header values accepted as-is (never fetched)


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    store_note_text: bool = False
    rate_limit_per_minute: int = 120
    public_base_url: str | None = None  # None: http://HOST:PORT of `btxcode serve`
    cds_issuers: tuple[CdsIssuer, ...] = ()
    cds_discovery_requires_jwt: bool = True
    cds_max_token_lifetime_s: int = 3600
    cds_clock_skew_s: int = 30
    session_hours: int = 12
    login_token_hours: int = 24
    max_note_bytes: int = MAX_NOTE_BYTES
    max_batch: int = MAX_BATCH
    payer: str = "medicare"
    cors_origins: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, home: str | Path | None = None, **overrides: Any) -> Settings:
        """Settings from ``home`` (or ``$BTXCODE_HOME`` or ``./var``), its config.toml and the environment."""
        root = Path(home or os.environ.get("BTXCODE_HOME") or "var").resolve()
        root.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {}
        path = root / "config.toml"
        if path.is_file():
            cfg = tomllib.loads(path.read_text(encoding="utf-8"))
        issuers = []
        for item in cfg.get("cds", {}).get("issuers", []):
            if "jwks" in item:
                jwks = item["jwks"]
            else:
                jwks = json.loads((root / item["jwks_file"]).read_text(encoding="utf-8"))
            issuers.append(CdsIssuer(iss=item["iss"], jwks=jwks, jku=tuple(item.get("jku", ()))))
        values: dict[str, Any] = {
            "home": root,
            "database_url": f"sqlite:///{root / 'btxcode.db'}",
            "cds_issuers": tuple(issuers),
        }
        for key in ("database_url", "store_note_text", "rate_limit_per_minute", "public_base_url",
                    "cds_discovery_requires_jwt", "cds_max_token_lifetime_s", "cds_clock_skew_s",
                    "session_hours", "login_token_hours", "payer", "cors_origins"):
            if key in cfg:
                values[key] = tuple(cfg[key]) if key == "cors_origins" else cfg[key]
        if os.environ.get("BTXCODE_DATABASE_URL"):
            values["database_url"] = os.environ["BTXCODE_DATABASE_URL"]
        if os.environ.get("BTXCODE_PUBLIC_URL"):
            values["public_base_url"] = os.environ["BTXCODE_PUBLIC_URL"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values.get("public_base_url"):
            values["public_base_url"] = str(values["public_base_url"]).rstrip("/")
        return cls(**values)

    @property
    def base_url(self) -> str:
        return self.public_base_url or "http://127.0.0.1:8000"

    def issuer(self, iss: str) -> CdsIssuer | None:
        return next((i for i in self.cds_issuers if i.iss == iss), None)
