"""``btxcode batch`` at scale (issue 5): formats, error rows, order and identity across worker counts,
kill -9 and resume, flat memory, summary and progress."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from nlp.batch import BatchError, ExtraMissing, InputFormatError, read_results, run_batch
from nlp.batch.runner import Progress
from nlp.engine import error_result

pytestmark = pytest.mark.issue(5)

REPO = Path(__file__).resolve().parents[2]
NOTES = sorted((REPO / "training_data" / "notes").glob("*.txt"))
TODAY = date(2026, 1, 15)
DATES = ["2008-06-01", "2013-12-31", "2014-01-02", "2026-03-10", None]


def corpus(n: int, prefix: str = "n") -> Iterator[dict[str, Any]]:
    """n notes cycling training_data/notes, unique ids, dates of service across the code-set eras."""
    texts = [p.read_text(encoding="utf-8") for p in NOTES]
    for i in range(n):
        rec: dict[str, Any] = {"id": f"{prefix}{i:05d}", "text": texts[i % len(texts)]}
        if DATES[i % len(DATES)]:
            rec["date_of_service"] = DATES[i % len(DATES)]
        yield rec


def write_jsonl(path: Path, records: Any) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write((rec if isinstance(rec, str) else json.dumps(rec, ensure_ascii=False)) + "\n")
    return path


def write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "date_of_service", "payer"])
        for r in records:
            w.writerow([r.get("id", ""), r.get("text", ""), r.get("date_of_service") or "", r.get("payer") or ""])
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    pa = pytest.importorskip("pyarrow", reason="Parquet needs the parquet extra (pyarrow)")
    import pyarrow.parquet as pq

    cols = {c: [r.get(c) for r in records] for c in ("id", "text", "date_of_service", "payer")}
    pq.write_table(pa.table(cols, schema=pa.schema([(c, pa.string()) for c in cols])), path)
    return path


def run(engine: Any, src: Path, out: Path, **kw: Any) -> dict[str, Any]:
    """In-process run with the session's engine (no model load)."""
    kw.setdefault("today", TODAY)
    kw.setdefault("stderr", io.StringIO())
    return run_batch(src, out, engine_factory=lambda: engine, **kw)


def ids_of(path: Path) -> list[Any]:
    return [r["id"] for r in read_results(path)]


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


# ---------------------------------------------------------------------------------------------------
# formats

TRICKY = [
    {"id": "q1", "text": 'Botox 100 units, "as before", L SCM 50u, R splenius 50u.\nNo EMG.', "date_of_service": "2026-03-10"},
    {"id": "q2", "text": "PROCEDURE:\r\nDysport 500 U; R gastrocnemius 250 U, R soleus 250 U — e-stim guided.\r\n"},
    {"id": "q3", "text": "Xeomin 50u\tL orbicularis oculi 25 µ?, R 25u; blepharospasm", "payer": "commercial"},
    {"id": "q4", "text": "", "date_of_service": "2026-03-10"},
    {"id": "q5", "text": "Botox 10 units L SCM", "date_of_service": "not-a-date"},
    {"id": "q6", "text": "Botox 10 units L SCM", "payer": "acme"},
]


def _records() -> list[dict[str, Any]]:
    return TRICKY + list(corpus(8))


@pytest.mark.parametrize("in_fmt", ["jsonl", "csv", "parquet"])
@pytest.mark.parametrize("out_fmt", ["jsonl", "csv", "parquet"])
def test_formats_round_trip(engine: Any, tmp_path: Path, in_fmt: str, out_fmt: str) -> None:
    records = _records()
    ref_out = tmp_path / "ref.jsonl"
    run(engine, write_jsonl(tmp_path / "ref_in.jsonl", records), ref_out)
    reference = list(read_results(ref_out))
    writers = {"jsonl": write_jsonl, "csv": write_csv, "parquet": write_parquet}
    if out_fmt == "parquet":
        pytest.importorskip("pyarrow", reason="Parquet needs the parquet extra (pyarrow)")
    src = writers[in_fmt](tmp_path / f"in.{in_fmt}", records)
    out = tmp_path / f"out.{out_fmt}"
    summary = run(engine, src, out)
    rows = list(read_results(out))
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert rows == reference  # every flattened field and the result JSON itself
    assert summary["notes"] == len(records) and summary["errors"] == 3
    assert {r["id"]: r["error"] for r in rows if r["error"]} == {"q4": "EMPTY", "q5": "BAD_DATE", "q6": "BAD_PAYER"}
    # the text of q2 (CRLF) and q3 (tab, non-ASCII) arrived intact: the note hash is the engine's
    by_id = {r["id"]: json.loads(r["result"]) for r in rows}
    assert by_id["q3"]["payer"] == "commercial" and by_id["q1"]["lines"]
    if out_fmt == "csv":  # plain CSV: a header, then one record per note with the flattened key fields
        with out.open(encoding="utf-8", newline="") as fh:
            head = next(csv.reader(fh))
        assert head == ["id", "codes", "diagnoses", "warnings", "confidence", "route", "error", "result"]


