"""``btxcode batch``: stream notes through the engine on all cores, in input order, resumably.

* **Streaming.** The reader yields one note at a time; notes are grouped into chunks of ``chunk_size``;
  at most ``2 × workers + 1`` chunks are in flight; each finished chunk is written and dropped. Memory
  does not depend on the size of the input.
* **Processes.** ``workers > 1``: a pool of worker processes, each with one engine, coding whole chunks;
  results come back in submission order, so the output keeps the input order. Where the OS can fork
  (Linux), the parent loads the engine once and forks the workers, which inherit it copy-on-write: no
  worker re-imports spaCy and scikit-learn or rebuilds the pipeline (≈ 2-3 s each), and the pool is
  started before any thread exists in the parent. Elsewhere (macOS, Windows) workers are spawned and
  each loads its engine in its initializer. ``workers == 1`` codes in this process. ``workers=None`` (default): one per available CPU,
  or in-process when the whole input fits in one chunk.
* **Errors.** A bad record or note becomes an error row with its id (the engine's error result); if the
  engine itself fails on a chunk, the chunk is redone note by note and the failing note gets an
  ``INTERNAL`` error row. The run goes on.
* **Resume.** After each durable chunk the runner writes ``OUT.progress.json`` atomically (rows done, the
  writer's checkpoint — a byte offset for JSONL/CSV, the closed segments for Parquet — the last id, and
  the summary so far). ``resume=True`` truncates the output to that checkpoint (dropping a partly written
  trailing chunk), skips the rows already done (checking that the input still has the same id there), and
  goes on; the finished output has exactly one row per input record. The marker is removed at the end.
* **Summary.** Notes, lines, errors by code, warnings by code, codes, routed auto/review, rate: printed
  to stderr and written to ``OUT.summary.json``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, TextIO

from nlp.batch.io import (
    ExtraMissing,
    InputFormatError,
    Source,
    encode,
    infer_format,
    open_sink,
    open_source,
    require_pyarrow,
)
from nlp.engine import NoteInput, error_result

DEFAULT_CHUNK = 250
MARKER_VERSION = 1


class BatchError(RuntimeError):
    """The run cannot start or go on (bad arguments, mismatched resume, a worker process died)."""


# ---------------------------------------------------------------------------------------------------
# coding one chunk (in this process or in a worker)


def code_chunk(engine: Any, notes: list[NoteInput], today: date | None) -> list[dict[str, Any]]:
    """Encoded rows for ``notes``, in order; never raises for a note the engine fails on."""
    try:
        results = list(engine.suggest_many(notes, today=today))
        if len(results) != len(notes):
            raise RuntimeError(f"engine returned {len(results)} results for {len(notes)} notes")
    except Exception:  # noqa: BLE001 - isolate the failing note and go on
        results = []
        for note in notes:
            try:
                results.extend(engine.suggest_many([note], today=today))
            except Exception as exc:  # noqa: BLE001
                results.append(error_result(note.id, "INTERNAL", f"the engine failed on this note: {type(exc).__name__}: {exc}"))
    return [encode(r) for r in results]


def load_engine_for(payer: str, model_dir: str | None = None) -> Any:
    from nlp import load_engine

    kwargs: dict[str, Any] = {}
    if model_dir is not None:
        kwargs["model_dir"] = model_dir
    return load_engine(payer=payer, **kwargs)


_WORKER_ENGINE: Any = None


def _init_worker(payer: str, model_dir: str | None) -> None:
    global _WORKER_ENGINE
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if _WORKER_ENGINE is None:  # spawned; a forked worker inherited the parent's engine
        _WORKER_ENGINE = load_engine_for(payer, model_dir)


def _work(notes: list[NoteInput], today: date | None) -> list[dict[str, Any]]:
    return code_chunk(_WORKER_ENGINE, notes, today)


# ---------------------------------------------------------------------------------------------------
# summary and progress


class Summary:
    """Counts over the rows written (restorable from a progress marker)."""

    def __init__(self, saved: dict[str, Any] | None = None):
        saved = saved or {}
        self.notes = int(saved.get("notes", 0))
        self.lines = int(saved.get("lines", 0))
        self.errors = int(saved.get("errors", 0))
        self.errors_by_code: Counter[str] = Counter(saved.get("errors_by_code") or {})
        self.warnings_by_code: Counter[str] = Counter(saved.get("warnings_by_code") or {})
        self.codes: Counter[str] = Counter(saved.get("codes") or {})
        self.routed: Counter[str] = Counter(saved.get("routed") or {})
        self.versions: dict[str, Any] | None = saved.get("versions")
        self.versions_before: dict[str, Any] | None = saved.get("versions_before")
        self.changed = False  # engine/tables/model versions differ from the rows written before a resume

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        for r in rows:
            self.notes += 1
            self.lines += len(r["_codes"])
            self.codes.update(r["_codes"])
            if r["error"]:
                self.errors += 1
                self.errors_by_code[r["error"]] += 1
            if r["warnings"]:
                self.warnings_by_code.update(r["warnings"].split())
            self.routed[r["route"] or "none"] += 1
            v = r.get("_versions")
            if v:
                if self.versions is None:
                    self.versions = v
                elif v != self.versions and self.versions_before is None:
                    self.versions_before, self.versions, self.changed = self.versions, v, True

    def counts(self) -> dict[str, Any]:
        return {
            "notes": self.notes,
            "coded": self.notes - self.errors,
            "lines": self.lines,
            "errors": self.errors,
            "errors_by_code": dict(self.errors_by_code.most_common()),
            "warnings": sum(self.warnings_by_code.values()),
            "warnings_by_code": dict(self.warnings_by_code.most_common()),
            "routed": {k: self.routed.get(k, 0) for k in ("auto", "review")}
            | {k: v for k, v in self.routed.items() if k not in ("auto", "review")},
            "codes": dict(sorted(self.codes.items())),
            "versions": self.versions,
        } | ({"versions_before": self.versions_before} if self.versions_before else {})


def _hms(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """One ``\\r`` line on stderr: notes, percent and bar when the input size is known, rate, ETA, errors.

    Rate and ETA are measured from the first finished chunk on, so engine start-up does not skew them."""

    def __init__(self, stream: TextIO | None, source: Source, notes0: int, every: float = 0.25):
        self.stream = stream
        self.source = source
        self.every = every
        self.t0 = time.perf_counter()
        self.notes0 = notes0
        self._mark: tuple[float, int, int] | None = None  # (time, notes, position) at the first update
        self._last = 0.0

    def update(self, notes: int, errors: int, pos: int, final: bool = False) -> None:
        if self.stream is None:
            return
        now = time.perf_counter()
        if self._mark is None:
            self._mark = (now, notes, pos)
        if not final and now - self._last < self.every:
            return
        self._last = now
        t_mark, notes_mark, pos_mark = self._mark
        if final or notes <= notes_mark:
            rate = (notes - self.notes0) / max(now - self.t0, 1e-9)
        else:
            rate = (notes - notes_mark) / max(now - t_mark, 1e-9)
        parts = [f"{notes:,} notes"]
        total = self.source.total
        if total:
            frac = min(pos / total, 1.0)
            width = 24
            fill = int(frac * width)
            parts.append(f"{frac * 100:5.1f}% |{'#' * fill}{'.' * (width - fill)}|")
            if not final and pos > pos_mark:
                unit_rate = (pos - pos_mark) / max(now - t_mark, 1e-9)
                parts.append(f"ETA {_hms((total - pos) / unit_rate)}")
        parts.append(f"{rate:,.0f} notes/s")
        parts.append(f"{errors:,} errors")
        if final:
            parts.append(f"in {_hms(now - self.t0)}")
        self.stream.write("\r" + "  ".join(parts) + "\033[K")
        if final:
            self.stream.write("\n")
        self.stream.flush()


def format_summary(summary: dict[str, Any], summary_path: str | None = None, command: str = "batch") -> str:
    """The summary as a few lines for a person."""
    errs = ", ".join(f"{k} {v:,}" for k, v in summary["errors_by_code"].items())
    routed = summary["routed"]
    out = [
        f"btxcode {command}: {summary['notes']:,} notes, {summary['errors']:,} errors, "
        f"{summary.get('elapsed_s', 0):.1f}s ({summary.get('notes_per_s', 0):,.1f} notes/s"
        + (f", {summary['workers']} workers" if summary.get("workers") else "")
        + f") -> {summary.get('output')}",
        f"  lines {summary['lines']:,}  coded {summary['coded']:,}  errors {summary['errors']:,}"
        + (f" ({errs})" if errs else ""),
        "  routed " + "  ".join(f"{k} {v:,}" for k, v in routed.items()),
    ]
    if summary["warnings_by_code"]:
        out.append("  warnings " + ", ".join(f"{k} {v:,}" for k, v in summary["warnings_by_code"].items()))
    if summary.get("resumed_from"):
        out.append(f"  resumed after {summary['resumed_from']:,} notes already written")
    if summary_path:
        out.append(f"  summary: {summary_path}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------
# progress marker


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _same_id(a: Any, b: Any) -> bool:
    return json.dumps(a, default=str, sort_keys=True) == json.dumps(b, default=str, sort_keys=True)


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _chunks(source: Source, size: int) -> Iterator[tuple[list[NoteInput], int]]:
    """Chunks of notes and the source position after each."""
    it = iter(source)
    while True:
        chunk = list(itertools.islice(it, size))
        if not chunk:
            return
        yield chunk, source.done


def run_batch(
    input: str | os.PathLike[str],  # noqa: A002 - the CLI's name
    output: str | os.PathLike[str],
    *,
    workers: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    resume: bool = False,
    input_format: str | None = None,
    output_format: str | None = None,
    payer: str = "medicare",
    today: date | None = None,
    progress: bool | None = None,
    summary_path: str | None | bool = True,
    checkpoint_seconds: float = 30.0,
    model_dir: str | None = None,
    engine_factory: Callable[[], Any] | None = None,
    stderr: TextIO | None = None,
    print_summary: bool = True,
) -> dict[str, Any]:
    """Code ``input`` into ``output``; returns the summary. See the module docstring.

    ``summary_path``: True → ``OUT.summary.json`` (none for stdout), a path, or False/None for none.
    ``engine_factory`` (in-process runs only, for tests): builds the engine instead of ``load_engine``.
    ``checkpoint_seconds``: how old a Parquet segment gets before it is closed for resume (0: every chunk).
    """
    err = stderr if stderr is not None else sys.stderr
    inp, out = str(input), str(output)
    in_fmt, out_fmt = infer_format(inp, input_format), infer_format(out, output_format)
    if "parquet" in (in_fmt, out_fmt):
        require_pyarrow()
    if chunk_size < 1:
        raise BatchError("--chunk-size must be at least 1")
    if workers is not None and workers < 1:
        raise BatchError("--workers must be at least 1")
    if out == "-" and resume:
        raise BatchError("--resume needs an output file (not stdout)")
    if out == "-" and out_fmt == "parquet":
        raise BatchError("Parquet cannot be written to stdout; give an output file name")
    if inp != "-" and out != "-" and Path(inp).resolve() == Path(out).resolve():
        raise BatchError("the output file is the input file")
    if engine_factory is None:
        from nlp.loaders import profile

        try:
            profile(payer)
        except KeyError as exc:
            raise BatchError(str(exc.args[0])) from None

    marker = None if out == "-" else Path(f"{out}.progress.json")
    if summary_path is True:
        summary_file = None if out == "-" else f"{out}.summary.json"
    else:
        summary_file = str(summary_path) if summary_path else None

    state: dict[str, Any] | None = None
    if resume and marker is not None:
        if marker.is_file():
            state = json.loads(marker.read_text(encoding="utf-8"))
            if state.get("version") != MARKER_VERSION:
                raise BatchError(f"{marker} was written by another version of btxcode; run again without --resume")
            if state.get("output_format") != out_fmt:
                raise BatchError(f"the interrupted run wrote {state.get('output_format')}, not {out_fmt}")
            if state.get("payer") != payer:
                raise BatchError(f"the interrupted run used --payer {state.get('payer')}, not {payer}")
            written = Path(f"{out}.parts") if out_fmt == "parquet" else Path(out)
            if not written.exists():
                raise BatchError(f"{written} is gone; run again without --resume")
        elif summary_file and Path(summary_file).is_file() and Path(out).exists():
            done = json.loads(Path(summary_file).read_text(encoding="utf-8"))
            if done.get("complete"):
                err.write(f"btxcode batch: {out} is already complete ({done.get('notes', 0):,} notes); nothing to do\n")
                return done
    if state is not None and state.get("today"):
        today = date.fromisoformat(state["today"])
    today = today or date.today()

    source = open_source(inp, in_fmt)
    try:
        skipped = 0
        if state is not None:
            want = int(state["rows_done"])
            last = None
            for note in itertools.islice(source, want):
                skipped += 1
                last = note
            if skipped != want or (want and not _same_id(last.id if last else None, state.get("last_id"))):
                raise BatchError(
                    f"the input does not match the interrupted run (expected id {state.get('last_id')!r} at row {want}, "
                    f"found {last.id if last else None!r} at row {skipped}); run again without --resume"
                )
        sink = open_sink(out, out_fmt, state["sink"] if state else None, checkpoint_seconds)
    except BaseException:
        source.close()
        raise

    summary = Summary(state.get("summary") if state else None)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    show = progress if progress is not None else (err.isatty() if hasattr(err, "isatty") else False)
    bar = Progress(err if show else None, source, summary.notes)
    t0 = time.perf_counter()
    committed_rows = summary.notes
    base = {
        "version": MARKER_VERSION,
        "input": str(Path(inp).resolve()) if inp != "-" else "-",
        "output_format": out_fmt,
        "payer": payer,
        "today": today.isoformat(),
    }

    def commit(rows: list[dict[str, Any]], last_id: Any, pos: int) -> None:
        """Write one finished chunk; after a durable checkpoint, record it in the progress marker."""
        nonlocal committed_rows
        sink.write(rows)
        summary.add(rows)
        if summary.changed:
            summary.changed = False
            err.write(
                f"\nbtxcode batch: warning: the engine, tables or model changed since the interrupted run "
                f"({summary.versions_before} -> {summary.versions}); rows before and after the resume differ in version\n"
            )
        ck = sink.checkpoint()
        if ck is not None and marker is not None:
            # everything written so far is durable, up to and including ``last_id``
            _write_json_atomic(
                marker, base | {"rows_done": summary.notes, "last_id": last_id, "sink": ck, "summary": summary.counts()}
            )
            committed_rows = summary.notes
        bar.update(summary.notes, summary.errors, pos)

    chunks = _chunks(source, chunk_size)
    n_workers = workers
    if n_workers is None:
        first = list(itertools.islice(chunks, 2))
        n_workers = 1 if len(first) < 2 else _cpus()
        chunks = itertools.chain(first, chunks)
    if engine_factory is not None:
        n_workers = 1

    interrupted = False
    try:
        if n_workers == 1:
            engine = None  # loaded with the first chunk (an empty input needs none)
            for notes, pos in chunks:
                if engine is None:
                    engine = engine_factory() if engine_factory is not None else load_engine_for(payer, model_dir)
                commit(code_chunk(engine, notes, today), notes[-1].id, pos)
        else:
            _run_pool(chunks, n_workers, payer, model_dir, today, commit)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        sink.abort()
        source.close()
        raise
    if interrupted:
        sink.abort()
        source.close()
        if show:
            err.write("\n")
        hint = f"; {committed_rows:,} notes are safe, rerun with --resume to continue" if marker else ""
        raise BatchError(f"interrupted{hint}")

    sink.finish()
    source.close()
    bar.update(summary.notes, summary.errors, source.done, final=True)
    elapsed = time.perf_counter() - t0
    result = {
        "complete": True,
        "input": inp,
        "output": out,
        "input_format": in_fmt,
        "output_format": out_fmt,
        "payer": payer,
        "today": today.isoformat(),
        **summary.counts(),
        "workers": n_workers,
        "chunk_size": chunk_size,
        "resumed_from": skipped,
        "elapsed_s": round(elapsed, 3),
        "notes_per_s": round((summary.notes - skipped) / elapsed, 2) if elapsed > 0 else None,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if summary_file:
        _write_json_atomic(Path(summary_file), result)
    if marker is not None and marker.exists():
        marker.unlink()
    if print_summary:
        err.write(format_summary(result, summary_file) + "\n")
        err.flush()
    return result


def _run_pool(
    chunks: Iterator[tuple[list[NoteInput], int]],
    n_workers: int,
    payer: str,
    model_dir: str | None,
    today: date,
    commit: Callable[[list[dict[str, Any]], Any, int], None],
) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    global _WORKER_ENGINE
    if "fork" in mp.get_all_start_methods() and sys.platform.startswith("linux"):
        # load once here; forked workers inherit it (the executor forks all workers before its thread starts)
        ctx = mp.get_context("fork")
        _WORKER_ENGINE = load_engine_for(payer, model_dir)
    else:
        ctx = mp.get_context("spawn")  # a clean interpreter per worker; each loads one engine once
    max_inflight = 2 * n_workers + 1
    pending: deque[tuple[Any, Any, int]] = deque()  # (future, id of the chunk's last note, source position)
    ex = ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_init_worker, initargs=(payer, model_dir))
    try:

        def drain_one() -> None:
            fut, last_id, pos = pending.popleft()
            try:
                rows = fut.result()
            except BrokenProcessPool as exc:
                raise BatchError(f"a worker process died ({exc}); rerun with --resume to continue") from None
            commit(rows, last_id, pos)

        for notes, pos in chunks:
            pending.append((ex.submit(_work, notes, today), notes[-1].id, pos))
            while len(pending) >= max_inflight:
                drain_one()
        while pending:
            drain_one()
    finally:
        for fut, _, _ in pending:
            fut.cancel()
        ex.shutdown(wait=True, cancel_futures=True)
        _WORKER_ENGINE = None


__all__ = ["BatchError", "ExtraMissing", "InputFormatError", "Summary", "code_chunk", "format_summary", "run_batch"]
