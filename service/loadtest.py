"""60-second concurrent load on loopback: suggest + feedback from N client threads against a live
``python -m service serve``; reports throughput, latency, status counts, and whether every feedback
row acknowledged over HTTP is in the store (no lost rows) and no 5xx occurred.

    python -m service.loadtest --seconds 60 --concurrency 8          # spawns a server in a temp home
    python -m service.loadtest --url http://127.0.0.1:8000 --key btx_…  # an already running server
                                                                       # (row check needs --home too)

Traffic goes to 127.0.0.1 only; every loop is bounded by --seconds. Exit status 1 on any 5xx or a
lost row.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

FALLBACK_NOTES = [
    "Procedure: chemodenervation of the right sternocleidomastoid 50 units and left splenius capitis 50 units "
    "with Botox 100 units (one 100 unit vial, no waste) under EMG guidance for cervical dystonia.",
    "Botox 25 units injected into the right orbicularis oculi for hemifacial spasm. Product: onabotulinumtoxinA.",
    "Dysport 500 units to the left gastrocnemius and soleus for spastic cerebral palsy, ultrasound guided.",
    "Follow-up visit. Botox last done 3 months ago; plan to repeat next visit. No procedure today.",
]


def load_notes(limit: int = 60) -> list[str]:
    notes: list[str] = []
    root = Path(__file__).resolve().parents[1]
    for folder in (root / "tests" / "golden" / "notes", root / "training_data" / "notes"):
        if folder.is_dir():
            for p in sorted(folder.glob("*.txt"))[:limit]:
                text = p.read_text(encoding="utf-8", errors="replace")
                if text.strip() and len(text.encode()) < 200_000:
                    notes.append(text)
    return notes or FALLBACK_NOTES


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(home: Path) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    env = {**os.environ, "BTXCODE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited: " + (proc.stdout.read() if proc.stdout else ""))
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def run_load(url: str, key: str, seconds: float, concurrency: int, notes: list[str]) -> dict[str, Any]:
    import httpx

    lock = threading.Lock()
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    acked_rows = 0
    suggestions_ok = 0
    errors: list[str] = []
    stop_at = time.monotonic() + seconds

    def worker(n: int) -> None:
        nonlocal acked_rows, suggestions_ok
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
            i = n
            while time.monotonic() < stop_at:
                text = notes[i % len(notes)]
                i += concurrency
                t0 = time.perf_counter()
                try:
                    r = client.post("/v1/suggest", json={"text": text, "id": i})
                except httpx.HTTPError as exc:
                    with lock:
                        statuses["suggest:EXC"] += 1
                        errors.append(f"suggest: {type(exc).__name__}")
                    continue
                dt = time.perf_counter() - t0
                with lock:
                    statuses[f"suggest:{r.status_code}"] += 1
                    latencies.append(dt)
                if r.status_code != 200:
                    continue
                with lock:
                    suggestions_ok += 1
                body = r.json()
                if body["lines"]:
                    decisions = [{"line": j, "code": ln["code"], "decision": "accepted" if j % 2 == 0 else "rejected"}
                                 for j, ln in enumerate(body["lines"])]
                else:
                    decisions = [{"line": None, "decision": "added", "final": {"code": "64642", "units": 1}}]
                try:
                    f = client.post("/v1/feedback", json={"suggestion_id": body["suggestion_id"], "decisions": decisions})
                except httpx.HTTPError as exc:
                    with lock:
                        statuses["feedback:EXC"] += 1
                        errors.append(f"feedback: {type(exc).__name__}")
                    continue
                with lock:
                    statuses[f"feedback:{f.status_code}"] += 1
                    if f.status_code == 200:
                        acked_rows += f.json()["stored"]

    t_start = time.monotonic()
    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 120)
    elapsed = time.monotonic() - t_start
    lat = sorted(latencies)
    return {
        "seconds": round(elapsed, 1), "concurrency": concurrency, "suggest_requests": len(lat),
        "suggest_per_s": round(len(lat) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 1) if lat else None,
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(v for k, v in statuses.items() if k.split(":")[1].startswith("5")),
        "transport_errors": len(errors), "suggestions_ok": suggestions_ok, "feedback_rows_acked": acked_rows,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--url", help="an already running server (default: spawn one on a free loopback port)")
    ap.add_argument("--key", help="API key for --url")
    ap.add_argument("--home", help="BTXCODE_HOME of the server (to count stored rows)")
    ap.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = ap.parse_args(argv)
    if args.url and not re.match(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", args.url):
        ap.error("--url must be a loopback address")
    notes = load_notes()
    proc = None
    tmp = None
    home = Path(args.home) if args.home else None
    from service.store import Store

    try:
        if args.url:
            url, key = args.url.rstrip("/"), args.key
            if not key:
                ap.error("--key is required with --url")
        else:
            tmp = tempfile.TemporaryDirectory(prefix="btxload-")
            home = Path(tmp.name)
            (home / "config.toml").write_text("rate_limit_per_minute = 0\n", encoding="utf-8")
            store = Store(f"sqlite:///{home / 'btxcode.db'}")
            store.create_key("admin", admin=True)
            key = store.create_key("load", rate_limit=0)[1]
            store.close()
            proc, url = spawn(home)
        before = None
        if home is not None:
            s = Store(f"sqlite:///{home / 'btxcode.db'}")
            before = s.counts()
            s.close()
        report = run_load(url, key, args.seconds, args.concurrency, notes)
        report["notes_in_rotation"] = len(notes)
        if home is not None and before is not None:
            s = Store(f"sqlite:///{home / 'btxcode.db'}")
            after = s.counts()
            s.close()
            report["decisions_stored"] = after["decisions"] - before["decisions"]
            report["suggestions_stored"] = after["suggestions"] - before["suggestions"]
            report["lost_feedback_rows"] = report["feedback_rows_acked"] - report["decisions_stored"]
            report["lost_suggestions"] = report["suggestions_ok"] - report["suggestions_stored"]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if tmp is not None:
            tmp.cleanup()
    ok = report["server_errors"] == 0 and report["transport_errors"] == 0 and report.get("lost_feedback_rows", 0) == 0 \
        and report.get("lost_suggestions", 0) == 0
    report["ok"] = ok
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
        print(f"{'OK' if ok else 'FAILED'}: {report['suggest_requests']} suggests in {report['seconds']}s "
              f"({report['suggest_per_s']}/s, p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms) with "
              f"{args.concurrency} clients; {report['server_errors']} 5xx; feedback rows acked "
              f"{report['feedback_rows_acked']}, stored {report.get('decisions_stored', '?')}, "
              f"lost {report.get('lost_feedback_rows', '?')}")
    return 0 if ok else 1



if __name__ == "__main__":
    raise SystemExit(main())
