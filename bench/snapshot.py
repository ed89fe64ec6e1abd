"""Refactoring safety net: save the engine's results over a fixed corpus, and compare a later run with them.

    python -m bench.snapshot save /tmp/before.jsonl       # before a speed change
    python -m bench.snapshot compare /tmp/before.jsonl    # after it: exit 1 and the first differences

The corpus is every annotated note (``training_data/notes``, ``heldout/notes``, ``generated/notes``), the
MTSamples notes when present, and the benchmark's varied copies (``bench.corpus``), coded with a pinned
"today". A result is compared whole (lines, diagnoses, warnings, facts, evidence offsets, confidences)
except ``versions`` (the tables digest changes when a table is only reorganised). Confidences are compared
to 12 decimal places: a batched scorer may add the same numbers in another order.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from bench.corpus import build_corpus, find_mtsamples

REPO = Path(__file__).resolve().parents[1]
TODAY = date(2026, 6, 1)


def corpus(n_bench: int) -> list[dict[str, Any]]:
    """Records ``{"id", "text", "date_of_service"}`` in a fixed order."""
    records: list[dict[str, Any]] = []
    for sub in ("notes", "heldout/notes", "generated/notes"):
        for p in sorted((REPO / "training_data" / sub).glob("*.txt")):
            records.append({"id": f"{sub}/{p.stem}", "text": p.read_text(encoding="utf-8"), "date_of_service": None})
    mts = find_mtsamples()
    for p in sorted(mts.glob("*.txt")) if mts else []:
        records.append({"id": f"mtsamples/{p.stem}", "text": p.read_text(encoding="utf-8"), "date_of_service": None})
    if n_bench:
        records += build_corpus(n_bench)[0]
    return records


def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return round(obj, 12)
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items() if k != "versions"}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def run(n_bench: int) -> tuple[list[str], float]:
    """Canonical JSON of every result, and the CPU seconds the engine took."""
    from nlp import load_engine
    from nlp.engine import NoteInput

    engine = load_engine()
    notes = [NoteInput(r["text"], r["id"], r["date_of_service"]) for r in corpus(n_bench)]
    t0 = time.process_time()
    out = [json.dumps(_round(r), sort_keys=True) for r in engine.suggest_many(notes, today=TODAY)]
    return out, time.process_time() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.snapshot", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("save", "compare"))
    ap.add_argument("file", type=Path)
    ap.add_argument("--bench-notes", type=int, default=2000, help="benchmark copies to add (default 2000)")
    ap.add_argument("--show", type=int, default=3, help="differences to print (default 3)")
    args = ap.parse_args(argv)
    rows, cpu = run(args.bench_notes)
    print(f"{len(rows)} notes, {cpu / len(rows) * 1000:.2f} CPU ms/note", file=sys.stderr)
    if args.action == "save":
        args.file.write_text("\n".join(rows) + "\n", encoding="utf-8")
        return 0
    before = args.file.read_text(encoding="utf-8").splitlines()
    if len(before) != len(rows):
        print(f"DIFFERENT: {len(before)} results saved, {len(rows)} now", file=sys.stderr)
        return 1
    diffs = [(a, b) for a, b in zip(before, rows, strict=True) if a != b]
    for a, b in diffs[: args.show]:
        da, db = json.loads(a), json.loads(b)
        keys = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
        print(f"--- {da.get('id')}: differs in {keys}", file=sys.stderr)
        for k in keys[:4]:
            print(f"  before {k}: {json.dumps(da.get(k))[:600]}", file=sys.stderr)
            print(f"  now    {k}: {json.dumps(db.get(k))[:600]}", file=sys.stderr)
    print(f"{'DIFFERENT' if diffs else 'IDENTICAL'}: {len(diffs)} of {len(rows)} results differ", file=sys.stderr)
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
