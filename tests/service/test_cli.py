"""`keys` and `feedback export` commands (run as `python -m service …`; `btxcode …` once nlp/cli.py hooks
them in), and a short concurrent-load smoke run of service.loadtest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

from service.main import create_app
from service.settings import Settings

pytestmark = pytest.mark.issue(4)

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BTXCODE_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "service", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_keys_create_prints_key_as_last_word_and_it_works(tmp_path, engine, seed_note):
    home = tmp_path / "var"
    out = run("keys", "create", "coder-1", home=home)
    assert out.returncode == 0, out.stderr
    key = out.stdout.split()[-1]
    assert key.startswith("btx_") and len(key) > 30
    assert key not in (home / "btxcode.db").read_bytes().decode("latin-1")  # stored hashed
    assert run("keys", "create", "coder-1", home=home).returncode == 1  # duplicate name
    app = create_app(Settings.load(home), engine=engine)
    with TestClient(app) as c:
        h = {"Authorization": f"Bearer {key}"}
        assert c.get("/v1/me", headers=h).json()["name"] == "coder-1"
        sug = c.post("/v1/suggest", json={"text": seed_note + "\nPatient: Zanzibarquux Q.\n"}, headers=h).json()
        c.post("/v1/feedback", json={"suggestion_id": sug["suggestion_id"], "decisions": [
            {"line": 0, "decision": "accepted"}, {"line": 1, "decision": "rejected"}]}, headers=h)
    listing = run("keys", "list", home=home)
    assert "coder-1" in listing.stdout and key not in listing.stdout
    login = run("keys", "login-url", "coder-1", home=home)
    assert "/login?token=" in login.stdout
    assert run("keys", "revoke", "coder-1", home=home).returncode == 0
    with TestClient(create_app(Settings.load(home), engine=engine)) as c:
        assert c.get("/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401

    export = tmp_path / "out.jsonl"
    res = run("feedback", "export", str(export), home=home)
    assert res.returncode == 0 and "2 decisions" in res.stderr
    rows = [json.loads(line) for line in export.read_text().splitlines()]
    assert [r["decision"] for r in rows] == ["accepted", "rejected"] and [r["label"] for r in rows] == [1, 0]
    for r in rows:
        assert r["note_sha256"] == sug["note_sha256"] and r["versions"]["tables"] == sug["versions"]["tables"]
        assert r["line"]["rule"] and r["line"]["code"] and r["facts"]
    exported = export.read_text()
    assert "Zanzibarquux" not in exported and "tolerated the procedure" not in exported  # no note text


def test_btxcode_console_commands_when_hooked(tmp_path, monkeypatch, capsys):
    from nlp import cli

    parser = cli.build_parser()
    choices = next(a for a in parser._subparsers._group_actions).choices  # noqa: SLF001
    if "serve" not in choices:
        pytest.skip("nlp/cli.py build_parser has no add_service_commands hook yet")
    monkeypatch.setenv("BTXCODE_HOME", str(tmp_path / "h"))
    assert cli.main(["keys", "create", "via-btxcode"]) == 0
    assert capsys.readouterr().out.split()[-1].startswith("btx_")
    assert cli.main(["feedback", "export", str(tmp_path / "x.jsonl")]) == 0


def test_load_smoke_no_5xx_no_lost_rows():
    from service import loadtest

    assert loadtest.main(["--seconds", "4", "--concurrency", "4", "--json"]) == 0
