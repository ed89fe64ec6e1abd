"""Batch at scale: ``btxcode batch`` throughput with 1 and 2 worker processes, and peak memory at 10k and
100k notes — the real CLI in a child process, measured from outside.

    python -m bench.scale                       # ~3-4 min here: 20k notes x 1 and 2 workers, 10k and 100k memory
    python -m bench.scale --throughput-notes 5000 --memory-notes 2000,20000   # quicker

Throughput: each worker count codes the same JSONL input twice, a small one (``--base-notes``, enough for
a few chunks) and a large one; *end-to-end* notes/s is the large run's notes over its wall time (engine
start-up included); *steady* notes/s is the difference of the two runs, ``(N - n) / (t_N - t_n)``, which
cancels start-up (spawning workers, loading the engine). The speed-up of 2 workers over 1 is reported
for both. Memory: the whole process tree (the CLI and its workers) is sampled every 50 ms from
``/proc/<pid>/status`` (VmRSS, summed over the tree); the peak of that sum is compared between the
smaller and the larger input. Nothing here is a test: figures are reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.corpus import ROOT, build_corpus

TODAY = "2026-06-01"


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_rss_mb(root: int) -> tuple[float, int]:
    """Summed VmRSS (MB) of ``root`` and its descendants, and how many processes that is."""
    kids = _children_map()
    todo, total, count = [root], 0, 0
    while todo:
        pid = todo.pop()
        todo.extend(kids.get(pid, ()))
        try:
            with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        count += 1
                        break
        except OSError:
            continue
    return total / 1024, count


class TreeSampler(threading.Thread):
    """Samples a process tree's summed RSS until stopped; keeps the peak and a thinned series."""

    def __init__(self, pid: int, every: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_mb, self.peak_procs = 0.0, 0
        self.series: list[tuple[float, float]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        t0 = time.perf_counter()
        while not self._halt.is_set():
            mb, n = tree_rss_mb(self.pid)
            if mb > self.peak_mb:
                self.peak_mb, self.peak_procs = mb, n
            self.series.append((round(time.perf_counter() - t0, 2), round(mb, 1)))
            self._halt.wait(self.every)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def write_input(path: Path, n: int, seed: int = 13) -> Path:
    records, _ = build_corpus(n, seed=seed)
    with path.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def run_cli(inp: Path, out: Path, workers: int, chunk_size: int = 250) -> dict[str, Any]:
    """One ``btxcode batch`` run in a child process: wall time, CPU of the tree, peak tree RSS, summary."""
    cmd = [
        sys.executable,
        "-m",
        "nlp.cli",
        "batch",
        str(inp),
        str(out),
        "--workers",
        str(workers),
        "--chunk-size",
        str(chunk_size),
        "--today",
        TODAY,
        "--quiet",
    ]
    before = os.times()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    sampler = TreeSampler(proc.pid)
    sampler.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.stop()
    after = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"btxcode batch exited {proc.returncode}: {err[-2000:]}")
    summary = json.loads(Path(f"{out}.summary.json").read_text(encoding="utf-8"))
    rows = sum(1 for _ in out.open(encoding="utf-8"))
    return {
        "workers": workers,
        "notes": summary["notes"],
        "rows_written": rows,
        "errors": sum(summary.get("errors", {}).values()) if isinstance(summary.get("errors"), dict) else summary.get("errors"),
        "wall_s": round(wall, 3),
        "cpu_s": round((after.children_user - before.children_user) + (after.children_system - before.children_system), 3),
        "notes_per_s": round(summary["notes"] / wall, 1),
        "peak_tree_rss_mb": round(sampler.peak_mb, 1),
        "processes_at_peak": sampler.peak_procs,
    }


def throughput(tmp: Path, n: int, base: int, workers: tuple[int, ...]) -> dict[str, Any]:
    big, small = write_input(tmp / f"in_{n}.jsonl", n), write_input(tmp / f"in_{base}.jsonl", base)
    runs: dict[int, dict[str, Any]] = {}
    for w in workers:
        s = run_cli(small, tmp / f"out_small_w{w}.jsonl", w)
        b = run_cli(big, tmp / f"out_big_w{w}.jsonl", w)
        steady = (b["notes"] - s["notes"]) / max(1e-9, b["wall_s"] - s["wall_s"])
        runs[w] = {
            "small": s,
            "large": b,
            "end_to_end_notes_per_s": b["notes_per_s"],
            "steady_notes_per_s": round(steady, 1),
            "startup_s": round(s["wall_s"] - s["notes"] / steady, 2),
        }
        print(
            f"  workers={w}: {b['notes']} notes in {b['wall_s']:.1f} s ({b['notes_per_s']:.0f} notes/s end to end, "
            f"{steady:.0f} notes/s steady)",
            file=sys.stderr,
        )
    same = (tmp / "out_big_w1.jsonl").read_bytes() == (tmp / "out_big_w2.jsonl").read_bytes() if {1, 2} <= set(runs) else None
    out: dict[str, Any] = {
        "notes": n,
        "base_notes": base,
        "by_workers": {str(w): r for w, r in runs.items()},
        "outputs_identical_1_vs_2_workers": same,
    }
    if 1 in runs and 2 in runs:
        out["speedup_2_over_1_end_to_end"] = round(runs[2]["end_to_end_notes_per_s"] / runs[1]["end_to_end_notes_per_s"], 2)
        out["speedup_2_over_1_steady"] = round(runs[2]["steady_notes_per_s"] / runs[1]["steady_notes_per_s"], 2)
    return out


def memory(tmp: Path, sizes: tuple[int, ...], workers: int) -> dict[str, Any]:
    runs = []
    for n in sizes:
        inp = write_input(tmp / f"mem_{n}.jsonl", n)
        r = run_cli(inp, tmp / f"mem_out_{n}.jsonl", workers)
        inp.unlink()
        (tmp / f"mem_out_{n}.jsonl").unlink()
        runs.append(r)
        print(
            f"  {n} notes, {workers} workers: peak tree RSS {r['peak_tree_rss_mb']:.0f} MB "
            f"({r['processes_at_peak']} processes), {r['wall_s']:.0f} s",
            file=sys.stderr,
        )
    lo, hi = runs[0]["peak_tree_rss_mb"], runs[-1]["peak_tree_rss_mb"]
    return {"workers": workers, "runs": runs, "growth_largest_over_smallest": round(hi / lo - 1, 4)}


def run_scale(
    throughput_notes: int = 20000,
    base_notes: int = 1000,
    memory_notes: tuple[int, ...] = (10000, 100000),
    memory_workers: int = 2,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="btx-scale-") as d:
        tmp = Path(d)
        print(f"batch throughput: {throughput_notes} notes with 1 and 2 workers (base {base_notes})", file=sys.stderr)
        tp = throughput(tmp, throughput_notes, base_notes, (1, 2))
        print(f"batch memory: {', '.join(map(str, memory_notes))} notes", file=sys.stderr)
        mem = memory(tmp, memory_notes, memory_workers)
    return {"throughput": tp, "memory": mem, "cpus": os.cpu_count(), "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--throughput-notes", type=int, default=20000)
    ap.add_argument("--base-notes", type=int, default=1000)
    ap.add_argument("--memory-notes", default="10000,100000", help="comma-separated sizes (default 10000,100000)")
    ap.add_argument("--memory-workers", type=int, default=2)
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args(argv)
    res = run_scale(
        args.throughput_notes, args.base_notes, tuple(int(x) for x in args.memory_notes.split(",")), args.memory_workers
    )
    text = json.dumps(res, indent=1)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
