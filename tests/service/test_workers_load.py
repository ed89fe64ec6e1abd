"""`btxcode serve --workers N`: several worker processes sharing one SQLite store, and the levels/soak
paths of service.loadtest. Real processes and real HTTP on loopback; nothing here asserts a duration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import loadtest
from service.store import Store

pytestmark = pytest.mark.issue(5)

REPO = Path(__file__).resolve().parents[2]
NOTES = sorted((REPO / "tests" / "golden" / "notes").glob("*.txt"))


# ---- the store shared by several processes ----------------------------------------------------------------
WRITER = """
import json, sys
from service.store import Store
url, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
tokens = json.loads(sys.argv[4])
store = Store(url)
redeemed = [t for t in tokens if store.redeem_login_token(t) is not None]
rows = 0
for i in range(n):
    line = {"system": "CPT", "code": "64642", "units": 1, "modifiers": [], "rule": "R", "confidence": 0.9}
    sid = store.record_suggestion({"note_sha256": tag, "lines": [line, dict(line, code="64643")]}, channel="api",
                                  actor=tag, note_bytes=10)
    rows += len(store.record_decisions(sid, [{"line": 0, "decision": "accepted"}, {"line": 1, "decision": "rejected"}],
                                       source="api", actor=tag))
store.close()
print(json.dumps({"redeemed": redeemed, "decisions": rows}))
"""


def test_processes_share_one_sqlite_store_without_lost_writes_and_tokens_spent_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'btxcode.db'}"
    store = Store(url)
    key, _ = store.create_key("admin", admin=True)
    tokens = [store.create_login_token(key.id) for _ in range(60)]
    store.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, url, f"p{i}", "40", json.dumps(tokens)], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(3)
    ]  # fmt: skip
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]  # no "database is locked"
        outs.append(json.loads(out.strip().splitlines()[-1]))
    redeemed = [t for o in outs for t in o["redeemed"]]
    assert sorted(redeemed) == sorted(tokens)  # each one-time token spent exactly once across the processes
    store = Store(url)
    counts = store.counts()
    store.close()
    assert counts["suggestions"] == 3 * 40
    assert counts["decisions"] == sum(o["decisions"] for o in outs) == 3 * 40 * 2


def test_serve_rejects_bad_worker_counts(tmp_path):
    for bad in ("0", "-1", "x"):
        r = subprocess.run([sys.executable, "-m", "service", "serve", "--home", str(tmp_path), "--workers", bad],
                           cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
        assert r.returncode == 2 and "--workers" in r.stderr


# ---- a live `serve --workers 2` ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workers2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`python -m service serve --workers 2` on a free loopback port; returns once both workers are up."""
    home = tmp_path_factory.mktemp("workers2")
    (home / "config.toml").write_text("rate_limit_per_minute = 0\n", encoding="utf-8")
    store = Store(f"sqlite:///{home / 'btxcode.db'}")
    store.create_key("admin", admin=True)
    key = store.create_key("coder", rate_limit=0)[1]
    store.close()
    proc, url = loadtest.spawn(home, workers=2)
    try:
        workers = [p for p in loadtest.tree_pids(proc.pid) if p != proc.pid and "spawn_main" in _cmdline(p)]
        assert len(workers) == 2, loadtest.tree_pids(proc.pid)
        yield {"proc": proc, "url": url, "port": int(url.rsplit(":", 1)[1]), "home": home, "key": key, "workers": workers}
    finally:
        loadtest.stop(proc)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def worker_of(client: httpx.Client, server: dict[str, Any]) -> int | None:
    """The worker process holding the server side of ``client``'s keep-alive connection (from /proc)."""
    r = client.get("/healthz")
    sock = r.extensions["network_stream"].get_extra_info("socket")
    client_port = sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local_port, remote_port = int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16)
        if local_port == server["port"] and remote_port == client_port and f[3] == "01":
            inode = f[9]
    for pid in server["workers"]:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None


def _busy(server: dict[str, Any], stop: threading.Event) -> None:
    """Keeps whichever worker this connection lands on busy (a busy worker loses the race to accept)."""
    with httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {server['key']}"}, timeout=60) as c:
        while not stop.is_set():
            c.post("/v1/suggest", json={"text": NOTES[0].read_text(encoding="utf-8")})


