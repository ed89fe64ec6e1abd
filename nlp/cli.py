"""``btxcode`` command line: suggest, batch, eval (and serve/train when those parts are installed)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from nlp.engine import MAX_NOTE_BYTES, InputError, NoteInput, decode_note, parse_dos


def _engine(payer: str) -> Any:
    from nlp import load_engine

    try:
        return load_engine(payer=payer)
    except KeyError as exc:
        raise SystemExit(f"btxcode: {exc.args[0]}") from None


def format_text(result: dict[str, Any]) -> str:
    """A readable table of one result, for a person at a terminal."""
    out = [
        f"Date of service {result.get('date_of_service')} ({result.get('code_set', {}).get('diagnoses', '')}), "
        f"payer {result.get('payer')}"
    ]
    if result.get("error"):
        return f"error {result['error']['code']}: {result['error']['message']}"
    rows = [("System", "Code", "Mods", "Units", "Conf", "Rule", "Reason")]
    for ln in result["lines"]:
        conf = "" if ln.get("confidence") is None else f"{ln['confidence']:.2f}"
        rows.append((ln["system"], ln["code"], ",".join(ln["modifiers"]), str(ln["units"]), conf, ln["rule"], ln["reason"]))
    for d in result["diagnoses"]:
        conf = "" if d.get("confidence") is None else f"{d['confidence']:.2f}"
        rows.append((d["system"], d["code"], "", "", conf, d["rule"], d["description"]))
    if len(rows) == 1:
        out.append("No codes suggested.")
    else:
        widths = [min(max(len(r[i]) for r in rows), 60) for i in range(len(rows[0]) - 1)]
        for r in rows:
            out.append("  ".join(c.ljust(w)[:w] for c, w in zip(r[:-1], widths, strict=False)) + "  " + r[-1])
    if result.get("confidence") is not None:
        out.append(f"Claim confidence {result['confidence']:.2f}, route: {result['route']}")
    for w in result["warnings"]:
        out.append(f"[{w['severity']}] {w['code']} ({w['id']}): {w['message']}")
    return "\n".join(out)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read(MAX_NOTE_BYTES + 1)
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"btxcode: no such file: {path}")
    with p.open("rb") as fh:
        return fh.read(MAX_NOTE_BYTES + 1)


def cmd_suggest(args: argparse.Namespace) -> int:
    try:
        text = decode_note(_read_input(args.file))
        parse_dos(args.date_of_service)
    except InputError as exc:
        print(f"btxcode: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    engine = _engine(args.payer)
    result = engine.suggest(text, date_of_service=args.date_of_service, note_id=args.id)
    if args.format == "json":
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(format_text(result))
    return 0


def _read_jsonl(fh: TextIO) -> Iterator[NoteInput]:
    """NoteInputs from a JSONL file (kept for callers of the old name; the reader is nlp.batch.io.read_jsonl)."""
    from nlp.batch.io import read_jsonl

    return read_jsonl(fh)


def _run_batch_command(func: Any, args: argparse.Namespace, command: str) -> int:
    """Run ``func(args)`` (nlp.batch); print a clear one-line error instead of a traceback."""
    from nlp.batch import BatchError, ExtraMissing, InputFormatError

    try:
        func(args)
    except InputError as exc:
        print(f"btxcode {command}: {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except (BatchError, ExtraMissing, InputFormatError) as exc:
        print(f"btxcode {command}: {exc}", file=sys.stderr)
        return 130 if str(exc).startswith("interrupted") else 2
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    from nlp.batch.runner import run_batch

    def run(a: argparse.Namespace) -> None:
        run_batch(
            a.input,
            a.output,
            workers=a.workers,
            chunk_size=a.chunk_size,
            resume=a.resume,
            input_format=a.input_format,
            output_format=a.format,
            payer=a.payer,
            today=parse_dos(a.today) if a.today else None,
            progress=False if a.quiet else None,
        )

    return _run_batch_command(run, args, "batch")


def cmd_spark(args: argparse.Namespace) -> int:
    from nlp.batch.spark import run_spark

    return _run_batch_command(run_spark, args, "spark")


def cmd_eval(args: argparse.Namespace) -> int:
    from nlp.evaluate import evaluate

    engine = _engine(args.payer)
    report, results = evaluate(engine, Path(args.gold), Path(args.notes_dir), split=args.split, strip_codes=args.strip_codes)
    if args.calibration_report:
        from nlp.scoring.report import attach_calibration

        print(attach_calibration(report, results, args.gold, args.calibration_report), file=sys.stderr)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return 0
    ln, dx = report["lines"], report["diagnoses"]
    print(
        f"notes {report['notes']}  lines P {ln['precision']:.3f} R {ln['recall']:.3f} F1 {ln['f1']:.3f} "
        f"(tp {ln['tp']} fp {ln['fp']} fn {ln['fn']})  exact-claim {report['exact_claim_rate']:.3f}  "
        f"dx P {dx['precision']:.3f} R {dx['recall']:.3f} F1 {dx['f1']:.3f}"
    )
    for note in report["per_note"]:
        if note["missing"] or note["extra"] or args.verbose:
            print(
                f"  {note['note']}: missing {note['missing']} extra {note['extra']}"
                f"  dx {note['dx_predicted']} vs {note['dx_expected']}"
            )
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="btxcode", description="Suggest billing codes for botulinum-toxin procedure notes.")
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("suggest", help="code one note (FILE or - for stdin)")
    s.add_argument("file")
    s.add_argument("--date-of-service", dest="date_of_service", help="YYYY-MM-DD (default: the note's date, else today)")
    s.add_argument("--payer", default="medicare", help="payer profile, e.g. medicare, commercial, medicare+rt_lt_lines")
    s.add_argument("--format", choices=("json", "text"), default="text")
    s.add_argument("--id", default=None, help="id to put in the result")
    s.set_defaults(func=cmd_suggest)
    b = sub.add_parser("batch", help="code many notes: JSONL, CSV or Parquet in and out (- for stdin/stdout JSONL)")
    b.add_argument("input", help="notes: .jsonl (id, text, date_of_service?, payer?), .csv (same columns) or .parquet")
    b.add_argument("output", help="results: .jsonl (result objects), .csv or .parquet (id, flattened fields, result JSON)")
    b.add_argument("--payer", default="medicare")
    b.add_argument("--workers", type=int, default=None, help="worker processes (default: one per CPU; 1: in this process)")
    b.add_argument("--chunk-size", dest="chunk_size", type=int, default=250, help="notes per chunk (default 250)")
    b.add_argument("--resume", action="store_true", help="continue an interrupted run into the same OUT")
    b.add_argument("--format", choices=("jsonl", "csv", "parquet"), default=None, help="output format (default: from OUT)")
    b.add_argument(
        "--input-format",
        dest="input_format",
        choices=("jsonl", "csv", "parquet"),
        default=None,
        help="input format (default: from IN)",
    )
    b.add_argument("--today", default=None, help="YYYY-MM-DD to assume when neither record nor note gives a date")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_batch)
    k = sub.add_parser("spark", help="code notes with PySpark (needs the spark extra): IN/OUT .jsonl, .csv or .parquet")
    k.add_argument("input", help="notes (file or directory): .jsonl, .csv or .parquet with id, text, date_of_service?, payer?")
    k.add_argument(
        "output", help="result directory: .parquet or .csv (id, flattened fields, result JSON), .jsonl (result objects)"
    )
    k.add_argument("--master", default=None, help="Spark master (default: local[*], or the one spark-submit gives)")
    k.add_argument("--payer", default="medicare")
    k.add_argument("--partitions", type=int, default=None, help="input partitions (default: 4 per core)")
    k.add_argument("--format", choices=("jsonl", "csv", "parquet"), default=None, help="output format (default: from OUT)")
    k.add_argument("--input-format", dest="input_format", choices=("jsonl", "csv", "parquet"), default=None)
    k.add_argument("--today", default=None, help="YYYY-MM-DD to assume when neither record nor note gives a date")
    k.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    k.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE", help="extra Spark configuration")
    k.set_defaults(func=cmd_spark)
    e = sub.add_parser("eval", help="score against a reference file (reference.json format)")
    e.add_argument("gold")
    e.add_argument("notes_dir")
    e.add_argument("--split", default=None, help="only notes of this split (train/dev/test)")
    e.add_argument("--payer", default="medicare")
    e.add_argument("--strip-codes", action="store_true", help="remove PROCEDURE CODES: lines before coding")
    e.add_argument("--format", choices=("json", "text"), default="text")
    e.add_argument("--out", help="write the JSON report here")
    e.add_argument("-v", "--verbose", action="store_true")
    e.add_argument(
        "--calibration-report",
        metavar="DIR",
        help="write Brier/ECE, a reliability diagram and the accuracy/coverage curve (PNG) to DIR",
    )
    e.set_defaults(func=cmd_eval)
    from service.cli import add_service_commands  # serve, keys, feedback (imports nothing heavy)

    add_service_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
