"""Batch coding at scale: streaming readers/writers (JSONL, CSV, Parquet), a multi-process runner with
resume and a summary (``btxcode batch``), and a PySpark integration (``btxcode spark``).

    from nlp.batch import run_batch
    summary = run_batch("notes.jsonl", "results.parquet", workers=4)

Parquet needs the ``parquet`` extra (``pip install 'btxcode[parquet]'``), Spark the ``spark`` extra.
"""

from __future__ import annotations

from nlp.batch.io import FLAT_COLUMNS, ExtraMissing, InputFormatError, flatten, infer_format, read_results
from nlp.batch.runner import BatchError, run_batch

__all__ = [
    "FLAT_COLUMNS",
    "BatchError",
    "ExtraMissing",
    "InputFormatError",
    "flatten",
    "infer_format",
    "read_results",
    "run_batch",
]
