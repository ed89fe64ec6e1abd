"""btxcode benchmark: the whole ``btxcode batch`` path next to bare spaCy tokenisation and a default
medspaCy pipeline, on the same texts, in one process.

    python -m bench.run                 # default: 2,000 notes, 3 interleaved repetitions (~2-3 min)
    python -m bench.run --profile       # also: where the engine's time goes (stages, regexes, cProfile)
    python -m bench.run --help

Writes ``bench/results/latest.json`` and ``bench/results/latest.md`` (and ``profile.json``/``profile.md``
with ``--profile``). This is a measurement, not a test: nothing here asserts a wall-clock figure; the
targets are ratios against ``spacy.blank("en")`` measured in the same run. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as ``python bench/run.py``: import from the repository root
    _here = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
    sys.path.insert(0, str(_here.parent))

from bench.corpus import ROOT, build_corpus  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGETS = {"engine_over_bare_issue2": 8.0, "engine_over_bare_issue5": 3.0, "medspacy_over_engine_min": 3.0}
PATHS = ("bare", "engine", "medspacy")
LABELS = {
    "bare": 'bare spacy.blank("en") tokenisation (nlp.pipe)',
    "engine": "btxcode engine, whole batch path (suggest_many + json.dumps)",
    "medspacy": "medspaCy 1.3.1 default pipeline (medspacy.load())",
}


class Lat:
    """Per-note wall and CPU seconds: the gap between consecutive results of a stream. CPU time is the
    process's (``time.process_time``), so it does not count time the OS gave to other processes."""

    __slots__ = ("wall", "cpu", "_w", "_c")

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def start(self) -> None:
        self._w, self._c = time.perf_counter(), time.process_time()

    def tick(self) -> None:
        w, c = time.perf_counter(), time.process_time()
        self.wall.append(w - self._w)
        self.cpu.append(c - self._c)
        self._w, self._c = w, c

    def __len__(self) -> int:
        return len(self.wall)


Runner = Callable[[int, Callable[[int], None] | None], Lat]


# ---------------------------------------------------------------------------------------------- paths


