"""Streaming readers and writers for ``btxcode batch``: JSONL, CSV and Parquet.

Input records have the fields ``id``, ``text``, ``date_of_service`` (optional, YYYY-MM-DD) and ``payer``
(optional). Readers yield :class:`nlp.engine.NoteInput` one at a time and never hold the whole input; a
record that cannot be used becomes a ``NoteInput`` with ``error`` set, so it turns into an error row with
its id (or ``line-N`` / ``row-N`` when it has none) and the run goes on.

Output: JSONL has one result object per line (the CLI result, unchanged). CSV and Parquet have one row per
note with the columns of :data:`FLAT_COLUMNS`: ``id`` (as a string), the flattened key fields ``codes``
(``CODE[-MOD…]xUNITS`` separated by spaces, e.g. ``64616-50x1 J0585x100``), ``diagnoses`` (codes separated
by spaces), ``warnings`` (warning codes separated by spaces), ``confidence`` (claim confidence or empty),
``route`` (``auto``/``review`` or empty), ``error`` (the error code or empty), and ``result`` — the whole
result object as a JSON string, identical to the JSONL line.

Writers are chunk-oriented and resumable: :meth:`write` takes the rows of one finished chunk,
:meth:`checkpoint` makes what was written durable and returns the state a later run needs to continue from
there (``None`` when nothing new became durable), :meth:`finish` completes the file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any, BinaryIO

from nlp.engine import NoteInput

FORMATS = ("jsonl", "csv", "parquet")
INPUT_COLUMNS = ("id", "text", "date_of_service", "payer")
FLAT_COLUMNS = ("id", "codes", "diagnoses", "warnings", "confidence", "route", "error", "result")
EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
CSV_FIELD_LIMIT = 1 << 24  # the engine refuses notes over 200 kB itself, with an error row


class ExtraMissing(RuntimeError):
    """An optional dependency (pyarrow, pyspark) is not installed; the message says which extra to install."""


class InputFormatError(ValueError):
    """The input as a whole cannot be read (e.g. a CSV file without a ``text`` column)."""


def require_pyarrow() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or :class:`ExtraMissing` telling which extra to install."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ExtraMissing(
            f"Parquet needs pyarrow, which is not installed ({exc}); install the extra: pip install 'btxcode[parquet]'"
        ) from None
    return pa, pq


def infer_format(path: str | os.PathLike[str], given: str | None = None) -> str:
    """``given`` when set, else from the extension (``-`` and unknown extensions are JSONL)."""
    if given:
        if given not in FORMATS:
            raise InputFormatError(f"unknown format {given!r}; use one of {', '.join(FORMATS)}")
        return given
    p = str(path)
    if p == "-":
        return "jsonl"
    return EXTENSIONS.get(Path(p.rstrip("/")).suffix.lower(), "jsonl")


# ---------------------------------------------------------------------------------------------------
# records → NoteInput


def _clean(value: Any) -> Any:
    """None for missing values (None, NaN, empty string)."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _utf8_ok(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _safe_id(value: Any) -> Any:
    if isinstance(value, str) and not _utf8_ok(value):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def note_from_record(rec: dict[str, Any], default_id: str | None) -> NoteInput:
    """One input record (a dict with id/text/date_of_service/payer) as a NoteInput (``error`` set if unusable)."""
    note_id = _safe_id(rec["id"]) if "id" in rec and _clean(rec["id"]) is not None else default_id
    text = rec.get("text")
    if not isinstance(text, str | bytes):
        kind = "no" if text is None else f"a {type(text).__name__} as"
        return NoteInput(text="", id=note_id, error=("BAD_RECORD", f"record {note_id} has {kind} 'text'; it needs a string"))
    if isinstance(text, str) and not _utf8_ok(text):
        return NoteInput(text="", id=note_id, error=("ENCODING", f"record {note_id}: text is not valid UTF-8"))
    dos = _clean(rec.get("date_of_service"))
    if isinstance(dos, datetime):
        dos = dos.date()
    elif dos is not None and not isinstance(dos, date):
        dos = str(dos).strip()
    payer = _clean(rec.get("payer"))
    return NoteInput(text=text, id=note_id, date_of_service=dos, payer=None if payer is None else str(payer).strip())


