"""``btxcode`` command line: suggest, batch, eval (and serve/train when those parts are installed)."""

from __future__ import annotations

import argparse
import json
import sys
import time
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
    for n, line in enumerate(fh, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            yield NoteInput(text="", id=f"line-{n}", error=("BAD_JSON", f"line {n} is not a JSON object: {exc}"))
            continue
        yield NoteInput(
            text=rec.get("text") if isinstance(rec.get("text"), str) else "",
            id=rec.get("id", f"line-{n}"),
            date_of_service=rec.get("date_of_service"),
            payer=rec.get("payer"),
        )


def cmd_batch(args: argparse.Namespace) -> int:
    engine = _engine(args.payer)
    fin = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8")  # noqa: SIM115
    fout = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")  # noqa: SIM115
    show = sys.stderr.isatty() and not args.quiet
    start = time.perf_counter()
    n = errors = 0
    try:
        for result in engine.suggest_many(_read_jsonl(fin)):
            n += 1
            errors += bool(result.get("error"))
            fout.write(json.dumps(result, ensure_ascii=False) + "\n")
            if show and n % 25 == 0:
                rate = n / max(time.perf_counter() - start, 1e-9)
                sys.stderr.write(f"\r{n} notes  {rate:.0f} notes/s  {errors} errors")
                sys.stderr.flush()
    finally:
        if fin is not sys.stdin:
            fin.close()
        if fout is not sys.stdout:
            fout.close()
    if show:
        sys.stderr.write("\n")
    print(f"btxcode batch: {n} notes, {errors} errors, {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nlp.evaluate import evaluate

    engine = _engine(args.payer)
    report, _ = evaluate(engine, Path(args.gold), Path(args.notes_dir), split=args.split, strip_codes=args.strip_codes)
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
    b = sub.add_parser("batch", help="code a JSONL file of {id, text, date_of_service?} (- for stdin/stdout)")
    b.add_argument("input")
    b.add_argument("output")
    b.add_argument("--payer", default="medicare")
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=cmd_batch)
    e = sub.add_parser("eval", help="score against a reference file (reference.json format)")
    e.add_argument("gold")
    e.add_argument("notes_dir")
    e.add_argument("--split", default=None, help="only notes of this split (train/dev/test)")
    e.add_argument("--payer", default="medicare")
    e.add_argument("--strip-codes", action="store_true", help="remove PROCEDURE CODES: lines before coding")
    e.add_argument("--format", choices=("json", "text"), default="text")
    e.add_argument("--out", help="write the JSON report here")
    e.add_argument("-v", "--verbose", action="store_true")
    e.set_defaults(func=cmd_eval)
    from service.cli import add_service_commands  # serve, keys, feedback (imports nothing heavy)

    add_service_commands(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