def jsonl_of(records: list[dict]) -> str:
    """The corpus as a ``btxcode batch`` input file (held in memory so disk speed does not count)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def batch_reader() -> Callable[[io.TextIOBase], Iterator[Any]]:
    """The JSONL reader ``btxcode batch`` uses (falls back to an equivalent if the CLI changes)."""
    try:
        from nlp.cli import _read_jsonl

        return _read_jsonl
    except ImportError:  # pragma: no cover - CLI refactored
        from nlp.engine import NoteInput

        def read(fh: io.TextIOBase) -> Iterator[Any]:
            for n, line in enumerate(fh, start=1):
                if line.strip():
                    rec = json.loads(line)
                    yield NoteInput(
                        text=rec.get("text", ""),
                        id=rec.get("id", f"line-{n}"),
                        date_of_service=rec.get("date_of_service"),
                        payer=rec.get("payer"),
                    )

        return read


class EnginePath:
    """``btxcode batch IN OUT`` minus the terminal: JSONL text in, ``json.dumps`` of each result to
    ``os.devnull``. Per-note time is the gap between consecutive results in the stream."""

    def __init__(self, records: list[dict]):
        from nlp import load_engine

        t = time.perf_counter()
        self.engine = load_engine()
        self.load_s = time.perf_counter() - t
        self.read = batch_reader()
        self.records = records
        self.files: dict[int, str] = {}
        self.sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
        self.last: dict[str, int] = {}

    def input_file(self, n: int) -> str:
        """The first n records as a JSONL file (written once; read back through the OS page cache)."""
        if n not in self.files:
            fd, path = tempfile.mkstemp(prefix=f"btxcode-bench-{n}-", suffix=".jsonl")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(jsonl_of(self.records[:n]))
            atexit.register(os.unlink, path)
            self.files[n] = path
        return self.files[n]

    def __call__(self, n: int, on_note: Callable[[int], None] | None = None) -> Lat:
        lat = Lat()
        lines = errors = 0
        with open(self.input_file(n), encoding="utf-8") as fin:
            lat.start()
            for result in self.engine.suggest_many(self.read(fin)):
                self.sink.write(json.dumps(result, ensure_ascii=False) + "\n")
                lat.tick()
                lines += len(result.get("lines") or ())
                errors += bool(result.get("error"))
                if on_note is not None:
                    on_note(len(lat))
                    lat.start()
        self.last = {"claim_lines": lines, "errors": errors}
        return lat


class BarePath:
    """``spacy.blank("en").pipe`` over the same texts."""

    def __init__(self, records: list[dict]):
        import spacy

        t = time.perf_counter()
        self.nlp = spacy.blank("en")
        self.load_s = time.perf_counter() - t
        self.texts = [r["text"] for r in records]
        self.last: dict[str, int] = {}

    def __call__(self, n: int, on_note: Callable[[int], None] | None = None) -> Lat:
        lat = Lat()
        tokens = 0
        lat.start()
        for doc in self.nlp.pipe(self.texts[:n], batch_size=64):
            lat.tick()
            tokens += len(doc)
            if on_note is not None:
                on_note(len(lat))
                lat.start()
        self.last = {"tokens": tokens}
        return lat


class MedspacyPath:
    """``medspacy.load()`` with its defaults. loguru's default DEBUG handler is replaced by a WARNING one
    so that per-decision logging cannot dominate (in 1.3.1 PyRuSH's logger is off by default, so this
    changes nothing measurable; it guards against versions that log)."""

    def __init__(self, records: list[dict]):
        from loguru import logger

        logger.remove()
        logger.add(sys.stderr, level="WARNING")
        import medspacy

        t = time.perf_counter()
        self.nlp = medspacy.load()
        self.load_s = time.perf_counter() - t
        self.version = getattr(medspacy, "__version__", "?")
        self.texts = [r["text"] for r in records]
        self.last: dict[str, int] = {}

    def __call__(self, n: int, on_note: Callable[[int], None] | None = None) -> Lat:
        lat = Lat()
        ents = 0
        lat.start()
        for doc in self.nlp.pipe(self.texts[:n], batch_size=64):
            lat.tick()
            ents += len(doc.ents)
            if on_note is not None:
                on_note(len(lat))
                lat.start()
        self.last = {"ents": ents}
        return lat


# ---------------------------------------------------------------------------------------------- helpers


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def rss_mb() -> float:
    """Current resident set size (Linux /proc; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def maxrss_mb() -> float:
    """The process's peak RSS so far (``resource.getrusage``; KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "dirty_paths_in_nlp": len(git("status", "--porcelain", "--", "nlp").splitlines()),
    }


def machine_info() -> dict[str, Any]:
    import spacy

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_impl": platform.python_implementation(),
        "spacy": spacy.__version__,
        "loadavg_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    for mod in ("medspacy", "PyRuSH", "thinc", "numpy"):
        try:
            from importlib.metadata import version

            info[mod.lower()] = version(mod.lower() if mod != "PyRuSH" else "PyRuSH")
        except Exception:  # noqa: BLE001 - optional package
            info[mod.lower()] = None
    return info


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- measure


def timed_run(runner: Runner, n: int) -> dict[str, Any]:
    gc.collect()
    c0, t0 = time.process_time(), time.perf_counter()
    lat = runner(n, None)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"notes": len(lat), "wall_s": wall, "cpu_s": cpu, "lat": lat}


def memory_run(runner: Runner, n: int) -> dict[str, Any]:
    """One extra pass under tracemalloc (3x slower, so never timed): peak Python-heap bytes above the
    start of the pass (spaCy's cymem pools allocate through PyMem and are included), the peak after a
    quarter and half of the notes (flat memory means these are close), and RSS before/after."""
    gc.collect()
    checkpoints = {max(1, n // 4): "quarter", max(1, n // 2): "half"}
    peaks: dict[str, float] = {}

    def on_note(i: int) -> None:
        if i in checkpoints:
            peaks[checkpoints[i]] = tracemalloc.get_traced_memory()[1] / 2**20

    rss0, maxrss0 = rss_mb(), maxrss_mb()
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    runner(n, on_note)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "notes": n,
        "tracemalloc_peak_mb": round((peak - base) / 2**20, 2),
        "tracemalloc_peak_at_quarter_mb": round(peaks.get("quarter", float("nan")) - base / 2**20, 2),
        "tracemalloc_peak_at_half_mb": round(peaks.get("half", float("nan")) - base / 2**20, 2),
        "tracemalloc_retained_mb": round((current - base) / 2**20, 2),
        "rss_before_mb": round(rss0, 1),
        "rss_after_mb": round(rss_mb(), 1),
        "maxrss_delta_mb": round(maxrss_mb() - maxrss0, 1),
    }


def summarise(runs: list[dict[str, Any]], n: int) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    cpus = [r["cpu_s"] for r in runs]
    lat_ms = [x * 1000 for r in runs for x in r["lat"].wall]
    cpu_ms = [x * 1000 for r in runs for x in r["lat"].cpu]
    med = statistics.median(walls)
    return {
        "notes": n,
        "reps": len(runs),
        "wall_s_per_rep": [round(w, 3) for w in walls],
        "cpu_s_per_rep": [round(c, 3) for c in cpus],
        "notes_per_s": round(n / med, 1),
        "notes_per_s_best": round(n / min(walls), 1),
        "notes_per_cpu_s": round(n / statistics.median(cpus), 1),
        "ms_per_note_mean": round(med * 1000 / n, 3),
        "cpu_ms_per_note_mean": round(statistics.median(cpus) * 1000 / n, 3),
        "ms_p50": round(pct(lat_ms, 0.50), 3),
        "ms_p95": round(pct(lat_ms, 0.95), 3),
        "ms_p99": round(pct(lat_ms, 0.99), 3),
        "ms_max": round(max(lat_ms), 3),
        "cpu_ms_p50": round(pct(cpu_ms, 0.50), 3),
        "cpu_ms_p95": round(pct(cpu_ms, 0.95), 3),
    }


def run_benchmark(args: argparse.Namespace, records: list[dict], corpus: dict[str, Any]) -> dict[str, Any]:
    n = len(records)
    m = min(args.medspacy_notes, n)
    log(f"corpus: {n} notes ({corpus['distinct_texts']} distinct texts, mean {corpus['chars_mean']:.0f} chars)")
    runners: dict[str, Any] = {"bare": BarePath(records), "engine": EnginePath(records)}
    notes = {"bare": n, "engine": n, "medspacy": m}
    skipped = None
    if args.medspacy_notes > 0:
        try:
            runners["medspacy"] = MedspacyPath(records)
        except ImportError as exc:
            skipped = f"medspaCy not installed ({exc}); pip install '.[bench]'"
            log(f"skipping medspaCy: {skipped}")
    paths = [p for p in PATHS if p in runners]

    warm: dict[str, float] = {}
    for p in paths:  # first calls build lazy tables/caches: measured, but kept out of the timed reps
        t = time.perf_counter()
        runners[p](min(20, notes[p]), None)
        warm[p] = time.perf_counter() - t

    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in paths}
    for rep in range(args.reps):
        order = paths[rep % len(paths) :] + paths[: rep % len(paths)]  # rotate so no path always goes first
        for p in order:
            r = timed_run(runners[p], notes[p])
            runs[p].append(r)
            log(
                f"rep {rep + 1}/{args.reps}  {p:<8} {r['notes']:>5} notes  {r['wall_s']:7.2f} s  "
                f"{r['notes'] / r['wall_s']:8.1f} notes/s"
            )

    out: dict[str, Any] = {"paths": {}}
    for p in paths:
        s = summarise(runs[p], notes[p])
        s.update(label=LABELS[p], load_s=round(runners[p].load_s, 3), first_20_notes_s=round(warm[p], 3), **runners[p].last)
        out["paths"][p] = s
    if "medspacy" in runners:
        mp = out["paths"]["medspacy"]
        mp["subset_of_corpus"] = m < n
        mp["extrapolated_full_corpus_s"] = round(n / mp["notes_per_s"], 1)
        mp["version"] = runners["medspacy"].version
        mp["pipeline"] = list(runners["medspacy"].nlp.pipe_names)
        mp["tokenizer"] = "medspaCy's custom tokenizer (part of its defaults)"
        mp["logging"] = "loguru default handler removed; WARNING-level stderr handler added"
    eng = runners["engine"].engine
    out["paths"]["engine"]["pipeline"] = list(eng.nlp.pipe_names)
    out["paths"]["engine"]["scorer"] = type(eng.scorer).__module__ + "." + type(eng.scorer).__name__ if eng.scorer else None
    out["paths"]["engine"]["versions"] = getattr(eng, "versions", None)

    # ratios of per-note cost, paired within each repetition (same moment, same machine load), then
    # the median over repetitions. Headline: process CPU time, which time given to other processes on
    # this shared machine does not inflate; wall-clock ratios alongside. A path that ran on fewer notes
    # (medspaCy) is compared with the other path's time on those same first notes.
    def ratio(num: str, den: str, clock: str) -> float:
        vals = []
        for a, b in zip(runs[num], runs[den], strict=True):
            k = min(len(a["lat"]), len(b["lat"]))
            sa, sb = (sum(getattr(x["lat"], clock)[:k]) for x in (a, b))
            vals.append(sa / sb)
        return round(statistics.median(vals), 2)

    ratios: dict[str, Any] = {
        "clock": "process CPU time (time.process_time); *_wall: wall clock",
        "engine_over_bare": ratio("engine", "bare", "cpu"),
        "engine_over_bare_wall": ratio("engine", "bare", "wall"),
    }
    if "medspacy" in runners:
        ratios["medspacy_over_engine"] = ratio("medspacy", "engine", "cpu")
        ratios["medspacy_over_engine_wall"] = ratio("medspacy", "engine", "wall")
        ratios["medspacy_over_bare"] = ratio("medspacy", "bare", "cpu")
    out["ratios"] = ratios
    eob = ratios["engine_over_bare"]
    # one engine runs on one core: its CPU time per note is the per-core rate
    out["engine_notes_per_s_per_core"] = round(1000 / out["paths"]["engine"]["cpu_ms_per_note_mean"], 1)
    out["targets"] = {
        "issue2_engine_over_bare_max": TARGETS["engine_over_bare_issue2"],
        "issue2_engine_over_bare_met": eob <= TARGETS["engine_over_bare_issue2"],
        "issue5_engine_over_bare_max": TARGETS["engine_over_bare_issue5"],
        "issue5_engine_over_bare_met": eob <= TARGETS["engine_over_bare_issue5"],
        "issue2_medspacy_over_engine_min": TARGETS["medspacy_over_engine_min"],
        "issue2_medspacy_over_engine_met": (
            ratios["medspacy_over_engine"] >= TARGETS["medspacy_over_engine_min"] if "medspacy_over_engine" in ratios else None
        ),
    }
    if skipped:
        out["medspacy_skipped"] = skipped

    if args.mem_notes:
        mem_n = {"bare": min(args.mem_notes, n), "engine": min(args.mem_notes, n), "medspacy": min(50, m)}
        for p in paths:
            log(f"memory pass (tracemalloc) {p}: {mem_n[p]} notes")
            out["paths"][p]["memory"] = memory_run(runners[p], mem_n[p])
    out["process_maxrss_mb"] = round(maxrss_mb(), 1)
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    out["_runners"] = runners
    return out


# ---------------------------------------------------------------------------------------------- report


def _fmt_mem(p: dict[str, Any]) -> str:
    mem = p.get("memory")
    return f"{mem['tracemalloc_peak_mb']:.1f}" if mem else "-"


def table_rows(res: dict[str, Any]) -> list[tuple[str, ...]]:
    rows = [("path", "notes", "notes/s", "ms/note", "CPU ms/note", "p50 ms", "p95 ms", "p99 ms", "peak MB*")]
    for key in PATHS:
        p = res["paths"].get(key)
        if not p:
            continue
        name = {
            "bare": 'bare spacy.blank("en")',
            "engine": "btxcode engine (batch path)",
            "medspacy": "medspaCy default" + (" (subset)" if p.get("subset_of_corpus") else ""),
        }[key]
        rows.append(
            (
                name,
                str(p["notes"]),
                f"{p['notes_per_s']:.1f}",
                f"{p['ms_per_note_mean']:.2f}",
                f"{p['cpu_ms_per_note_mean']:.2f}",
                f"{p['ms_p50']:.2f}",
                f"{p['ms_p95']:.2f}",
                f"{p['ms_p99']:.2f}",
                _fmt_mem(p),
            )
        )
    return rows


def ratio_lines(res: dict[str, Any]) -> list[str]:
    r, t = res["ratios"], res["targets"]

    def ok(flag: bool | None) -> str:
        return "n/a" if flag is None else ("met" if flag else "NOT met")

    lines = [
        f"engine / bare tokenisation = {r['engine_over_bare']:.2f}x CPU time ({r['engine_over_bare_wall']:.2f}x wall): "
        f"issue 2 target <= {t['issue2_engine_over_bare_max']:g}x {ok(t['issue2_engine_over_bare_met'])}; "
        f"issue 5 target <= {t['issue5_engine_over_bare_max']:g}x {ok(t['issue5_engine_over_bare_met'])}"
    ]
    if "medspacy_over_engine" in r:
        lines.append(
            f"medspaCy / engine = {r['medspacy_over_engine']:.2f}x CPU time ({r['medspacy_over_engine_wall']:.2f}x wall)"
            f" on the same {res['paths']['medspacy']['notes']} notes: issue 2 target >= "
            f"{t['issue2_medspacy_over_engine_min']:g}x {ok(t['issue2_medspacy_over_engine_met'])}; "
            f"medspaCy / bare = {r['medspacy_over_bare']:.1f}x"
        )
    return lines


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if j == 0:
            print("  ".join("-" * w for w in widths))


def markdown(res: dict[str, Any]) -> str:
    rows = table_rows(res)
    mi, c = res["machine"], res["corpus"]
    out = [
        f"<!-- generated by `python -m bench.run` at {res['finished_at']}; rerun to refresh -->",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(rows[0]))) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    out += ["", *[f"- {line}" for line in ratio_lines(res)]]
    out.append(f"- engine notes/s per core (1000 / CPU ms per note, one process): {res['engine_notes_per_s_per_core']:.0f}")
    if res.get("scale"):
        out += ["", scale_markdown(res["scale"])]
    if res.get("service"):
        out += ["", res["service"]["markdown"]]
    mp = res["paths"].get("medspacy")
    ep = res["paths"]["engine"]
    notes = [
        f"Engine: `btxcode batch` path (JSONL file in, `Engine.suggest_many`, `json.dumps` of each result to "
        f"/dev/null), pipeline {ep.get('pipeline')}, confidence scorer {ep.get('scorer') or 'none'}.",
        f"Corpus: {c['notes']} notes ({c['training_notes']} training + {c['mtsamples_notes']} MTSamples sources, "
        f"cycled with seeded layout variation; {c['distinct_texts']} distinct texts, mean {c['chars_mean']:.0f} chars). "
        f"{res['config']['reps']} interleaved repetitions. notes/s and ms/note: wall clock, median repetition; "
        "CPU ms/note: process CPU time, median repetition; p50/p95/p99: wall-clock gap between consecutive "
        "results of the stream, over every note of every repetition. Ratios compare CPU time per note, paired "
        "within each repetition (median over repetitions), because other jobs share this machine; "
        "wall-clock ratios are given too.",
    ]
    if mp and mp.get("subset_of_corpus"):
        notes.append(
            f"medspaCy ran on the first {mp['notes']} notes only (slow); its full-corpus time is extrapolated "
            f"(~{mp['extrapolated_full_corpus_s']:.0f} s) and the ratio uses the engine's time on the same notes. "
            f"Pipeline {mp['pipeline']} with its custom tokenizer; loguru default handler replaced by WARNING."
        )
    notes.append(
        "*peak MB: tracemalloc peak of Python-heap allocations (spaCy's cymem pools included) during one "
        "extra, untimed pass, above the heap at the start of the pass; models loaded before are not counted. "
        f"Process peak RSS (getrusage maxrss, all three pipelines loaded): {res['process_maxrss_mb']:.0f} MB."
    )
    notes.append(
        f"Machine: {mi['cpu_count']} CPUs ({mi['cpu_model']}), Python {mi['python']}, spaCy {mi['spacy']}, "
        f"medspaCy {mi.get('medspacy')}; load average {mi['loadavg_start']} at start, {res['loadavg_end']} at end; "
        f"git {res['git']['commit']} ({res['git']['dirty_paths_in_nlp']} uncommitted paths in nlp/)."
    )
    out += ["", *notes]
    if res.get("profile"):
        from bench.profiling import stages_markdown

        out += ["", stages_markdown(res["profile"])]
    return "\n".join(out) + "\n"


def scale_markdown(sc: dict[str, Any]) -> str:
    """The ``--scale`` figures (bench/scale.py) as a Markdown table."""
    tp, mem = sc["throughput"], sc["memory"]
    rows = [
        "| `btxcode batch` | notes | wall s | notes/s end to end | notes/s steady | peak tree RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for w, r in tp["by_workers"].items():
        big = r["large"]
        rows.append(
            f"| {w} worker{'s' if w != '1' else ''} | {big['notes']} | {big['wall_s']:.1f} | "
            f"{r['end_to_end_notes_per_s']:.0f} | {r['steady_notes_per_s']:.0f} | {big['peak_tree_rss_mb']:.0f} |"
        )
    for r in mem["runs"]:
        rows.append(
            f"| {mem['workers']} workers, memory run | {r['notes']} | {r['wall_s']:.1f} | {r['notes_per_s']:.0f} | "
            f"- | {r['peak_tree_rss_mb']:.0f} |"
        )
    lines = [
        f"- 2 workers / 1 worker: {tp.get('speedup_2_over_1_steady', float('nan')):.2f}x steady, "
        f"{tp.get('speedup_2_over_1_end_to_end', float('nan')):.2f}x end to end (issue 5 target >= 1.8x); "
        f"outputs identical: {tp['outputs_identical_1_vs_2_workers']}",
        f"- peak memory (summed RSS of the CLI and its workers): {mem['runs'][0]['notes']} notes "
        f"{mem['runs'][0]['peak_tree_rss_mb']:.0f} MB, {mem['runs'][-1]['notes']} notes "
        f"{mem['runs'][-1]['peak_tree_rss_mb']:.0f} MB: {mem['growth_largest_over_smallest'] * 100:+.1f} % "
        "(issue 5 target: within 10 %)",
        "Steady notes/s = (N - n) / (t_N - t_n) from a large and a small run, which cancels start-up "
        f"(small run: {tp['base_notes']} notes). Real CLI in a child process (`python -m nlp.cli batch`, JSONL), "
        "RSS sampled every 50 ms from /proc.",
    ]
    return "\n".join(rows + [""] + lines)


def run_service(args: argparse.Namespace) -> dict[str, Any]:
    """The service load test (service/loadtest.py) in a child process; its JSON and Markdown reports."""
    with tempfile.TemporaryDirectory(prefix="btx-svc-") as d:
        js, md = Path(d) / "svc.json", Path(d) / "svc.md"
        cmd = [
            sys.executable,
            "-m",
            "service.loadtest",
            "--workers",
            str(args.service_workers),
            "--concurrency",
            args.service_concurrency,
            "--seconds",
            str(args.service_seconds),
            "--json-out",
            str(js),
            "--md-out",
            str(md),
        ]
        if args.soak:
            cmd += ["--soak", str(args.soak)]
        log("service load: " + " ".join(cmd[1:]))
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if not js.is_file():
            raise RuntimeError(f"service load test failed (exit {proc.returncode}): {proc.stdout[-2000:]}")
        return {
            "report": json.loads(js.read_text(encoding="utf-8")),
            "markdown": md.read_text(encoding="utf-8"),
            "exit_status": proc.returncode,
        }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--notes", type=int, default=2000, help="corpus size (default 2000)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions of each path (default 3)")
    ap.add_argument(
        "--medspacy-notes",
        type=int,
        default=300,
        help="notes for medspaCy, the first N of the corpus (default 300; 0 skips medspaCy)",
    )
    ap.add_argument(
        "--mem-notes",
        type=int,
        default=400,
        help="notes in the untimed tracemalloc pass for bare/engine, 50 for medspaCy (default 400; 0 skips)",
    )
    ap.add_argument("--seed", type=int, default=13, help="corpus variation seed")
    ap.add_argument(
        "--profile",
        action="store_true",
        help="also profile the engine: stage and component times, regex attribution, cProfile top 25",
    )
    ap.add_argument("--profile-notes", type=int, default=400, help="notes for each profiling pass (default 400)")
    ap.add_argument("--no-bench", action="store_true", help="skip the timed comparison (with --profile)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    ap.add_argument(
        "--scale",
        action="store_true",
        help="also run bench/scale.py: batch with 1 and 2 workers, peak memory at 10k and 100k notes (~4 min)",
    )
    ap.add_argument("--scale-notes", type=int, default=20000, help="notes for the 1 vs 2 worker runs (default 20000)")
    ap.add_argument("--memory-notes", default="10000,100000", help="sizes for the memory runs (default 10000,100000)")
    ap.add_argument(
        "--service", action="store_true", help="also run the service load test (service/loadtest.py) at --service-concurrency"
    )
    ap.add_argument("--service-workers", type=int, default=2, help="uvicorn workers (default 2)")
    ap.add_argument("--service-concurrency", default="8,32,64", help="client levels (default 8,32,64)")
    ap.add_argument("--service-seconds", type=int, default=30, help="seconds per level (default 30)")
    ap.add_argument("--soak", type=int, default=0, help="with --service: soak seconds at the middle level (600 in the issue)")
    ap.add_argument("--all", action="store_true", help="--scale --service --soak 600 (about 20 min)")
    args = ap.parse_args(list(argv) if argv is not None else None)
    if args.all:
        args.scale = args.service = True
        args.soak = args.soak or 600
    if args.notes < 1 or args.reps < 1:
        ap.error("--notes and --reps must be >= 1")
    return args


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    records, corpus = build_corpus(args.notes, seed=args.seed)
    res: dict[str, Any] = {
        "schema": "btxcode-bench/1",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),  # noqa: UP017
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": machine_info(),
        "git": git_state(),
        "corpus": corpus,
    }
    runners: dict[str, Any] = {}
    if not args.no_bench:
        bench = run_benchmark(args, records, corpus)
        runners = bench.pop("_runners")
        res.update(bench)
    if args.profile:
        from bench.profiling import print_profile, profile_engine

        engine_path = runners.get("engine") or EnginePath(records)
        med = runners.get("medspacy")
        if med is None and args.medspacy_notes > 0:
            try:
                med = MedspacyPath(records)
            except ImportError:
                med = None
        prof = profile_engine(engine_path, min(args.profile_notes, len(records)), med)
        res["profile"] = prof
        print_profile(prof)
        write_json(args.out / "profile.json", prof)
        from bench.profiling import profile_markdown

        write_text(args.out / "profile.md", profile_markdown(prof))
    if args.scale and not args.no_bench:
        from bench.scale import run_scale

        runners.clear()  # free the in-process pipelines before the child processes start
        res["scale"] = run_scale(args.scale_notes, 1000, tuple(int(x) for x in args.memory_notes.split(",")))
    if args.service and not args.no_bench:
        res["service"] = run_service(args)
    res["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")  # noqa: UP017
    res["elapsed_s"] = round(time.perf_counter() - started, 1)
    if args.no_bench:
        log(f"profile written to {args.out / 'profile.json'} and profile.md ({res['elapsed_s']} s)")
        return 0

    print()
    print(
        f"btxcode benchmark: {corpus['notes']} notes, {args.reps} interleaved reps, "
        f"{res['machine']['cpu_count']} CPUs, Python {res['machine']['python']}, spaCy {res['machine']['spacy']}"
    )
    print_table(table_rows(res))
    for line in ratio_lines(res):
        print(line)
    mp = res["paths"].get("medspacy")
    if mp and mp.get("subset_of_corpus"):
        print(
            f"(medspaCy ran on the first {mp['notes']} of {corpus['notes']} notes; extrapolated full corpus "
            f"~{mp['extrapolated_full_corpus_s']:.0f} s; ratio uses the engine's time on those same notes)"
        )
    eng = res["paths"]["engine"]
    print(
        f"engine: pipeline {eng['pipeline']}, confidence scorer {eng['scorer'] or 'none'}; "
        f"{eng['claim_lines']} claim lines, {eng['errors']} error rows in the last rep; "
        f"load {eng['load_s']:.2f} s, first 20 notes {eng['first_20_notes_s']:.2f} s"
    )
    if eng.get("memory"):
        mem = eng["memory"]
        print(
            f"peak MB* = tracemalloc peak above the pass's start heap, untimed extra pass. engine peak after 1/4, 1/2, "
            f"all notes: {mem['tracemalloc_peak_at_quarter_mb']}, {mem['tracemalloc_peak_at_half_mb']}, "
            f"{mem['tracemalloc_peak_mb']} MB; process peak RSS (getrusage) {res['process_maxrss_mb']:.0f} MB"
        )
    print(f"engine notes/s per core: {res['engine_notes_per_s_per_core']:.0f}")
    if res.get("scale"):
        print(scale_markdown(res["scale"]))
    if res.get("service"):
        print(res["service"]["markdown"])
    print(f"load average start {res['machine']['loadavg_start']} end {res['loadavg_end']}; elapsed {res['elapsed_s']} s")
    write_json(args.out / "latest.json", res)
    write_text(args.out / "latest.md", markdown(res))
    print(f"wrote {args.out / 'latest.json'} and {args.out / 'latest.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
