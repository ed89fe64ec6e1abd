"""``btxcode serve``, ``btxcode keys …`` and ``btxcode feedback export`` (argparse sub-commands).

Hook into the main parser with::

    from service.cli import add_service_commands
    add_service_commands(sub)

Nothing heavy is imported until a command runs. ``python -m service`` runs the same commands alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any


def _settings(args: argparse.Namespace, **overrides: Any) -> Any:
    from service.settings import Settings

    return Settings.load(getattr(args, "home", None), **overrides)


def _store(args: argparse.Namespace) -> Any:
    from service.store import Store

    return Store(_settings(args).database_url)


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging set-up plus btxcode's own lines, applied in every worker process."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    cfg = copy.deepcopy(LOGGING_CONFIG)
    cfg["formatters"]["btxcode"] = {"format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"}
    cfg["handlers"]["btxcode"] = {"class": "logging.StreamHandler", "formatter": "btxcode", "stream": "ext://sys.stderr"}
    cfg["root"] = {"handlers": ["btxcode"], "level": level.upper()}
    return cfg


def cmd_serve(args: argparse.Namespace) -> int:
    """Bootstrap the store once (schema, WAL, admin key, login link), then hand over to uvicorn.

    The app is built by the factory ``service.main:app_from_env`` in each of ``--workers`` processes, which
    read their settings from the environment set here (``BTXCODE_HOME``, ``BTXCODE_PUBLIC_URL``); every
    worker loads its own engine and opens the one store under ``BTXCODE_HOME``.
    """
    import os

    import uvicorn

    settings = _settings(args)
    if settings.public_base_url is None:
        settings = replace(settings, public_base_url=f"http://{args.host}:{args.port}")
    from service.store import Store

    store = Store(settings.database_url)  # creates the schema (and SQLite's WAL) before any worker opens it
    try:
        admin = store.key_by_name("admin")
        if not store.has_keys():
            admin, plain = store.create_key("admin", admin=True)
            print(f"Created the admin API key (shown once, keep it safe): {plain}", flush=True)
        if admin is not None:
            token = store.create_login_token(admin.id, settings.login_token_hours)
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            print(f"Log in to the coder page (one-time link): http://{host}:{args.port}/login?token={token}", flush=True)
    finally:
        store.close()
    os.environ["BTXCODE_HOME"] = str(settings.home)
    os.environ["BTXCODE_PUBLIC_URL"] = str(settings.public_base_url)
    workers = f", {args.workers} worker processes" if args.workers > 1 else ""
    print(f"btxcode serving on http://{args.host}:{args.port}{workers}  (state in {settings.home})", flush=True)
    uvicorn.run(
        "service.main:app_from_env",
        factory=True,
        workers=args.workers,
        http="service.main:NoDelayHTTPProtocol",
        host=args.host,
        port=args.port,
        access_log=False,
        log_level=args.log_level,
        log_config=_log_config(args.log_level),
        proxy_headers=False,
        server_header=False,
    )
    return 0


def _workers(value: str) -> int:
    n = int(value)
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError("--workers must be 1-64")
    return n


def cmd_keys_create(args: argparse.Namespace) -> int:
    from service.store import StoreError

    store = _store(args)
    try:
        _, plain = store.create_key(args.name, admin=args.admin, rate_limit=args.rate_limit)
    except StoreError as exc:
        print(f"btxcode: {exc.message}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"Created {'admin ' if args.admin else ''}API key {args.name!r} (shown once): {plain}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        for k in store.list_keys():
            flags = ",".join(f for f, on in (("admin", k["admin"]), ("revoked", k["revoked"])) if on)
            print(f"{k['name']}\t{k['prefix']}…\t{k['created_at']}\t{flags}")
    finally:
        store.close()
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        ok = store.revoke_key(args.name)
    finally:
        store.close()
    print(f"revoked {args.name}" if ok else f"btxcode: no active key named {args.name!r}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def cmd_keys_login(args: argparse.Namespace) -> int:
    settings = _settings(args)
    store = _store(args)
    try:
        key = store.key_by_name(args.name)
        if key is None:
            print(f"btxcode: no active key named {args.name!r}", file=sys.stderr)
            return 1
        token = store.create_login_token(key.id, settings.login_token_hours)
    finally:
        store.close()
    print(f"One-time login link: {settings.base_url}/login?token={token}")
    return 0


def cmd_feedback_export(args: argparse.Namespace) -> int:
    store = _store(args)
    n = 0
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for row in store.export_decisions():
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if out is not sys.stdout:
            out.close()
        store.close()
    print(f"btxcode feedback export: {n} decisions", file=sys.stderr)
    return 0


def add_service_commands(sub: Any) -> None:
    """Add ``serve``, ``keys`` and ``feedback`` to an argparse sub-parser collection."""
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument("--home", default=None, help="state folder (default: $BTXCODE_HOME or ./var)")

    s = sub.add_parser("serve", parents=[home], help="run the web page, REST API, CDS Hooks and HL7 v2 service")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    s.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="worker processes (default 1). Each loads its own engine (about 0.3 GB RSS) and codes one note at a time; "
        "all share the one store under --home (SQLite in WAL mode, or the database_url). Use up to one per "
        "core. The per-key rate limit is counted in each worker, so a key may get up to N times its limit.",
    )
    s.set_defaults(func=cmd_serve)

    k = sub.add_parser("keys", help="manage API keys")
    ksub = k.add_subparsers(dest="keys_command", required=True)
    kc = ksub.add_parser("create", parents=[home], help="create a key; prints it as the last word")
    kc.add_argument("name")
    kc.add_argument("--admin", action="store_true", help="may read every suggestion's audit record")
    kc.add_argument("--rate-limit", type=int, default=None, help="requests per minute (default from config)")
    kc.set_defaults(func=cmd_keys_create)
    kl = ksub.add_parser("list", parents=[home], help="list keys (names and prefixes only)")
    kl.set_defaults(func=cmd_keys_list)
    kr = ksub.add_parser("revoke", parents=[home], help="revoke a key")
    kr.add_argument("name")
    kr.set_defaults(func=cmd_keys_revoke)
    kg = ksub.add_parser("login-url", parents=[home], help="print a one-time login link for a key")
    kg.add_argument("name", nargs="?", default="admin")
    kg.set_defaults(func=cmd_keys_login)

    f = sub.add_parser("feedback", help="the coder/EHR decisions store")
    fsub = f.add_subparsers(dest="feedback_command", required=True)
    fe = fsub.add_parser("export", parents=[home], help="write decisions as JSONL training rows (- for stdout)")
    fe.add_argument("output")
    fe.set_defaults(func=cmd_feedback_export)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service", description="btxcode service commands")
    sub = ap.add_subparsers(dest="command", required=True)
    add_service_commands(sub)
    args = ap.parse_args(argv)
    return int(args.func(args) or 0)
