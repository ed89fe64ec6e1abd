"""The ``btxcode`` command line: suggest (json/text, file/stdin), batch (JSONL, order, bad rows), eval."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTES = REPO / "tests" / "golden" / "notes"
CERVICAL = NOTES / "g04_cervical_bilateral_emg.txt"


def btxcode(*args: str, stdin: str | bytes | None = None) -> subprocess.CompletedProcess[str]:
    data = stdin.decode("latin-1") if isinstance(stdin, bytes) else stdin
    return subprocess.run(
        [sys.executable, "-m", "nlp.cli", *args],
        input=data,
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def keys(result: dict[str, Any]) -> list[str]:
    return sorted(
        ln["code"] + "".join(f"-{m}" for m in ln["modifiers"]) + f"x{ln['units']}" for ln in result["lines"]
    )


def test_suggest_json() -> None:
    proc = btxcode(
        "suggest", str(CERVICAL), "--date-of-service", "2026-03-10", "--format", "json", "--id", "n1"
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["id"] == "n1"
    assert result["date_of_service"] == "2026-03-10"
    assert keys(result) == ["64616-50x1", "95874x1", "J0585-JWx25", "J0585x175"]


def test_suggest_text_and_stdin() -> None:
    proc = btxcode(
        "suggest",
        "-",
        "--date-of-service",
        "2026-03-10",
        "--format",
        "text",
        stdin=CERVICAL.read_text(encoding="utf-8"),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for code in ("64616", "95874", "J0585", "G24.3", "2026-03-10"):
        assert code in out, out
    assert not out.lstrip().startswith("{")


def test_suggest_payer_option() -> None:
    proc = btxcode(
        "suggest",
        str(CERVICAL),
        "--date-of-service",
        "2026-03-10",
        "--format",
        "json",
        "--payer",
        "medicare+rt_lt_lines",
    )
    assert proc.returncode == 0, proc.stderr
    assert "64616-RTx1" in keys(json.loads(proc.stdout))


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"", "EMPTY"), (b"\x00\x01\x02binary", "BINARY"), (b"Botox \xff\xfe", "ENCODING")],
    ids=["empty", "binary", "encoding"],
)
def test_suggest_bad_file(tmp_path: Path, content: bytes, code: str) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes(content)
    proc = btxcode("suggest", str(note))
    assert proc.returncode != 0
    assert code in proc.stderr
    assert "Traceback" not in proc.stderr


def test_suggest_bad_date_and_missing_file(tmp_path: Path) -> None:
    proc = btxcode("suggest", str(CERVICAL), "--date-of-service", "2026-13-45")
    assert proc.returncode != 0 and "BAD_DATE" in proc.stderr
    proc = btxcode("suggest", str(tmp_path / "missing.txt"))
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    proc = btxcode("suggest", str(CERVICAL), "--payer", "acme")
    assert proc.returncode != 0 and "acme" in proc.stderr and "Traceback" not in proc.stderr


def test_batch_keeps_ids_and_order_and_survives_bad_lines(tmp_path: Path) -> None:
    notes = sorted(NOTES.glob("*.txt"))[:4]
    rows = [
        json.dumps(
            {"id": f"note-{i}", "text": p.read_text(encoding="utf-8"), "date_of_service": "2026-03-10"}
        )
        for i, p in enumerate(notes)
    ]
    rows.insert(2, "{this is not json")
    rows.insert(4, json.dumps({"id": 99, "text": ""}))
    rows.insert(5, json.dumps(["not", "an", "object"]))
    rows.append(json.dumps({"id": "bad-date", "text": "Botox 10 units L SCM", "date_of_service": "tomorrow"}))
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    proc = btxcode("batch", str(src), str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(results) == len(rows)
    ids = [r["id"] for r in results]
    assert ids[:2] == ["note-0", "note-1"] and ids[3] == "note-2" and ids[4] == 99 and ids[6] == "note-3"
    assert ids[-1] == "bad-date"
    assert results[2]["error"]["code"] == "BAD_JSON"
    assert results[4]["error"]["code"] == "EMPTY"
    assert results[5]["error"]
    assert results[-1]["error"]["code"] == "BAD_DATE"
    assert all("error" not in results[i] for i in (0, 1, 3, 6))
    single = json.loads(
        btxcode("suggest", str(notes[0]), "--date-of-service", "2026-03-10", "--format", "json").stdout
    )
    assert results[0]["lines"] == single["lines"]


def test_batch_stdin_stdout() -> None:
    rows = "\n".join(
        json.dumps({"id": i, "text": p.read_text(encoding="utf-8"), "date_of_service": "2026-03-10"})
        for i, p in enumerate(sorted(NOTES.glob("*.txt"))[:3])
    )
    proc = btxcode("batch", "-", "-", stdin=rows + "\n")
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(x)["id"] for x in proc.stdout.splitlines()] == [0, 1, 2]


def test_eval_prints_f1(tmp_path: Path) -> None:
    gold = {
        "g04_cervical_bilateral_emg.txt": {
            "dos": "2026-03-10",
            "accept": [["64616-50x1", "95874x1", "J0585x175", "J0585-JWx25"]],
            "dx": [["G24.3"]],
        },
        "g10_nothing_today.txt": {"dos": "2026-03-10", "accept": [[]], "dx": None},
    }
    ref = tmp_path / "reference.json"
    ref.write_text(json.dumps(gold), encoding="utf-8")
    proc = btxcode("eval", str(ref), str(NOTES))
    assert proc.returncode == 0, proc.stderr
    assert "F1 1.000" in proc.stdout and "exact-claim 1.000" in proc.stdout, proc.stdout
    proc = btxcode("eval", str(ref), str(NOTES), "--format", "json")
    report = json.loads(proc.stdout)
    assert report["notes"] == 2 and report["lines"]["f1"] == 1.0
    assert {n["note"] for n in report["per_note"]} == set(gold)


def test_console_script_installed() -> None:
    exe = Path(sys.executable).with_name("btxcode")
    script = str(exe) if exe.exists() else shutil.which("btxcode")
    if not script:
        pytest.skip("btxcode console script not installed in this environment")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0
    for cmd in ("suggest", "batch", "eval"):
        assert cmd in proc.stdout
