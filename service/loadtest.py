"""Load tests on loopback against a live ``python -m service serve`` (spawned in a temporary home, or
``--url``).

* **mixed** (one ``--concurrency`` value, the default 8, for ``--seconds``, default 60): suggest + feedback
  from N client threads; throughput, latency, status counts, and whether every feedback row acknowledged
  over HTTP is in the store (no lost rows). This was the only mode before ``--workers``/levels/soak.
* **levels** (several values, ``--concurrency 8,32,64``, or one value with ``--levels``): ``/v1/suggest``
  only, from a light asyncio client (raw HTTP/1.1 keep-alive, one connection per simulated client, closed
  loop); each level has ``--warmup`` seconds (default 5) that are not measured, then ``--seconds``
  (default 30) measured: requests, req/s, p50/p95/p99/max latency, status counts, errors, the CPU the
  client itself used, the CPU and memory of the server's process tree, the CPU the rest of the machine
  used, and how many requests each worker answered.
* **soak** (``--soak SECONDS``, after the levels when both are asked for): the same client at one
  concurrency (``--soak-concurrency``; default the single ``--concurrency`` value, the middle level, or 32)
  for SECONDS after a ``--warmup`` (default 30 s); per-``--window`` (60 s) throughput and p50/p95/p99,
  the RSS (and PSS) of the server's whole process tree (parent + workers) every ``--sample-every`` (5) s,
  and a verdict: latency creep = p95 of the last window more than ``--creep-limit`` (25 %) above the
  first window's; memory growth = the last RSS sample more than ``--memory-limit`` (10 %) above the sample
  taken when the warm-up ends.

    python -m service.loadtest --seconds 60 --concurrency 8                   # mixed, as before
    python -m service.loadtest --workers 2 --concurrency 8,32,64 --seconds 30 \\
        --json-out bench/results/service_load.json --md-out bench/results/service_load.md   # ~2 min
    python -m service.loadtest --workers 2 --concurrency 32 --soak 600 \\
        --json-out bench/results/service_soak.json --md-out bench/results/service_soak.md   # ~11 min
    python -m service.loadtest --url http://127.0.0.1:8000 --key btx_… [--home DIR] [--pid PID]
        # an already running server (stored-row checks need --home, CPU and memory the pid of `serve`)

Traffic goes to 127.0.0.1 only; every loop is bounded by the time given. The spawned server logs at
level info to its temporary home (one line per request, with the worker's pid: that is how requests per
worker are counted). Reports carry the load average and the CPU the rest of the machine used while
measuring, since other processes skew the figures on a shared machine. Exit status 1 on any 5xx,
transport error, lost row, or a failed soak verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FALLBACK_NOTES = [
    "Procedure: chemodenervation of the right sternocleidomastoid 50 units and left splenius capitis 50 units "
    "with Botox 100 units (one 100 unit vial, no waste) under EMG guidance for cervical dystonia.",
    "Botox 25 units injected into the right orbicularis oculi for hemifacial spasm. Product: onabotulinumtoxinA.",
    "Dysport 500 units to the left gastrocnemius and soleus for spastic cerebral palsy, ultrasound guided.",
    "Follow-up visit. Botox last done 3 months ago; plan to repeat next visit. No procedure today.",
]
SERVER_LOG = "server.log"
_SERVED = re.compile(r"btxcode\.service\[(\d+)\]: POST /v1/suggest (\d{3}) ")


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


def spawn(home: Path, workers: int = 1, timeout: float = 240.0) -> tuple[subprocess.Popen[str], str]:
    """``python -m service serve --workers N`` on a free loopback port, its output in ``home/server.log``
    (log level info: one line per request, with the worker's pid). Returns once every worker has
    finished starting (each loads its own engine), so no worker is still loading when clients connect."""
    port = free_port()
    env = {**os.environ, "BTXCODE_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    env.pop("BTXCODE_PUBLIC_URL", None)
    log = home / SERVER_LOG
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "info",
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + log.read_text(encoding="utf-8", errors="replace")[-4000:])
        ready = log.read_text(encoding="utf-8", errors="replace").count("Application startup complete.")
        if ready >= workers:
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    stop(proc)
    raise RuntimeError("server did not start:\n" + log.read_text(encoding="utf-8", errors="replace")[-4000:])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def served_by_worker(home: Path | None) -> dict[str, Counter[str]]:
    """From the spawned server's log: ``{pid: Counter(status)}`` of POST /v1/suggest per worker process."""
    out: dict[str, Counter[str]] = {}
    if home is None or not (home / SERVER_LOG).is_file():
        return out
    with (home / SERVER_LOG).open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if m := _SERVED.search(line):
                out.setdefault(m.group(1), Counter())[m.group(2)] += 1
    return out


# ---- the process tree of the server: RSS, PSS, CPU (from /proc; Linux) ----------------------------------
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (uvicorn's parent, its workers, multiprocessing's resource tracker)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read(f"/proc/{name}/stat")
            if stat:
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(out)


def _status_kb(pid: int, field: str, fname: str = "status") -> int:
    for line in _read(f"/proc/{pid}/{fname}").splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def tree_memory(root: int | None) -> dict[str, Any] | None:
    """Sum of VmRSS (and of Pss, which counts a shared page once) over the tree, in MiB."""
    if root is None or not os.path.exists(f"/proc/{root}"):
        return None
    pids = tree_pids(root)
    rss = {p: _status_kb(p, "VmRSS") for p in pids}
    pss = sum(_status_kb(p, "Pss", "smaps_rollup") for p in pids)
    return {
        "rss_mb": round(sum(rss.values()) / 1024, 1),
        "pss_mb": round(pss / 1024, 1) if pss else None,
        "processes": len(pids),
        "rss_mb_by_pid": {str(p): round(v / 1024, 1) for p, v in rss.items()},
    }


def tree_cpu_s(root: int | None) -> float:
    if root is None:
        return 0.0
    total = 0
    for pid in tree_pids(root):
        stat = _read(f"/proc/{pid}/stat")
        if stat:
            f = stat.rsplit(")", 1)[1].split()
            total += int(f[11]) + int(f[12])  # utime, stime
    return total / _TICK


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores (``/proc/stat``)."""
    parts = _read("/proc/stat").split("\n", 1)[0].split()[1:]
    if not parts:
        return 0.0, 0.0
    v = [int(x) for x in parts]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / _TICK, sum(v[:8]) / _TICK


def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


class CpuMeter:
    """CPU used between start and stop: this client process, the server tree, and everything else."""

    def __init__(self, server_pid: int | None):
        self.server_pid = server_pid
        self.t0, self.client0 = time.monotonic(), time.process_time()
        self.server0 = tree_cpu_s(server_pid)
        self.busy0, self.total0 = machine_cpu_s()

    def stop(self) -> dict[str, Any]:
        wall = max(time.monotonic() - self.t0, 1e-9)
        client = time.process_time() - self.client0
        server = tree_cpu_s(self.server_pid) - self.server0 if self.server_pid else None
        busy1, _ = machine_cpu_s()
        busy = busy1 - self.busy0
        out: dict[str, Any] = {
            "client_cpu_s": round(client, 2),
            "client_cpu_pct_of_one_core": round(100 * client / wall, 1),
            "machine_busy_cores": round(busy / wall, 2),
        }
        if server is not None:
            out["server_cpu_s"] = round(server, 2)
            out["server_busy_cores"] = round(server / wall, 2)
            out["other_processes_busy_cores"] = round(max(0.0, busy - server - client) / wall, 2)
        return out


# ---- mixed mode: thread clients, suggest + feedback, no lost rows (the original load test) ----------------
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
                dt_s = time.perf_counter() - t0
                with lock:
                    statuses[f"suggest:{r.status_code}"] += 1
                    latencies.append(dt_s)
                if r.status_code != 200:
                    continue
                with lock:
                    suggestions_ok += 1
                body = r.json()
                if body["lines"]:
                    decisions = [
                        {"line": j, "code": ln["code"], "decision": "accepted" if j % 2 == 0 else "rejected"}
                        for j, ln in enumerate(body["lines"])
                    ]
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
        "seconds": round(elapsed, 1),
        "concurrency": concurrency,
        "suggest_requests": len(lat),
        "suggest_per_s": round(len(lat) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
        "p95_ms": round(lat[int(0.95 * (len(lat) - 1))] * 1000, 1) if lat else None,
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(v for k, v in statuses.items() if k.split(":")[1].startswith("5")),
        "transport_errors": len(errors),
        "suggestions_ok": suggestions_ok,
        "feedback_rows_acked": acked_rows,
    }


# ---- levels and soak: a light asyncio client (raw HTTP/1.1 keep-alive) ------------------------------------
def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0-100) of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(rank) - 1]


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    lat = sorted(latencies)

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v * 1000, 1)

    return {
        "p50_ms": ms(percentile(lat, 50)),
        "p95_ms": ms(percentile(lat, 95)),
        "p99_ms": ms(percentile(lat, 99)),
        "max_ms": ms(lat[-1] if lat else None),
        "mean_ms": ms(statistics.fmean(lat) if lat else None),
    }


class Recorder:
    """Completed requests: (completion time, latency, status) with status "200", "503", "EXC:…"."""

    def __init__(self) -> None:
        self.rows: list[tuple[float, float, str]] = []
        self.ok = 0  # 200 with a suggestion id, warm-up and tail included (for the stored-row check)

    def add(self, t_done: float, latency: float, status: str) -> None:
        self.rows.append((t_done, latency, status))

    def window(self, start: float, end: float) -> dict[str, Any]:
        rows = [r for r in self.rows if start <= r[0] < end]
        statuses = Counter(r[2] for r in rows)
        seconds = end - start
        return {
            "requests": len(rows),
            "req_per_s": round(len(rows) / seconds, 2) if seconds > 0 else None,
            **latency_summary([r[1] for r in rows]),
            "statuses": dict(sorted(statuses.items())),
            "server_errors": sum(v for k, v in statuses.items() if k.startswith("5")),
            "errors": sum(v for k, v in statuses.items() if not k.isdigit() or k == "bad_body"),
        }


def _request_bytes(host: str, port: int, key: str, notes: list[str]) -> list[bytes]:
    out = []
    for i, text in enumerate(notes):
        body = json.dumps({"text": text, "id": f"load-{i}"}).encode("utf-8")
        head = (
            f"POST /v1/suggest HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
            f"Content-Type: application/json\r\nAccept: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode("ascii") + body)
    return out


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server asked to close) of one HTTP/1.1 response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, close = 0, False, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = b"close" in value.lower()
    if not chunked:
        return status, await reader.readexactly(length), close
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return status, b"".join(parts), close
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


async def drive(
    host: str,
    port: int,
    requests: list[bytes],
    concurrency: int,
    until: float,
    rec: Recorder,
    timeout: float = 60.0,
    ramp: float = 0.0,
) -> None:
    """``concurrency`` clients, each on its own keep-alive connection, each sending its next request as soon
    as the previous answer is in (closed loop), until the monotonic time ``until``. The clients start
    evenly spread over ``ramp`` seconds.

    Why a ramp: uvicorn's workers share one listening socket, and a worker that wakes up accepts every
    pending connection at once (asyncio's accept loop), so a burst of connections reaching idle workers
    tends to land on one worker, where each keep-alive connection then stays. Clients that connect over
    time spread across the workers; each level reports how many requests each worker answered."""
    loop = asyncio.get_running_loop()

    async def client(n: int) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        i = n
        try:
            await asyncio.sleep(ramp * n / concurrency)
            while loop.time() < until:
                payload = requests[i % len(requests)]
                i += concurrency
                t0 = loop.time()
                try:
                    if writer is None:
                        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                    assert reader is not None
                    writer.write(payload)
                    status, body, close = await asyncio.wait_for(_read_response(reader), timeout)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
                    rec.add(loop.time(), loop.time() - t0, f"EXC:{type(exc).__name__}")
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    continue
                t1 = loop.time()
                label = str(status)
                if status == 200:
                    if body.startswith(b"{") and b'"suggestion_id":"' in body:
                        rec.ok += 1
                    else:
                        label = "bad_body"
                rec.add(t1, t1 - t0, label)
                if close:
                    writer.close()
                    reader = writer = None
        finally:
            if writer is not None:
                writer.close()

    await asyncio.gather(*(client(n) for n in range(concurrency)))


@dataclass(frozen=True)
class Target:
    """The server under test: where it listens, the key to use, its ``serve`` pid and home (when known)."""

    host: str
    port: int
    key: str
    server_pid: int | None = None
    home: Path | None = None
    timeout: float = 60.0  # seconds before a request counts as an error


def run_levels(
    target: Target, notes: list[str], levels: list[int], *, seconds: float, warmup: float
) -> tuple[list[dict[str, Any]], int]:
    """Each level: warm up, then measure ``seconds``; returns (one row per level, 200s served in all)."""
    host, port, server_pid, home, timeout = target.host, target.port, target.server_pid, target.home, target.timeout
    requests = _request_bytes(host, port, target.key, notes)
    rows, ok = [], 0
    for c in levels:
        rec = Recorder()
        before = served_by_worker(home)

        async def level(c: int = c, rec: Recorder = rec) -> tuple[float, float, dict[str, Any]]:
            loop = asyncio.get_running_loop()
            start = loop.time() + warmup
            end = start + seconds
            task = asyncio.ensure_future(drive(host, port, requests, c, end, rec, timeout, ramp=warmup / 2))
            await asyncio.sleep(max(0.0, start - loop.time()))
            meter = CpuMeter(server_pid)
            await asyncio.sleep(max(0.0, end - loop.time()))
            cpu = meter.stop()
            await task
            return start, end, cpu

        start, end, cpu = asyncio.run(level())
        row = {"concurrency": c, "warmup_s": warmup, "ramp_s": warmup / 2, "seconds": seconds, **rec.window(start, end), **cpu}
        mem = tree_memory(server_pid)
        if mem:
            row["server_rss_mb"], row["server_pss_mb"] = mem["rss_mb"], mem["pss_mb"]
        after = served_by_worker(home)
        if after:  # warm-up and tail included: which workers answered at this level
            row["answered_by_worker"] = {p: sum(after[p].values()) - sum(before.get(p, Counter()).values()) for p in after}
        rows.append(row)
        ok += rec.ok
    return rows, ok


def _slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return round(60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den, 2) if den else None


def _sample(server_pid: int | None, t_s: float) -> dict[str, Any]:
    """One soak sample: memory of the server tree and cumulative CPU seconds (server, client, machine)."""
    mem = tree_memory(server_pid) or {}
    return {
        "t_s": round(t_s, 1),
        "rss_mb": mem.get("rss_mb"),
        "pss_mb": mem.get("pss_mb"),
        "processes": mem.get("processes"),
        "server_cpu_s": round(tree_cpu_s(server_pid), 2) if server_pid else None,
        "client_cpu_s": round(time.process_time(), 2),
        "machine_busy_s": round(machine_cpu_s()[0], 2),
    }


def _cores_between(samples: list[dict[str, Any]], t0: float, t1: float) -> dict[str, float | None]:
    """Cores busy between the samples nearest to t0 and t1: server tree, this client, other processes."""
    if len(samples) < 2:
        return {}
    a = min(samples, key=lambda s: abs(s["t_s"] - t0))
    b = min(samples, key=lambda s: abs(s["t_s"] - t1))
    wall = b["t_s"] - a["t_s"]
    if wall <= 0:
        return {}
    client = b["client_cpu_s"] - a["client_cpu_s"]
    machine = b["machine_busy_s"] - a["machine_busy_s"]
    out: dict[str, float | None] = {"client_cores": round(client / wall, 3)}
    if a["server_cpu_s"] is not None and b["server_cpu_s"] is not None:
        server = b["server_cpu_s"] - a["server_cpu_s"]
        out["server_cores"] = round(server / wall, 2)
        out["other_processes_cores"] = round(max(0.0, machine - server - client) / wall, 2)
    return out


def run_soak(
    target: Target,
    notes: list[str],
    concurrency: int,
    *,
    seconds: float,
    warmup: float = 30.0,
    window: float = 60.0,
    sample_every: float = 5.0,
    creep_limit: float = 25.0,
    memory_limit: float = 10.0,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], int]:
    """Constant ``concurrency`` for ``warmup + seconds``; windows, memory samples and the verdict.
    Times in the report count from the end of the warm-up (warm-up samples have negative times)."""
    host, port, server_pid, timeout = target.host, target.port, target.server_pid, target.timeout
    requests = _request_bytes(host, port, target.key, notes)
    rec = Recorder()
    samples: list[dict[str, Any]] = []

    async def soak() -> tuple[float, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        start = t0 + warmup
        end = start + seconds
        task = asyncio.ensure_future(drive(host, port, requests, concurrency, end, rec, timeout, ramp=warmup / 2))
        # sample times: every sample_every seconds from the start of the warm-up, the end of the warm-up, the end
        times = sorted({*(t0 + k * sample_every for k in range(int((warmup + seconds) / sample_every) + 1)), start, end})
        meter: CpuMeter | None = None
        next_report = t0 + 60
        for when in times:
            await asyncio.sleep(max(0.0, when - loop.time()))
            if when == start:
                meter = CpuMeter(server_pid)
            samples.append(_sample(server_pid, loop.time() - start))
            if progress and loop.time() >= next_report:
                next_report += 60
                done = sum(1 for r in rec.rows if r[0] >= loop.time() - 60)
                progress(
                    f"soak {loop.time() - t0:4.0f}/{warmup + seconds:.0f} s: {done / 60:.1f} req/s in the last minute, "
                    f"server RSS {samples[-1]['rss_mb']} MB"
                )
        cpu = (meter or CpuMeter(server_pid)).stop()
        await task
        return start, cpu

    start, cpu = asyncio.run(soak())
    n_windows = max(1, int(seconds // window))
    windows = []
    for i in range(n_windows):
        w0, w1 = i * window, (seconds if i == n_windows - 1 else (i + 1) * window)
        mem = [s["rss_mb"] for s in samples if w0 <= s["t_s"] <= w1 and s["rss_mb"] is not None]
        windows.append(
            {
                "window": i + 1,
                "from_s": round(w0),
                "to_s": round(w1),
                **rec.window(start + w0, start + w1),
                **_cores_between(samples, w0, w1),
                "server_rss_mb_end": mem[-1] if mem else None,
            }
        )
    total = rec.window(start, start + seconds)
    first, last = windows[0], windows[-1]
    creep_pct = None
    if first["p95_ms"] and last["p95_ms"]:
        creep_pct = round(100 * (last["p95_ms"] - first["p95_ms"]) / first["p95_ms"], 1)
    steady = [s for s in samples if s["t_s"] >= 0 and s["rss_mb"] is not None]
    base_mb = steady[0]["rss_mb"] if steady else None
    last_mb = steady[-1]["rss_mb"] if steady else None
    growth_pct = round(100 * (last_mb - base_mb) / base_mb, 1) if base_mb and last_mb else None
    verdict: dict[str, Any] = {
        "latency_creep": {
            "rule": f"p95 of the last {window:.0f}-s window at most {creep_limit:.0f} % above the first window's "
            "(both after the warm-up)",
            "first_window_p95_ms": first["p95_ms"],
            "last_window_p95_ms": last["p95_ms"],
            "change_pct": creep_pct,
            "limit_pct": creep_limit,
            "ok": creep_pct is not None and creep_pct <= creep_limit,
            "p95_trend_ms_per_min": _slope_per_min(
                [((w["from_s"] + w["to_s"]) / 2, w["p95_ms"]) for w in windows if w["p95_ms"]]
            ),
            "req_per_s_first_last": [first["req_per_s"], last["req_per_s"]],
            "other_processes_cores_first_last": [first.get("other_processes_cores"), last.get("other_processes_cores")],
        },
        "memory_growth": {
            "rule": f"RSS of the server's process tree at the end at most {memory_limit:.0f} % above its RSS "
            "at the end of the warm-up",
            "baseline_rss_mb": base_mb,
            "last_rss_mb": last_mb,
            "peak_rss_mb": max((s["rss_mb"] for s in steady), default=None),
            "change_pct": growth_pct,
            "limit_pct": memory_limit,
            "ok": growth_pct is not None and growth_pct <= memory_limit,
            "rss_trend_mb_per_min": _slope_per_min([(s["t_s"], s["rss_mb"]) for s in steady]),
        },
    }
    verdict["ok"] = verdict["latency_creep"]["ok"] and verdict["memory_growth"]["ok"]
    soak_report = {
        "concurrency": concurrency,
        "warmup_s": warmup,
        "ramp_s": warmup / 2,
        "seconds": seconds,
        "window_s": window,
        "sample_every_s": sample_every,
        "total": total,
        **cpu,
        "verdict": verdict,
        "windows": windows,
        "samples": samples,
    }
    return soak_report, rec.ok


# ---- reports ---------------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _per_worker(counts: dict[str, int] | None) -> str:
    return " / ".join(f"{n:,}" for _, n in sorted((counts or {}).items())) or "–"


def markdown(report: dict[str, Any]) -> str:
    """A Markdown summary of a levels and/or soak report (for README files)."""
    m, srv = report["machine"], report["server"]
    workers = srv.get("workers") or "?"
    out = [
        f"`{report['command']}` ({report['started_at']}, {report['duration_s']:.0f} s in all)",
        "",
        f"Server: `btxcode serve --workers {workers}` on loopback, one SQLite store, engine with the confidence model; "
        f"{report['notes_in_rotation']} notes in rotation. Client: {report['client']}. Machine: {m['cpus']} CPUs, "
        f"load average {m['loadavg_start']} at the start and {m['loadavg_end']} at the end (1, 5, 15 min).",
        "",
    ]
    if "levels" in report:
        lv = report["levels"]
        out += [
            "| clients | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | 5xx | errors | answered per worker "
            "| server cores | client cores | other processes' cores | server RSS MB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in lv:
            client = r["client_cpu_pct_of_one_core"] / 100
            out.append(
                f"| {r['concurrency']} | {_fmt(r['requests'])} | {_fmt(r['req_per_s'])} | {_fmt(r['p50_ms'])} | "
                f"{_fmt(r['p95_ms'])} | {_fmt(r['p99_ms'])} | {_fmt(r['max_ms'])} | {r['server_errors']} | {r['errors']} | "
                f"{_per_worker(r.get('answered_by_worker'))} | {_fmt(r.get('server_busy_cores'))} | {client:.2f} | "
                f"{_fmt(r.get('other_processes_busy_cores'))} | {_fmt(r.get('server_rss_mb'))} |"
            )
        out += [
            "",
            f"Each level: {lv[0]['warmup_s']:.0f} s of warm-up (clients connect spread over the first "
            f"{lv[0]['ramp_s']:.1f} s; not measured), then {lv[0]['seconds']:.0f} s measured. Closed loop: each client "
            "sends its next note as soon as the answer to the previous one is in, so latency grows with the number of "
            'clients once the workers are saturated. "answered per worker" counts warm-up requests too; '
            '"other processes" is the CPU the rest of the machine used meanwhile.',
            "",
        ]
    if "soak" in report:
        s = report["soak"]
        v = s["verdict"]
        lc, mg = v["latency_creep"], v["memory_growth"]
        t = s["total"]
        out += [
            f"Soak: {s['concurrency']} clients for {s['seconds']:.0f} s after a {s['warmup_s']:.0f}-s warm-up: "
            f"{_fmt(t['requests'])} requests, {_fmt(t['req_per_s'])} req/s, p50 {_fmt(t['p50_ms'])} ms, "
            f"p95 {_fmt(t['p95_ms'])} ms, p99 {_fmt(t['p99_ms'])} ms, max {_fmt(t['max_ms'])} ms, {t['server_errors']} 5xx, "
            f"{t['errors']} errors. The client used {s['client_cpu_pct_of_one_core'] / 100:.2f} cores, the server "
            f"{_fmt(s.get('server_busy_cores'))}, other processes {_fmt(s.get('other_processes_busy_cores'))}.",
            "",
            f"**Verdict: {'PASS' if v['ok'] else 'FAIL'}.** Latency creep ({lc['rule']}): p95 "
            f"{_fmt(lc['first_window_p95_ms'])} ms in the first window, {_fmt(lc['last_window_p95_ms'])} ms in the last, "
            f"{_fmt(lc['change_pct'])} % (limit {lc['limit_pct']:.0f} %; least-squares trend over all windows "
            f"{_fmt(lc['p95_trend_ms_per_min'])} ms/min): {'ok' if lc['ok'] else 'FAIL'}. Memory growth ({mg['rule']}): "
            f"{_fmt(mg['baseline_rss_mb'])} MB after the warm-up, {_fmt(mg['last_rss_mb'])} MB at the end, peak "
            f"{_fmt(mg['peak_rss_mb'])} MB, {_fmt(mg['change_pct'])} % (limit {mg['limit_pct']:.0f} %; trend "
            f"{_fmt(mg['rss_trend_mb_per_min'])} MB/min): {'ok' if mg['ok'] else 'FAIL'}.",
            "",
            "| window | seconds | requests | req/s | p50 ms | p95 ms | p99 ms | max ms | 5xx | errors | server cores "
            "| other processes' cores | server RSS MB at end |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for w in s["windows"]:
            out.append(
                f"| {w['window']} | {w['from_s']}–{w['to_s']} | {_fmt(w['requests'])} | {_fmt(w['req_per_s'])} | "
                f"{_fmt(w['p50_ms'])} | {_fmt(w['p95_ms'])} | {_fmt(w['p99_ms'])} | {_fmt(w['max_ms'])} | "
                f"{w['server_errors']} | {w['errors']} | {_fmt(w.get('server_cores'))} | "
                f"{_fmt(w.get('other_processes_cores'))} | {_fmt(w.get('server_rss_mb_end'))} |"
            )
        out.append("")
    answered = srv.get("answered_by_worker")
    if answered:
        total = {p: sum(c.values()) for p, c in answered.items()}
        out.append(f"Requests answered per worker process over the whole run: {_per_worker(total)}.")
    st = report.get("store")
    if st:
        out.append(
            f"Store: {_fmt(st['suggestions_ok'])} suggestions answered 200 and {_fmt(st['suggestions_stored'])} audited "
            f"in the one SQLite store ({st['lost_suggestions']} lost"
            + (f"; database and WAL {_fmt(st['file_mb'])} MB at the end)." if st.get("file_mb") is not None else ").")
        )
    return "\n".join(out).rstrip() + "\n"


def _parse_levels(value: str) -> list[int]:
    try:
        levels = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--concurrency takes N or N,N,… (e.g. 8,32,64)") from None
    if not levels or any(not 1 <= n <= 1024 for n in levels):
        raise argparse.ArgumentTypeError("--concurrency: each level must be 1-1024")
    return levels


def _counts(home: Path | None) -> dict[str, int] | None:
    if home is None:
        return None
    from service.store import Store

    s = Store(f"sqlite:///{home / 'btxcode.db'}")
    try:
        return s.counts()
    finally:
        s.close()


def git_state() -> dict[str, Any] | None:
    """The commit the code under test comes from, and how many tracked files differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True,
                                text=True, timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    if commit.returncode != 0:
        return None
    return {"commit": commit.stdout.strip(), "modified_tracked_files": len(status.stdout.splitlines())}


def server_errors_logged(home: Path | None, limit: int = 10) -> list[str]:
    """The spawned server's ERROR lines (the service logs an exception's type and frames, never note text)."""
    if home is None or not (home / SERVER_LOG).is_file():
        return []
    lines = (home / SERVER_LOG).read_text(encoding="utf-8", errors="replace").splitlines()
    return [line[:300] for line in lines if " ERROR " in line or line.startswith("ERROR:")][:limit]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m service.loadtest",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]),
    )
    a = ap.add_argument
    a("--seconds", type=float, help="mixed: run length (default 60); levels: measured seconds per level (default 30)")
    a("--concurrency", type=_parse_levels, help="clients: N (mixed, default 8), or levels N,N,… (e.g. 8,32,64)")
    a("--levels", action="store_true", help="run the asyncio levels even for a single --concurrency value")
    a("--workers", type=int, default=1, help="worker processes of the spawned server (default 1)")
    a("--warmup", type=float, help="unmeasured seconds before each level (default 5) and before the soak (default 30)")
    a("--soak", type=float, metavar="SECONDS", help="soak for SECONDS at one concurrency (600 in issue 5)")
    a("--soak-concurrency", type=int, help="soak clients (default: the --concurrency value, the middle level, or 32)")
    a("--window", type=float, default=60.0, help="soak: seconds per latency window (default 60)")
    a("--sample-every", type=float, default=5.0, help="soak: seconds between memory samples (default 5)")
    a("--creep-limit", type=float, default=25.0, help="soak: allowed rise of p95, last vs first window, %% (default 25)")
    a("--memory-limit", type=float, default=10.0, help="soak: allowed RSS growth after the warm-up, %% (default 10)")
    a("--timeout", type=float, default=60.0, help="levels/soak: seconds before a request counts as an error")
    a("--url", help="an already running server (default: spawn one on a free loopback port)")
    a("--key", help="API key for --url")
    a("--home", help="BTXCODE_HOME of the server (to count stored rows)")
    a("--pid", type=int, help="with --url: pid of its `serve` process, for CPU and memory of its tree")
    a("--json", action="store_true", help="print the report as JSON only")
    a("--json-out", type=Path, help="levels/soak: also write the report as JSON to this file")
    a("--md-out", type=Path, help="levels/soak: also write a Markdown summary to this file")
    args = ap.parse_args(argv)
    args.argv_used = argv
    if args.url and not re.match(r"^https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)", args.url):
        ap.error("--url must be a loopback address")
    if args.url and not args.key:
        ap.error("--key is required with --url")
    if not 1 <= args.workers <= 64:
        ap.error("--workers must be 1-64")
    levels = args.concurrency if args.levels or (args.concurrency and len(args.concurrency) > 1) else None
    soak_c = args.soak_concurrency or (
        (args.concurrency[len(args.concurrency) // 2] if args.concurrency else 32) if args.soak else None
    )
    if args.soak is not None and args.soak <= 0:
        ap.error("--soak must be positive")
    if args.soak and args.soak < args.window:
        args.window = args.soak  # a short soak is one window
    if levels is None and not args.soak:
        return _main_mixed(args)
    return _main_async(args, levels, soak_c)


def _spawned(args: argparse.Namespace) -> tuple[subprocess.Popen[str], tempfile.TemporaryDirectory[str], str, Path, str]:
    from service.store import Store

    tmp = tempfile.TemporaryDirectory(prefix="btxload-")
    home = Path(tmp.name)
    (home / "config.toml").write_text("rate_limit_per_minute = 0\n", encoding="utf-8")
    store = Store(f"sqlite:///{home / 'btxcode.db'}")
    store.create_key("admin", admin=True)
    key = store.create_key("load", rate_limit=0)[1]
    store.close()
    try:
        proc, url = spawn(home, workers=args.workers)
    except BaseException:
        tmp.cleanup()
        raise
    return proc, tmp, url, home, key


def _main_mixed(args: argparse.Namespace) -> int:
    """The original run: thread clients, suggest + feedback, no lost rows."""
    notes = load_notes()
    proc, tmp = None, None
    home = Path(args.home) if args.home else None
    url, key = (args.url or "").rstrip("/"), args.key
    try:
        if not args.url:
            proc, tmp, url, home, key = _spawned(args)
        before = _counts(home)
        concurrency = args.concurrency[0] if args.concurrency else 8
        report = run_load(url, key, args.seconds or 60.0, concurrency, notes)
        report["notes_in_rotation"] = len(notes)
        if proc is not None:
            report["workers"] = args.workers
        after = _counts(home)
        if before is not None and after is not None:
            report["decisions_stored"] = after["decisions"] - before["decisions"]
            report["suggestions_stored"] = after["suggestions"] - before["suggestions"]
            report["lost_feedback_rows"] = report["feedback_rows_acked"] - report["decisions_stored"]
            report["lost_suggestions"] = report["suggestions_ok"] - report["suggestions_stored"]
        if report["server_errors"]:
            report["server_log_errors"] = server_errors_logged(home)
    finally:
        if proc is not None:
            stop(proc)
        if tmp is not None:
            tmp.cleanup()
    ok = (
        report["server_errors"] == 0
        and report["transport_errors"] == 0
        and report.get("lost_feedback_rows", 0) == 0
        and report.get("lost_suggestions", 0) == 0
    )
    report["ok"] = ok
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=1))
        print(
            f"{'OK' if ok else 'FAILED'}: {report['suggest_requests']} suggests in {report['seconds']}s "
            f"({report['suggest_per_s']}/s, p50 {report['p50_ms']} ms, p95 {report['p95_ms']} ms) with "
            f"{report['concurrency']} clients; {report['server_errors']} 5xx; feedback rows acked "
            f"{report['feedback_rows_acked']}, stored {report.get('decisions_stored', '?')}, "
            f"lost {report.get('lost_feedback_rows', '?')}"
        )
    return 0 if ok else 1


def _main_async(args: argparse.Namespace, levels: list[int] | None, soak_c: int | None) -> int:
    """Levels and/or soak with the asyncio client; the report as JSON and Markdown."""
    notes = load_notes()
    proc, tmp = None, None
    home = Path(args.home) if args.home else None
    url, key, server_pid = (args.url or "").rstrip("/"), args.key, args.pid
    t_start = time.monotonic()
    report: dict[str, Any] = {
        "kind": "+".join(k for k, on in (("levels", levels), ("soak", args.soak)) if on),
        "command": "python -m service.loadtest " + shlex.join(sys.argv[1:] if args.argv_used is None else args.argv_used),
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "duration_s": None,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_start": loadavg(),
            "loadavg_end": None,
            "python": platform.python_version(),
            "platform": platform.platform(terse=True),
        },
        "code": git_state(),
    }
    try:
        if not args.url:
            proc, tmp, url, home, key = _spawned(args)
            server_pid = proc.pid
        m = re.match(r"^https?://([^/:]+|\[::1\])(?::(\d+))?", url)
        assert m is not None
        target = Target(m.group(1).strip("[]"), int(m.group(2) or 80), key, server_pid, home, args.timeout)
        mem0 = tree_memory(server_pid)
        report["server"] = {
            "url": url,
            "spawned": proc is not None,
            "workers": args.workers if proc is not None else None,
            "store": "sqlite" if home is not None else None,
            "processes": mem0["processes"] if mem0 else None,
            "rss_mb_at_start": mem0["rss_mb"] if mem0 else None,
            "rss_mb_by_pid_at_start": mem0["rss_mb_by_pid"] if mem0 else None,
        }
        report["client"] = "asyncio, raw HTTP/1.1 keep-alive, one connection per client, closed loop"
        report["notes_in_rotation"] = len(notes)
        before = _counts(home)
        ok_count = 0
        if levels:
            warmup = 5.0 if args.warmup is None else args.warmup
            report["levels"], n = run_levels(target, notes, levels, seconds=args.seconds or 30.0, warmup=warmup)
            ok_count += n
        if args.soak:

            def progress(msg: str) -> None:
                if not args.json:
                    print(msg, file=sys.stderr, flush=True)

            assert soak_c is not None
            report["soak"], n = run_soak(
                target,
                notes,
                soak_c,
                seconds=args.soak,
                warmup=30.0 if args.warmup is None else args.warmup,
                window=args.window,
                sample_every=args.sample_every,
                creep_limit=args.creep_limit,
                memory_limit=args.memory_limit,
                progress=progress,
            )
            ok_count += n
        after = _counts(home)
        if before is not None and after is not None:
            stored = after["suggestions"] - before["suggestions"]
            report["store"] = {"suggestions_ok": ok_count, "suggestions_stored": stored, "lost_suggestions": ok_count - stored}
            files = [home / f"btxcode.db{suffix}" for suffix in ("", "-wal")]
            report["store"]["file_mb"] = round(sum(f.stat().st_size for f in files if f.is_file()) / 2**20, 1)
        by_worker = served_by_worker(home)
        if by_worker:
            report["server"]["answered_by_worker"] = {p: dict(c) for p, c in by_worker.items()}
        report["server"]["log_errors"] = server_errors_logged(home)
        mem1 = tree_memory(server_pid)
        if mem1:
            report["server"]["rss_mb_at_end"] = mem1["rss_mb"]
            report["server"]["rss_mb_by_pid_at_end"] = mem1["rss_mb_by_pid"]
    finally:
        if proc is not None:
            stop(proc)
        if tmp is not None:
            tmp.cleanup()
    report["machine"]["loadavg_end"] = loadavg()
    report["duration_s"] = round(time.monotonic() - t_start, 1)
    parts = report.get("levels", []) + ([report["soak"]["total"]] if "soak" in report else [])
    ok = all(p["server_errors"] == 0 and p["errors"] == 0 for p in parts)
    ok = ok and report.get("store", {}).get("lost_suggestions", 0) == 0
    if "soak" in report:
        ok = ok and report["soak"]["verdict"]["ok"]
    report["ok"] = ok
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    md = markdown(report)
    if args.md_out:
        args.md_out.parent.mkdir(parents=True, exist_ok=True)
        args.md_out.write_text(md, encoding="utf-8")
    print(json.dumps(report) if args.json else md + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