def test_flattened_fields_match_the_result(engine: Any, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    run(engine, write_jsonl(tmp_path / "in.jsonl", _records()), out)
    for row in read_results(out):
        res = json.loads(row["result"])
        assert row["id"] == res["id"]
        assert row["codes"].split() == [
            ln["code"] + "".join(f"-{m}" for m in ln["modifiers"]) + f"x{ln['units']}" for ln in res["lines"]
        ]
        assert row["diagnoses"].split() == [d["code"] for d in res["diagnoses"]]
        assert row["warnings"].split() == [w["code"] for w in res["warnings"]]
        assert row["confidence"] == res["confidence"] and row["route"] == res["route"]
        assert row["error"] == (res.get("error") or {}).get("code")


# ---------------------------------------------------------------------------------------------------
# error rows


class Exploding:
    """The real engine, except that any chunk holding a note with BOOM raises."""

    def __init__(self, engine: Any):
        self.engine = engine

    def suggest_many(self, notes: Any, today: date | None = None) -> Any:
        notes = list(notes)
        if any("BOOM" in str(n.text) for n in notes):
            raise RuntimeError("engine exploded")
        return self.engine.suggest_many(notes, today=today)


def test_bad_notes_become_error_rows_with_ids_and_the_run_goes_on(engine: Any, tmp_path: Path) -> None:
    good = list(corpus(3))
    src = tmp_path / "in.jsonl"
    with src.open("wb") as fh:
        lines = [
            json.dumps(good[0]),
            "{not json",
            json.dumps({"id": "empty", "text": "   "}),
            json.dumps({"id": "nodate", "text": "Botox 10 units L SCM", "date_of_service": "13/45/2026"}),
            json.dumps({"id": "nopayer", "text": "Botox 10 units L SCM", "payer": "acme"}),
            json.dumps({"id": "notext"}),
            json.dumps(["a", "list"]),
            json.dumps({"id": "boom", "text": "Botox BOOM 10 units"}),
            json.dumps(good[1]),
        ]
        fh.write(b"\n".join(x.encode() for x in lines) + b"\n")
        fh.write(b'{"id": "latin1", "text": "caf\xe9"}\n')  # not UTF-8
        fh.write((json.dumps(good[2]) + "\n").encode())
    out = tmp_path / "out.jsonl"
    summary = run_batch(src, out, engine_factory=lambda: Exploding(engine), chunk_size=4, today=TODAY, stderr=io.StringIO())
    rows = list(read_results(out))
    assert [r["id"] for r in rows] == [
        "n00000", "line-2", "empty", "nodate", "nopayer", "notext", "line-7", "boom", "n00001", "line-10", "n00002",
    ]  # fmt: skip
    errors = {r["id"]: r["error"] for r in rows}
    assert errors == {
        "n00000": None, "line-2": "BAD_JSON", "empty": "EMPTY", "nodate": "BAD_DATE", "nopayer": "BAD_PAYER",
        "notext": "BAD_RECORD", "line-7": "BAD_JSON", "boom": "INTERNAL", "n00001": None, "line-10": "ENCODING",
        "n00002": None,
    }  # fmt: skip
    assert all(r["codes"] for r in rows if r["id"].startswith("n0"))  # coded after every kind of failure
    for r in rows:
        if r["error"]:
            res = json.loads(r["result"])
            assert res["id"] == r["id"] and res["error"]["message"] and res["route"] == "review"
    assert summary["errors"] == 8 and summary["notes"] == 11
    assert summary["errors_by_code"]["BAD_JSON"] == 2 and summary["errors_by_code"]["INTERNAL"] == 1


def test_csv_bad_rows(engine: Any, tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text(
        "ID,Text,Date_of_service\n"
        'a,"Botox 100 units L SCM 50u R SCM 50u, EMG guided",2026-03-10\n'
        "b,too,many,fields,here\n"
        'c,"",2026-03-10\n'
        ',"Botox 20 units L frontalis",2026-03-10\n',
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    run(engine, src, out)
    rows = list(read_results(out))
    assert [(r["id"], r["error"]) for r in rows] == [("a", None), ("b", "BAD_CSV"), ("c", "EMPTY"), ("row-4", None)]
    with pytest.raises(InputFormatError, match="'text' column"):
        run(engine, _csv(tmp_path / "bad.csv", "id,body\n1,x\n"), out)


def _csv(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------------
# processes: order, identity, kill -9 and resume


@pytest.fixture(scope="module")
def corpus600(tmp_path_factory: pytest.TempPathFactory, engine: Any) -> tuple[Path, list[dict[str, Any]]]:
    """600 notes and their single-process results (flattened rows), computed once."""
    d = tmp_path_factory.mktemp("c600")
    src = write_jsonl(d / "in.jsonl", corpus(600))
    ref = d / "ref.jsonl"
    run(engine, src, ref, chunk_size=50)
    return src, list(read_results(ref))


def test_two_workers_give_identical_results_in_input_order(corpus600: Any, tmp_path: Path) -> None:
    src, reference = corpus600
    out = tmp_path / "w2.jsonl"
    summary = run_batch(src, out, workers=2, chunk_size=25, today=TODAY, stderr=io.StringIO())
    assert summary["workers"] == 2 and summary["notes"] == 600
    rows = list(read_results(out))
    assert [r["id"] for r in rows] == [f"n{i:05d}" for i in range(600)]
    assert rows == reference  # byte-identical result objects


def _poll_marker(marker: Path, proc: subprocess.Popen[bytes], at_least: int, timeout: float = 180) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the batch run ended (rc {proc.returncode}) before it could be killed")
        try:
            done = json.loads(marker.read_text(encoding="utf-8"))["rows_done"]
        except (OSError, ValueError, KeyError):
            done = 0
        if done >= at_least:
            return int(done)
        time.sleep(0.01)
    pytest.fail("no progress marker within the timeout")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)  # kill -9 the run and its worker processes
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_killed_run_resumes_with_exactly_one_row_per_id(corpus600: Any, tmp_path: Path, fmt: str) -> None:
    if fmt == "parquet":
        pytest.importorskip("pyarrow", reason="Parquet needs the parquet extra (pyarrow)")
    src, reference = corpus600
    out = tmp_path / f"out.{fmt}"
    code = (
        "import sys, datetime; from nlp.batch import run_batch; "
        "run_batch(sys.argv[1], sys.argv[2], workers=2, chunk_size=20, today=datetime.date(2026, 1, 15), "
        "checkpoint_seconds=0, progress=False)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(src), str(out)],
        cwd=REPO,
        env=subprocess_env(),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done = _poll_marker(Path(f"{out}.progress.json"), proc, at_least=100)
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    assert 100 <= done < 600
    if fmt == "jsonl":
        with out.open("ab") as fh:  # a chunk torn mid-write
            fh.write(b'{"id": "n00999", "schema_version": "1.')
    resumed = subprocess.run(
        [sys.executable, "-m", "nlp.cli", "batch", str(src), str(out), "--resume", "--workers", "2", "--chunk-size", "20",
         "--today", "2026-01-15", "--quiet"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed after {done:,} notes" in resumed.stderr
    rows = list(read_results(out))
    assert [r["id"] for r in rows] == [f"n{i:05d}" for i in range(600)]  # exactly one row per id, in order
    assert rows == reference
    summary = json.loads(Path(f"{out}.summary.json").read_text(encoding="utf-8"))
    assert summary["notes"] == 600 and summary["resumed_from"] == done and summary["complete"]
    assert not Path(f"{out}.progress.json").exists() and not Path(f"{out}.parts").exists()


def test_resume_checks(engine: Any, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", corpus(30))
    out = tmp_path / "out.jsonl"
    # a finished run: --resume has nothing to do
    run(engine, src, out, chunk_size=10)
    before = out.read_bytes()
    assert run(engine, src, out, resume=True)["notes"] == 30 and out.read_bytes() == before
    # a marker from an interrupted run over other notes: refused, nothing overwritten
    Path(f"{out}.progress.json").write_text(
        json.dumps({"version": 1, "output_format": "jsonl", "payer": "medicare", "today": "2026-01-15",
                    "rows_done": 10, "last_id": "other-9", "sink": {"offset": 100}, "summary": {}}),
        encoding="utf-8",
    )  # fmt: skip
    with pytest.raises(BatchError, match="does not match"):
        run(engine, src, out, resume=True)
    with pytest.raises(BatchError, match="payer"):
        run(engine, src, out, resume=True, payer="commercial")
    assert out.read_bytes() == before
    with pytest.raises(BatchError, match="stdout"):
        run(engine, src, "-", resume=True)


# ---------------------------------------------------------------------------------------------------
# memory, summary, progress, extras


class StubEngine:
    """Cheap stand-in that returns a result of realistic shape (the runner's memory is what is measured)."""

    def suggest_many(self, notes: Any, today: date | None = None) -> Iterator[dict[str, Any]]:
        for n in notes:
            if n.error:
                yield error_result(n.id, *n.error)
                continue
            yield {
                "id": n.id,
                "lines": [{"system": "CPT", "code": "64616", "units": 1, "modifiers": ["50"]}],
                "diagnoses": [{"code": "G24.3"}],
                "warnings": [{"code": "DOS_NOT_DOCUMENTED"}],
                "confidence": 0.9,
                "route": "auto",
                "facts": {"text": n.text[:400]},
            }


def _peak(src: Path, out: Path) -> int:
    tracemalloc.start()
    try:
        run_batch(src, out, engine_factory=StubEngine, today=TODAY, stderr=io.StringIO())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_input_size(tmp_path: Path) -> None:
    small = write_jsonl(tmp_path / "2k.jsonl", corpus(2_000))
    large = write_jsonl(tmp_path / "10k.jsonl", corpus(10_000))
    assert large.stat().st_size > 8_000_000  # holding the whole input would show as > 8 MB
    p_small = _peak(small, tmp_path / "2k.out.jsonl")
    p_large = _peak(large, tmp_path / "10k.out.jsonl")
    assert p_large < p_small * 1.25 + 1_000_000, (p_small, p_large)


def test_summary_counts_what_was_written(engine: Any, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [*_records(), *corpus(20, prefix="m")])
    out = tmp_path / "out.jsonl"
    err = io.StringIO()
    summary = run(engine, src, out, stderr=err)
    saved = json.loads(Path(f"{out}.summary.json").read_text(encoding="utf-8"))
    assert saved == summary and saved["complete"]
    rows = list(read_results(out))
    results = [json.loads(r["result"]) for r in rows]
    assert summary["notes"] == len(rows) and summary["lines"] == sum(len(r["lines"]) for r in results)
    assert summary["errors"] == sum(1 for r in rows if r["error"])
    assert sum(summary["warnings_by_code"].values()) == sum(len(r["warnings"]) for r in results)
    assert sum(summary["routed"].values()) == len(rows) and set(summary["routed"]) >= {"auto", "review"}
    assert summary["routed"].get("review", 0) == sum(1 for r in results if r["route"] == "review")
    assert sum(summary["codes"].values()) == summary["lines"]
    assert f"{len(rows)} notes" in err.getvalue() and "routed auto" in err.getvalue()


class _Src:
    total = 1000
    done = 100
    unit = "bytes"


def test_progress_line_shows_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = Progress(stream, _Src(), 0, every=0)  # type: ignore[arg-type]
    bar.update(10, 0, 200)  # the first chunk: no ETA yet (engine start-up would skew it)
    assert "ETA" not in stream.getvalue() and "20.0%" in stream.getvalue()
    time.sleep(0.01)
    bar.update(50, 1, 500)
    line = stream.getvalue().rsplit("\r", 1)[1]
    assert line.startswith("50 notes") and "50.0%" in line and "notes/s" in line and "ETA 0:00:0" in line
    assert "1 errors" in line


def test_missing_parquet_extra_says_which_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    src = write_jsonl(tmp_path / "in.jsonl", corpus(2))
    with pytest.raises(ExtraMissing, match=r"pip install 'btxcode\[parquet\]'"):
        run_batch(src, tmp_path / "out.parquet", engine_factory=StubEngine)
    monkeypatch.setitem(sys.modules, "pyspark", None)
    from nlp.batch.spark import require_spark

    with pytest.raises(ExtraMissing, match=r"pip install 'btxcode\[spark\]'"):
        require_spark()


def test_cli_batch_csv_and_clear_errors(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", [*corpus(3), {"id": "e", "text": ""}])
    out = tmp_path / "out.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "nlp.cli", "batch", str(src), str(out), "--workers", "1", "--today", "2026-01-15"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in read_results(out)] == ["n00000", "n00001", "n00002", "e"]
    assert "4 notes" in proc.stderr and Path(f"{out}.summary.json").is_file()
    code = "import sys; sys.modules['pyarrow'] = None; from nlp.cli import main; sys.exit(main(sys.argv[1:]))"
    for args, message in [
        ([str(src), str(tmp_path / "o.parquet")], "btxcode[parquet]"),
        ([str(tmp_path / "missing.jsonl"), str(out)], "no such file"),
        ([str(src), str(out), "--payer", "acme"], "acme"),
        ([str(src), str(out), "--chunk-size", "0"], "chunk-size"),
    ]:
        proc = subprocess.run(
            [sys.executable, "-c", code, "batch", *args],
            cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