def clients_on_each_worker(server: dict[str, Any]) -> dict[int, httpx.Client]:
    """One keep-alive client connected to each worker: open connections until both workers hold one."""
    by_worker: dict[int, httpx.Client] = {}
    spare: list[httpx.Client] = []
    stop = threading.Event()
    threads = [threading.Thread(target=_busy, args=(server, stop), daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(60):
            c = httpx.Client(base_url=server["url"], headers={"Authorization": f"Bearer {server['key']}"}, timeout=60)
            pid = worker_of(c, server)
            if pid is not None and pid not in by_worker:
                by_worker[pid] = c
            else:
                spare.append(c)
            if len(by_worker) == len(server["workers"]):
                break
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
        for c in spare:
            c.close()
    assert len(by_worker) == len(server["workers"]), "could not reach both workers"
    return by_worker


def test_two_workers_answer_correctly_and_share_one_store(workers2, engine):
    by_worker = clients_on_each_worker(workers2)
    (pid_a, a), (pid_b, b) = sorted(by_worker.items())
    store = Store(f"sqlite:///{workers2['home'] / 'btxcode.db'}")
    before = store.counts()
    try:
        acked = 0
        sids = []
        for i, path in enumerate(NOTES[:6]):
            text = path.read_text(encoding="utf-8")
            maker, other = (a, b) if i % 2 == 0 else (b, a)
            r = maker.post("/v1/suggest", json={"text": text, "date_of_service": "2026-03-10", "id": path.stem})
            assert r.status_code == 200, r.text
            sug = r.json()
            want = engine.suggest(text, date_of_service="2026-03-10", note_id=path.stem)
            assert sug["id"] == path.stem
            assert [(ln["code"], ln["units"], ln["modifiers"]) for ln in sug["lines"]] == [
                (ln["code"], ln["units"], ln["modifiers"]) for ln in want["lines"]
            ]
            assert [d["code"] for d in sug["diagnoses"]] == [d["code"] for d in want["diagnoses"]]
            # feedback on a suggestion made by one worker, sent to the other worker: one database
            if sug["lines"]:
                decisions = [{"line": j, "code": ln["code"], "decision": "accepted"} for j, ln in enumerate(sug["lines"])]
            else:
                decisions = [{"line": None, "decision": "added", "final": {"code": "64642", "units": 1}}]
            f = other.post("/v1/feedback", json={"suggestion_id": sug["suggestion_id"], "decisions": decisions})
            assert f.status_code == 200, f.text
            acked += f.json()["stored"]
            sids.append((sug["suggestion_id"], [d["decision"] for d in decisions]))
        for sid, kinds in sids:  # each worker reads every audit record with its decisions
            for c in (a, b):
                rec = c.get(f"/v1/suggestions/{sid}").json()
                assert [d["decision"] for d in rec["decisions"]] == kinds
        after = store.counts()
    finally:
        store.close()
        for c in by_worker.values():
            c.close()
    assert after["suggestions"] - before["suggestions"] >= len(sids)  # (the busy threads add more)
    assert after["decisions"] - before["decisions"] == acked
    served = loadtest.served_by_worker(workers2["home"])
    assert {str(pid_a), str(pid_b)} <= set(served)


def test_loadtest_levels_and_soak_report(workers2, tmp_path, capsys):
    """The levels and soak code paths, a few seconds each, against the running two-worker server."""
    js, md = tmp_path / "load.json", tmp_path / "load.md"
    argv = ["--url", workers2["url"], "--key", workers2["key"], "--home", str(workers2["home"]),
            "--pid", str(workers2["proc"].pid), "--concurrency", "2,6", "--seconds", "2", "--warmup", "1",
            "--soak", "4", "--window", "2", "--sample-every", "1", "--creep-limit", "100000",
            "--memory-limit", "100000", "--json", "--json-out", str(js), "--md-out", str(md)]  # fmt: skip
    # (the limits are lifted: on a shared machine a verdict is a measurement, not something to assert here)
    status = loadtest.main(argv)
    report = json.loads(capsys.readouterr().out)
    assert report == json.loads(js.read_text(encoding="utf-8"))
    assert status == 0 and report["ok"], report
    assert report["kind"] == "levels+soak"
    assert len(report["machine"]["loadavg_start"]) == 3 and len(report["machine"]["loadavg_end"]) == 3
    assert [lv["concurrency"] for lv in report["levels"]] == [2, 6]
    for lv in report["levels"]:
        assert lv["requests"] > 0 and lv["req_per_s"] > 0
        assert set(lv["statuses"]) == {"200"} and lv["server_errors"] == 0 and lv["errors"] == 0
        assert lv["p50_ms"] <= lv["p95_ms"] <= lv["p99_ms"] <= lv["max_ms"]
        assert lv["client_cpu_s"] >= 0 and lv["server_cpu_s"] > 0 and lv["server_rss_mb"] > 0
        assert sum(lv["answered_by_worker"].values()) >= lv["requests"]
    soak = report["soak"]
    assert soak["concurrency"] == 6  # by default the soak runs at the middle level (index len // 2)
    assert [w["window"] for w in soak["windows"]] == [1, 2]
    assert all(w["server_errors"] == 0 and w["errors"] == 0 for w in soak["windows"])
    assert soak["total"]["requests"] == sum(w["requests"] for w in soak["windows"])
    assert any(s["t_s"] < 0 for s in soak["samples"]) and soak["samples"][-1]["t_s"] >= soak["seconds"] - 0.5
    assert all(s["rss_mb"] > 0 and s["processes"] >= 3 for s in soak["samples"])  # parent + 2 workers (+ tracker)
    v = soak["verdict"]
    assert v["ok"] and isinstance(v["latency_creep"]["change_pct"], float | int)
    assert v["memory_growth"]["baseline_rss_mb"] > 0 and isinstance(v["memory_growth"]["change_pct"], float | int)
    assert report["store"]["lost_suggestions"] == 0 and report["store"]["suggestions_ok"] > 0
    assert len(report["server"]["answered_by_worker"]) == 2
    text = md.read_text(encoding="utf-8")
    assert "| clients | requests | req/s | p50 ms | p95 ms | p99 ms |" in text and "**Verdict: PASS.**" in text
