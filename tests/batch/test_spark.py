"""PySpark integration (issue 5): ``btxcode spark`` in local mode on 10,000 notes gives exactly the results
of the single-process ``btxcode batch``; ``code_dataframe`` on a DataFrame with other column names/types.

Needs the ``spark`` extra (pyspark, pandas, pyarrow) and Java 17+; skipped with the reason otherwise.
About 2 minutes on 2 cores (half of it the single-process reference run).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from nlp.batch import FLAT_COLUMNS, BatchError, read_results, run_batch
from nlp.batch.io import flatten
from nlp.engine import NoteInput

REPO = Path(__file__).resolve().parents[2]
NOTES = sorted((REPO / "training_data" / "notes").glob("*.txt"))
TODAY = date(2026, 1, 15)
DATES = ["2008-06-01", "2013-12-31", "2014-01-02", "2026-03-10", None]


def _why_no_spark() -> str | None:
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyspark
    except ImportError as exc:
        return f"pyspark/pandas/pyarrow not installed ({exc}); pip install 'btxcode[spark]'"
    java = shutil.which("java") or (os.environ.get("JAVA_HOME") and str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if not java or not Path(java).exists():
        return "java not found (Spark needs a JDK/JRE 17+ on PATH or JAVA_HOME)"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60, check=False).stderr
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"java does not run: {exc}"
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    major = int(m.group(1)) if m else 0
    major = int(m.group(2) or 0) if major == 1 and m else major  # "1.8.0" is Java 8
    need = 17 if int(pyspark.__version__.split(".")[0]) >= 4 else 8
    if major < need:
        return f"pyspark {pyspark.__version__} needs Java {need}+, found {out.splitlines()[0] if out else 'unknown'}"
    return None


WHY = _why_no_spark()
pytestmark = [pytest.mark.issue(5), pytest.mark.skipif(WHY is not None, reason=f"Spark test skipped: {WHY}")]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), e.get("PYTHONPATH", "")) if p)
    e.setdefault("PYSPARK_PYTHON", sys.executable)
    e.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return e


def notes_10k() -> list[dict[str, Any]]:
    texts = [p.read_text(encoding="utf-8") for p in NOTES]
    recs: list[dict[str, Any]] = []
    for i in range(10_000):
        rec: dict[str, Any] = {"id": f"n{i:05d}", "text": texts[i % len(texts)]}
        if DATES[i % len(DATES)]:
            rec["date_of_service"] = DATES[i % len(DATES)]
        if i % 7 == 3:
            rec["payer"] = "commercial"
        recs.append(rec)
    recs[10:10] = [
        {"id": "bad-empty", "text": "  "},
        {"id": "bad-date", "text": "Botox 10 units L SCM", "date_of_service": "2026-02-30"},
        {"id": "bad-payer", "text": "Botox 10 units L SCM", "payer": "acme"},
        {"id": "bad-notext"},
    ]
    return recs


def test_spark_local_equals_single_process_batch_on_10k_notes(engine: Any, tmp_path: Path, record_property: Any) -> None:
    records = notes_10k()
    src = tmp_path / "notes.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

    batch_out = tmp_path / "batch.jsonl"
    batch = run_batch(src, batch_out, engine_factory=lambda: engine, today=TODAY, stderr=io.StringIO())

    spark_out = tmp_path / "spark.parquet"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "nlp.cli", "spark", str(src), str(spark_out), "--master", "local[2]", "--today", TODAY.isoformat()],
        cwd=REPO, env=env(), capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    spark_s = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    record_property("spark_local2_seconds", round(spark_s, 1))  # in the junit XML
    record_property("batch_1process_seconds", batch["elapsed_s"])

    want = {r["id"]: r for r in read_results(batch_out)}
    got = {r["id"]: r for r in read_results(spark_out)}
    assert len(got) == len(records) and set(got) == set(want) == {r["id"] for r in records}
    diff = [i for i in want if want[i] != got[i]]
    if diff:
        a, b = json.loads(want[diff[0]]["result"]), json.loads(got[diff[0]]["result"])
        keys = [k for k in a if a[k] != b.get(k)]
        pytest.fail(f"{len(diff)} notes differ, e.g. {diff[0]}: fields {keys}")
    assert {i for i, r in got.items() if r["error"]} == {"bad-empty", "bad-date", "bad-payer", "bad-notext"}

    summary = json.loads(Path(f"{spark_out}.summary.json").read_text(encoding="utf-8"))
    for key in ("notes", "coded", "lines", "errors", "errors_by_code", "warnings_by_code", "routed", "codes"):
        assert summary[key] == batch[key], key


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from pyspark.sql import SparkSession

    for k, v in env().items():
        if k in ("PYTHONPATH", "PYSPARK_PYTHON", "SPARK_LOCAL_IP"):
            os.environ[k] = v
    session = (
        SparkSession.builder.master("local[2]")
        .appName("btxcode-test")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_code_dataframe_with_other_columns_and_types(spark: Any, engine: Any, tmp_path: Path) -> None:
    from nlp.batch.spark import OUTPUT_DDL, code_dataframe, run_spark

    texts = [p.read_text(encoding="utf-8") for p in NOTES[:30]]
    dos = [date(2013, 12, 31), date(2026, 3, 10), None]
    rows = [(1000 + i, t, dos[i % 3], "commercial" if i % 4 == 0 else None) for i, t in enumerate(texts)]
    df = spark.createDataFrame(rows, "note_no long, body string, seen date, plan string").repartition(3)
    coded = code_dataframe(df, text_col="body", id_col="note_no", dos_col="seen", payer_col="plan", today=TODAY)
    assert coded.schema.simpleString() == f"struct<{OUTPUT_DDL.replace(' ', ':').replace(',:', ',')}>"
    assert tuple(coded.columns) == FLAT_COLUMNS
    got = {r["id"]: r.asDict() for r in coded.collect()}
    notes = [NoteInput(t, str(n), d.isoformat() if d else None, p) for n, t, d, p in rows]
    want = {r["id"]: flatten(r) for r in engine.suggest_many(notes, today=TODAY)}
    assert got == want

    # btxcode spark refuses to overwrite an existing output unless told to
    out = tmp_path / "exists.parquet"
    out.mkdir()
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": "a", "text": texts[0]}) + "\n", encoding="utf-8")
    args = argparse.Namespace(
        input=str(src), output=str(out), master=None, payer="medicare", partitions=None, format=None,
        input_format=None, today=None, overwrite=False, conf=[],
    )  # fmt: skip
    with pytest.raises(BatchError, match="already exists"):
        run_spark(args)
