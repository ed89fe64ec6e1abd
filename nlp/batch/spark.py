"""PySpark integration: code a DataFrame of notes into a DataFrame of result rows.

    from nlp.batch.spark import code_dataframe
    results = code_dataframe(notes_df, payer="medicare")          # id, text[, date_of_service, payer]
    results.write.parquet("s3://bucket/coded/")

The result DataFrame has the columns of the CLI's CSV/Parquet output (:data:`nlp.batch.io.FLAT_COLUMNS`):
``id`` (string), ``codes``, ``diagnoses``, ``warnings``, ``confidence``, ``route``, ``error`` and ``result``
(the CLI result object as a JSON string). Rows are coded with ``mapInPandas``: each executor's Python
worker loads the engine once, on its first batch, and keeps it in a module global for every later task
(Spark reuses Python workers by default, ``spark.python.worker.reuse=true``). Executors need btxcode
installed (``pip install 'btxcode[spark]'`` in the executors' Python environment).

``btxcode spark IN OUT [--master local[2]]`` reads notes (JSONL, CSV or Parquet), codes them, writes OUT
(a Spark output directory) and prints the same summary as ``btxcode batch``.

Differences from ``btxcode batch`` by design: ids are strings (a JSON number id ``5`` becomes ``"5"``); a
JSONL line that is not a JSON object becomes an error row without id (Spark does not know line numbers);
the output order follows Spark's partitions.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from nlp.batch.io import FLAT_COLUMNS, ExtraMissing, InputFormatError, infer_format, note_from_record
from nlp.batch.runner import BatchError, code_chunk, format_summary, load_engine_for

OUTPUT_DDL = (
    "id string, codes string, diagnoses string, warnings string, confidence double, route string, error string, result string"
)
INPUT_DDL = "id string, text string, date_of_service string, payer string"
SUB_BATCH = 256  # notes per engine call inside an Arrow batch

_ENGINES: dict[tuple[str, str | None], Any] = {}  # one engine per executor Python process (per payer)


def require_spark() -> Any:
    """The ``pyspark`` module, or :class:`ExtraMissing` telling which extra to install."""
    try:
        import pandas  # noqa: F401
        import pyarrow  # noqa: F401
        import pyspark
    except ImportError as exc:
        raise ExtraMissing(
            f"Spark needs pyspark, pandas and pyarrow ({exc}); install the extra: pip install 'btxcode[spark]' "
            "(and Java 17+ for a local Spark)"
        ) from None
    return pyspark


def _engine(payer: str, model_dir: str | None) -> Any:
    key = (payer, model_dir)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = _ENGINES[key] = load_engine_for(payer, model_dir)
    return engine


def _value(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return None
    return v


def code_batches(batches: Iterator[Any], payer: str, today: str, model_dir: str | None = None) -> Iterator[Any]:
    """The ``mapInPandas`` function: pandas DataFrames of notes (id, text, date_of_service, payer) in,
    pandas DataFrames of result rows out."""
    import pandas as pd

    engine = _engine(payer, model_dir)
    day = date.fromisoformat(today)
    for pdf in batches:
        cols = {c: [_value(v) for v in pdf[c].tolist()] for c in ("id", "text", "date_of_service", "payer")}
        for start in range(0, len(pdf), SUB_BATCH):
            stop = min(start + SUB_BATCH, len(pdf))
            notes = [note_from_record({c: cols[c][i] for c in cols}, None) for i in range(start, stop)]
            rows = code_chunk(engine, notes, day)
            yield pd.DataFrame({c: [r[c] for r in rows] for c in FLAT_COLUMNS}, columns=list(FLAT_COLUMNS))


def code_dataframe(
    df: Any,
    payer: str = "medicare",
    text_col: str = "text",
    id_col: str = "id",
    dos_col: str | None = "date_of_service",
    payer_col: str | None = "payer",
    today: date | str | None = None,
    model_dir: str | None = None,
) -> Any:
    """``df`` (a Spark DataFrame of notes) coded into a DataFrame of result rows (:data:`OUTPUT_DDL`).

    ``id_col`` is cast to string; ``dos_col`` may be a string (YYYY-MM-DD), date or timestamp column;
    ``dos_col``/``payer_col`` may be absent (or None) for none. ``today``: the date assumed when neither
    the row nor the note gives one (default: today on the driver, so every executor agrees).
    """
    require_spark()
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from nlp.loaders import profile

    try:
        profile(payer)
    except KeyError as exc:
        raise BatchError(str(exc.args[0])) from None
    fields = {f.name: f.dataType for f in df.schema.fields}
    if text_col not in fields:
        raise InputFormatError(f"the DataFrame has no {text_col!r} column (columns: {', '.join(fields)})")

    def col(name: str | None, alias: str) -> Any:
        if not name or name not in fields:
            return F.lit(None).cast("string").alias(alias)
        c = F.col(name)
        if isinstance(fields[name], T.TimestampType | T.TimestampNTZType):
            c = F.to_date(c)
        return c.cast("string").alias(alias)

    notes = df.select(col(id_col, "id"), col(text_col, "text"), col(dos_col, "date_of_service"), col(payer_col, "payer"))
    day = today.isoformat() if isinstance(today, date) else (today or date.today().isoformat())
    return notes.mapInPandas(functools.partial(code_batches, payer=payer, today=day, model_dir=model_dir), schema=OUTPUT_DDL)


# ---------------------------------------------------------------------------------------------------
# btxcode spark IN OUT


def _input_format(path: str, given: str | None) -> str:
    if given:
        return infer_format(path, given)
    p = Path(path)
    if p.is_dir():
        names = [q.name for q in p.iterdir() if not q.name.startswith((".", "_"))]
        for fmt, ext in (("parquet", ".parquet"), ("csv", ".csv"), ("jsonl", ".json")):
            if any(n.endswith(ext) or n.endswith(ext + "l") for n in names):
                return fmt
        return "parquet"
    return infer_format(path)


def _local_size(path: str) -> int | None:
    if "://" in path and not path.startswith("file://"):
        return None
    p = Path(path.removeprefix("file://"))
    if p.is_file():
        return p.stat().st_size
    if p.is_dir():
        return sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    return None


def read_notes(spark: Any, path: str, fmt: str) -> Any:
    """A DataFrame of notes (id, text, date_of_service, payer as strings) from JSONL, CSV or Parquet."""
    from pyspark.sql import functions as F

    if fmt == "jsonl":
        return spark.read.schema(INPUT_DDL).json(path)
    if fmt == "csv":
        df = spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(path)
    else:
        df = spark.read.parquet(path)
    lower = {c.lower(): c for c in df.columns}
    if "text" not in lower:
        raise InputFormatError(f"{path}: the input needs a 'text' column (columns: id, text, date_of_service, payer)")
    cols = {c: F.col(lower[c]) if c in lower else F.lit(None).cast("string") for c in ("id", "text", "date_of_service", "payer")}
    if fmt == "csv":  # Spark reads an empty CSV cell as null; btxcode batch reads it as "" (an EMPTY note)
        cols["text"] = F.coalesce(cols["text"], F.lit(""))
    return df.select(*[c.alias(name) for name, c in cols.items()])


def summarize(spark: Any, path: str, fmt: str) -> dict[str, Any]:
    """The batch summary counts, computed by Spark from a written output."""
    from pyspark.sql import functions as F

    if fmt == "jsonl":
        schema = "route string, error struct<code:string>, lines array<struct<code:string>>, warnings array<struct<code:string>>"
        parsed = spark.read.text(path).select(F.from_json("value", schema).alias("r"))
        base = parsed.select(
            F.col("r.error.code").alias("error"),
            F.col("r.route").alias("route"),
            F.transform(F.coalesce("r.warnings", F.array()), lambda w: w["code"]).alias("w"),
            F.transform(F.coalesce("r.lines", F.array()), lambda ln: ln["code"]).alias("c"),
        )
    else:
        out = (
            spark.read.parquet(path)
            if fmt == "parquet"
            else spark.read.option("header", True).option("multiLine", True).option("escape", '"').csv(path)
        )

        def words(c: str) -> Any:
            return F.filter(F.split(F.coalesce(F.col(c), F.lit("")), " "), lambda t: t != "")

        base = out.select(
            F.when(F.col("error") != "", F.col("error")).alias("error"),
            F.col("route"),
            words("warnings").alias("w"),
            F.transform(words("codes"), lambda t: F.regexp_extract(t, r"^([^-x]+)", 1)).alias("c"),
        )
    base = base.cache()
    try:
        tot = base.agg(F.count(F.lit(1)).alias("n"), F.sum(F.size("c")).alias("lines"), F.count("error").alias("errors")).first()
        errors_by = dict(base.where(F.col("error").isNotNull()).groupBy("error").count().collect())
        routed = {(k or "none"): v for k, v in base.groupBy("route").count().collect()}
        warnings_by = dict(base.select(F.explode("w").alias("k")).groupBy("k").count().collect())
        codes = dict(base.select(F.explode("c").alias("k")).groupBy("k").count().collect())
    finally:
        base.unpersist()
    n, errors = int(tot["n"]), int(tot["errors"])
    return {
        "notes": n,
        "coded": n - errors,
        "lines": int(tot["lines"] or 0),
        "errors": errors,
        "errors_by_code": dict(sorted(errors_by.items(), key=lambda kv: -kv[1])),
        "warnings": sum(warnings_by.values()),
        "warnings_by_code": dict(sorted(warnings_by.items(), key=lambda kv: -kv[1])),
        "routed": {"auto": routed.pop("auto", 0), "review": routed.pop("review", 0), **routed},
        "codes": dict(sorted(codes.items())),
    }


def run_spark(args: Any) -> dict[str, Any]:
    """``btxcode spark``: read, code, write, summarize. ``args`` as from the CLI parser."""
    require_spark()
    from pyspark.sql import SparkSession
    from pyspark.sql.utils import AnalysisException

    from nlp.engine import parse_dos

    inp, out = str(args.input), str(args.output)
    in_fmt = _input_format(inp, args.input_format)
    out_fmt = infer_format(out, args.format) if args.format or Path(out).suffix else "parquet"
    if inp == "-" or out == "-":
        raise BatchError("Spark reads and writes files or directories, not stdin/stdout")
    if "://" not in inp and not Path(inp).exists():
        raise InputFormatError(f"no such file or directory: {inp}")
    today = parse_dos(args.today) if args.today else date.today()
    if (args.master or os.environ.get("MASTER") or "local").startswith("local"):
        # local Python workers must run this interpreter (its packages), not whatever `python3` is on PATH;
        # on a cluster, point spark.pyspark.python / PYSPARK_PYTHON at the executors' environment instead
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # a local run needs no network interface
    builder = SparkSession.builder.appName("btxcode")
    if args.master:
        builder = builder.master(args.master)
    builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000").config(
        "spark.ui.showConsoleProgress", "false"
    )
    for kv in args.conf or ():
        key, sep, value = kv.partition("=")
        if not sep:
            raise BatchError(f"--conf needs KEY=VALUE, got {kv!r}")
        builder = builder.config(key.strip(), value.strip())
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    spark = builder.getOrCreate()
    try:
        spark.sparkContext.setLogLevel("WARN")
        cores = spark.sparkContext.defaultParallelism
        target = args.partitions or 4 * cores
        size = _local_size(inp)
        if size and in_fmt in ("jsonl", "parquet"):  # split the input into about `target` byte ranges, keeping order
            split = str(max(256 << 10, size // target + 1))
            spark.conf.set("spark.sql.files.maxPartitionBytes", split)
            spark.conf.set("spark.sql.files.openCostInBytes", split)
        notes = read_notes(spark, inp, in_fmt)
        if notes.rdd.getNumPartitions() < max(1, target // 2):
            notes = notes.repartition(target)
        partitions = notes.rdd.getNumPartitions()
        coded = code_dataframe(notes, payer=args.payer, today=today)
        mode = "overwrite" if args.overwrite else "errorifexists"
        try:
            if out_fmt == "parquet":
                coded.write.mode(mode).parquet(out)
            elif out_fmt == "csv":
                coded.write.mode(mode).option("header", True).option("escape", '"').csv(out)
            else:
                coded.select("result").write.mode(mode).text(out)
        except AnalysisException as exc:
            if "already exists" in str(exc).lower() or "PATH_ALREADY_EXISTS" in str(exc):
                raise BatchError(f"{out} already exists; give --overwrite to replace it") from None
            raise
        elapsed = time.perf_counter() - t0
        counts = summarize(spark, out, out_fmt)
    finally:
        spark.stop()
    summary = {
        "complete": True,
        "input": inp,
        "output": out,
        "input_format": in_fmt,
        "output_format": out_fmt,
        "payer": args.payer,
        "today": today.isoformat(),
        **counts,
        "master": args.master,
        "cores": cores,
        "partitions": partitions,
        "elapsed_s": round(elapsed, 3),
        "notes_per_s": round(counts["notes"] / elapsed, 2) if elapsed > 0 else None,
        "started_at": started,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    summary_file = None
    if "://" not in out or out.startswith("file://"):
        summary_file = f"{out.removeprefix('file://').rstrip('/')}.summary.json"
        Path(summary_file).write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    sys.stderr.write(format_summary(summary, summary_file, command="spark") + "\n")
    return summary


__all__ = ["OUTPUT_DDL", "code_batches", "code_dataframe", "read_notes", "require_spark", "run_spark", "summarize"]


if __name__ == "__main__":  # spark-submit [spark options] nlp/batch/spark.py IN OUT [btxcode spark options]
    from nlp.cli import main

    raise SystemExit(main(["spark", *sys.argv[1:]]))