def parse_jsonl_line(line: str | bytes, n: int) -> NoteInput | None:
    """Line ``n`` (1-based) of a JSONL input as a NoteInput; None for a blank line."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8-sig" if n == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            return NoteInput(text="", id=f"line-{n}", error=("ENCODING", f"line {n} is not valid UTF-8 (byte {exc.start})"))
    elif n == 1:
        line = line.lstrip("\ufeff")
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
        if not isinstance(rec, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        return NoteInput(text="", id=f"line-{n}", error=("BAD_JSON", f"line {n} is not a JSON object: {exc}"))
    return note_from_record(rec, f"line-{n}")


def read_jsonl(lines: Iterable[str | bytes]) -> Iterator[NoteInput]:
    """NoteInputs from JSONL lines (a text or binary file, or any iterable of lines)."""
    for n, line in enumerate(lines, start=1):
        note = parse_jsonl_line(line, n)
        if note is not None:
            yield note


# ---------------------------------------------------------------------------------------------------
# sources: iterate NoteInputs; ``done``/``total`` measure progress (bytes or rows; total None if unknown)


class Source:
    unit = "bytes"
    total: int | None = None
    done: int = 0

    def __iter__(self) -> Iterator[NoteInput]:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


def _open_binary(path: str) -> tuple[BinaryIO, int | None]:
    if path == "-":
        return sys.stdin.buffer, None
    p = Path(path)
    if not p.is_file():
        raise InputFormatError(f"no such file: {path}")
    fh = p.open("rb")
    return fh, p.stat().st_size


class JsonlSource(Source):
    def __init__(self, path: str):
        self._fh, self.total = _open_binary(path)
        self._path = path
        self.done = 0

    def __iter__(self) -> Iterator[NoteInput]:
        for n, raw in enumerate(self._fh, start=1):
            self.done += len(raw)
            note = parse_jsonl_line(raw, n)
            if note is not None:
                yield note

    def close(self) -> None:
        if self._path != "-":
            self._fh.close()


class CsvSource(Source):
    """CSV with a header row; columns id, text, date_of_service, payer (only ``text`` is required; any
    order; names case-insensitive; other columns ignored). Quoted fields may span lines (RFC 4180)."""

    def __init__(self, path: str):
        self._fh, self.total = _open_binary(path)
        self._path = path
        self.done = 0
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        self._reader = csv.reader(self._lines())
        try:
            header = next(self._reader)
        except StopIteration:
            header = []
        except csv.Error as exc:
            self.close()
            raise InputFormatError(f"{path}: cannot read the CSV header: {exc}") from None
        self._header = [h.strip().lstrip("\ufeff").lower() for h in header]
        if "text" not in self._header:
            self.close()
            raise InputFormatError(
                f"{path}: CSV input needs a header row with a 'text' column (columns: {', '.join(INPUT_COLUMNS)}); "
                f"found {header[:8]!r}"
            )

    def _lines(self) -> Iterator[str]:
        for raw in self._fh:
            self.done += len(raw)
            # surrogateescape keeps bad bytes visible (as lone surrogates) so the row becomes an ENCODING error
            yield raw.decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[NoteInput]:
        width = len(self._header)
        n = 0
        while True:
            n += 1
            try:
                row = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield NoteInput(text="", id=f"row-{n}", error=("BAD_CSV", f"CSV row {n} cannot be read: {exc}"))
                continue
            if not row or (len(row) == 1 and not row[0].strip() and width > 1):
                n -= 1  # a blank line is not a record
                continue
            rec = {k: v for k, v in zip(self._header, row, strict=False) if k in INPUT_COLUMNS}
            if len(row) > width:
                note_id = _safe_id(rec.get("id") or f"row-{n}")
                yield NoteInput(
                    text="", id=note_id, error=("BAD_CSV", f"CSV row {n} has {len(row)} fields, the header has {width}")
                )
                continue
            yield note_from_record(rec, f"row-{n}")

    def close(self) -> None:
        if self._path != "-":
            self._fh.close()


class ParquetSource(Source):
    unit = "rows"

    def __init__(self, path: str, batch_rows: int = 512):
        _, pq = require_pyarrow()
        if path == "-" or not Path(path).is_file():
            raise InputFormatError(f"no such Parquet file: {path}")
        self._pf = pq.ParquetFile(path)
        names = list(self._pf.schema_arrow.names)
        by_lower = {n.lower(): n for n in names}
        if "text" not in by_lower:
            raise InputFormatError(
                f"{path}: Parquet input needs a 'text' column (columns: {', '.join(INPUT_COLUMNS)}); found {names[:8]!r}"
            )
        self._cols = {c: by_lower[c] for c in INPUT_COLUMNS if c in by_lower}
        self.total = self._pf.metadata.num_rows
        self.done = 0
        self._batch_rows = batch_rows

    def __iter__(self) -> Iterator[NoteInput]:
        n = 0
        for batch in self._pf.iter_batches(batch_size=self._batch_rows, columns=list(self._cols.values())):
            cols = {c: batch.column(name).to_pylist() for c, name in self._cols.items()}
            for i in range(batch.num_rows):
                n += 1
                self.done += 1
                yield note_from_record({c: v[i] for c, v in cols.items()}, f"row-{n}")

    def close(self) -> None:
        if hasattr(self._pf, "close"):
            self._pf.close()


def open_source(path: str, fmt: str) -> Source:
    if fmt == "jsonl":
        return JsonlSource(path)
    if fmt == "csv":
        return CsvSource(path)
    if fmt == "parquet":
        return ParquetSource(path)
    raise InputFormatError(f"unknown input format {fmt!r}")


# ---------------------------------------------------------------------------------------------------
# results → rows


def line_code(line: dict[str, Any]) -> str:
    """``64616-50x1``: code, modifiers, units."""
    mods = "".join(f"-{m}" for m in line.get("modifiers") or ())
    return f"{line.get('code')}{mods}x{line.get('units')}"


def flat_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def dumps_result(result: dict[str, Any]) -> str:
    """The result as one JSON line (non-ASCII kept; escaped only if the text holds unpaired surrogates)."""
    s = json.dumps(result, ensure_ascii=False, default=str)
    return s if _utf8_ok(s) else json.dumps(result, default=str)


def flatten(result: dict[str, Any], result_json: str | None = None) -> dict[str, Any]:
    """The CSV/Parquet/Spark row of one result: :data:`FLAT_COLUMNS`."""
    err = result.get("error")
    conf = result.get("confidence")
    fid = flat_id(result.get("id"))
    return {
        "id": fid if fid is None or _utf8_ok(fid) else fid.encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
        "codes": " ".join(line_code(ln) for ln in result.get("lines") or ()),
        "diagnoses": " ".join(str(d.get("code")) for d in result.get("diagnoses") or ()),
        "warnings": " ".join(str(w.get("code")) for w in result.get("warnings") or ()),
        "confidence": None if conf is None else float(conf),
        "route": result.get("route"),
        "error": err.get("code") if isinstance(err, dict) else None,
        "result": dumps_result(result) if result_json is None else result_json,
    }


def encode(result: dict[str, Any]) -> dict[str, Any]:
    """A flat row plus what the summary counts (``_codes``: the code of each line)."""
    row = flatten(result)
    row["_codes"] = [str(ln.get("code")) for ln in result.get("lines") or ()]
    row["_versions"] = result.get("versions")
    return row


# ---------------------------------------------------------------------------------------------------
# sinks


def _fsync(fh: Any) -> None:
    try:
        os.fsync(fh.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class Sink:
    durable = True  # can resume from checkpoint states

    def write(self, rows: list[dict[str, Any]]) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def checkpoint(self) -> dict[str, Any] | None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def abort(self) -> None:
        """Stop without completing (the last checkpoint stays valid for a resume)."""


def _open_append(path: str, state: dict[str, Any] | None) -> BinaryIO:
    """The output file for appending: truncated to the last checkpoint when resuming, else new."""
    if state is None:
        return open(path, "wb")  # noqa: SIM115
    fh = open(path, "r+b")  # noqa: SIM115
    fh.truncate(int(state["offset"]))  # drops a partly written trailing chunk
    fh.seek(0, os.SEEK_END)
    return fh


class JsonlSink(Sink):
    def __init__(self, path: str, state: dict[str, Any] | None = None):
        self._stdout = path == "-"
        self.durable = not self._stdout
        self._fh: BinaryIO = sys.stdout.buffer if self._stdout else _open_append(path, state)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._fh.write("".join(r["result"] + "\n" for r in rows).encode("utf-8"))

    def checkpoint(self) -> dict[str, Any] | None:
        self._fh.flush()
        if self._stdout:
            return None
        _fsync(self._fh)
        return {"offset": self._fh.tell()}

    def finish(self) -> None:
        self._fh.flush()
        if not self._stdout:
            self._fh.close()

    def abort(self) -> None:
        try:
            self.finish()
        except (OSError, ValueError):
            pass


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)
    return v


class CsvSink(Sink):
    def __init__(self, path: str, state: dict[str, Any] | None = None):
        self._stdout = path == "-"
        self.durable = not self._stdout
        self._raw: BinaryIO = sys.stdout.buffer if self._stdout else _open_append(path, state)
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="", write_through=False)
        self._writer = csv.writer(self._text, lineterminator="\n")
        if state is None:
            self._writer.writerow(FLAT_COLUMNS)

    def write(self, rows: list[dict[str, Any]]) -> None:
        self._writer.writerows([_csv_value(r[c]) for c in FLAT_COLUMNS] for r in rows)

    def checkpoint(self) -> dict[str, Any] | None:
        self._text.flush()
        if self._stdout:
            return None
        _fsync(self._raw)
        return {"offset": self._raw.tell()}

    def finish(self) -> None:
        self._text.flush()
        if self._stdout:
            self._text.detach()
        else:
            self._text.close()

    def abort(self) -> None:
        try:
            self.finish()
        except (OSError, ValueError):
            pass


def parquet_schema() -> Any:
    pa, _ = require_pyarrow()
    return pa.schema(
        [
            ("id", pa.string()),
            ("codes", pa.string()),
            ("diagnoses", pa.string()),
            ("warnings", pa.string()),
            ("confidence", pa.float64()),
            ("route", pa.string()),
            ("error", pa.string()),
            ("result", pa.string()),
        ]
    )


class ParquetSink(Sink):
    """Row groups as chunks finish. A Parquet file is unreadable until its footer is written, so the rows go
    into segment files under ``OUT.parts/``: a segment is closed (made durable) at a checkpoint once it is
    ``checkpoint_seconds`` old, and a resume keeps only closed segments. :meth:`finish` renames a single
    segment to ``OUT`` or streams several into it, one row group at a time."""

    def __init__(self, path: str, state: dict[str, Any] | None = None, checkpoint_seconds: float = 30.0):
        self._pa, self._pq = require_pyarrow()
        if path == "-":
            raise InputFormatError("Parquet cannot be written to stdout; give an output file name")
        self._path = Path(path)
        self._parts = Path(f"{path}.parts")
        self._schema = parquet_schema()
        self._every = checkpoint_seconds
        self._writer: Any = None
        self._opened = 0.0
        self._current: str | None = None
        if state is None:
            shutil.rmtree(self._parts, ignore_errors=True)
            self.segments: list[str] = []
        else:
            self.segments = list(state["segments"])
            keep = set(self.segments)
            for p in self._parts.glob("*") if self._parts.is_dir() else ():
                if p.name not in keep:  # a segment whose footer was never written
                    p.unlink()
        self._parts.mkdir(parents=True, exist_ok=True)

    def write(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if self._writer is None:
            self._current = f"seg-{len(self.segments):06d}.parquet"
            self._writer = self._pq.ParquetWriter(self._parts / self._current, self._schema)
            self._opened = time.monotonic()
        table = self._pa.Table.from_pydict({c: [r[c] for r in rows] for c in FLAT_COLUMNS}, schema=self._schema)
        self._writer.write_table(table, row_group_size=len(rows))

    def _close_segment(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with open(self._parts / str(self._current), "rb") as fh:
                _fsync(fh)
            self.segments.append(str(self._current))
            self._writer = None

    def checkpoint(self) -> dict[str, Any] | None:
        if self._writer is None or time.monotonic() - self._opened < self._every:
            return None
        self._close_segment()
        return {"segments": list(self.segments)}

    def finish(self) -> None:
        self._close_segment()
        if len(self.segments) == 1:  # the usual case: one rename, no copy
            os.replace(self._parts / self.segments[0], self._path)
            shutil.rmtree(self._parts, ignore_errors=True)
            return
        tmp = self._path.with_name(self._path.name + ".tmp")
        with self._pq.ParquetWriter(tmp, self._schema) as writer:  # several segments (a resumed run): stream them
            for name in self.segments:
                pf = self._pq.ParquetFile(self._parts / name)
                for i in range(pf.num_row_groups):
                    writer.write_table(pf.read_row_group(i))
                if hasattr(pf, "close"):
                    pf.close()
            if not self.segments:
                writer.write_table(self._schema.empty_table())
        os.replace(tmp, self._path)
        shutil.rmtree(self._parts, ignore_errors=True)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()  # not recorded as a segment: a resume deletes it and redoes its rows
            except Exception:  # noqa: BLE001 - aborting anyway
                pass
            self._writer = None


def open_sink(path: str, fmt: str, state: dict[str, Any] | None = None, checkpoint_seconds: float = 30.0) -> Sink:
    if fmt == "jsonl":
        return JsonlSink(path, state)
    if fmt == "csv":
        return CsvSink(path, state)
    if fmt == "parquet":
        return ParquetSink(path, state, checkpoint_seconds)
    raise InputFormatError(f"unknown output format {fmt!r}")


# ---------------------------------------------------------------------------------------------------
# reading results back (tests, comparisons, Spark output directories)


def _files(path: Path) -> list[Path]:
    if path.is_dir():  # a Spark output directory: part files in order
        return sorted(p for p in path.iterdir() if p.name.startswith("part-"))
    return [path]


def read_results(path: str | os.PathLike[str], fmt: str | None = None) -> Iterator[dict[str, Any]]:
    """Flat rows (:data:`FLAT_COLUMNS`) of a batch or Spark output, streaming."""
    fmt = infer_format(path, fmt)
    p = Path(path)
    if fmt == "jsonl":
        for f in _files(p):
            with f.open(encoding="utf-8") as fh:
                for line in fh:
                    if line.strip():
                        yield flatten(json.loads(line), line.rstrip("\n"))
    elif fmt == "csv":
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        for f in _files(p):
            with f.open(encoding="utf-8", newline="") as fh:
                for rec in csv.DictReader(fh):
                    row: dict[str, Any] = {c: (rec.get(c) or None) for c in FLAT_COLUMNS}
                    row["codes"], row["diagnoses"], row["warnings"] = (
                        rec.get(c) or "" for c in ("codes", "diagnoses", "warnings")
                    )
                    row["confidence"] = None if row["confidence"] is None else float(row["confidence"])
                    yield row
    else:
        _, pq = require_pyarrow()
        for f in _files(p):
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=1024, columns=list(FLAT_COLUMNS)):
                cols = {c: batch.column(c).to_pylist() for c in FLAT_COLUMNS}
                for i in range(batch.num_rows):
                    row = {c: cols[c][i] for c in FLAT_COLUMNS}
                    for c in ("codes", "diagnoses", "warnings"):
                        row[c] = row[c] or ""
                    yield row
