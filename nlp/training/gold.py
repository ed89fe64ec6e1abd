"""Merge ``training_data/gold_parts/*.json`` into ``training_data/gold.json`` with a fixed split.

The split comes from the first byte of the SHA-256 of the note id (60 % train, 20 % dev, 20 % test),
so it never changes when notes are added. Fact texts are located in the note to add offsets.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any


def split_of(note_id: str) -> str:
    b = hashlib.sha256(note_id.encode("utf-8")).digest()[0]
    return "train" if b < 154 else ("dev" if b < 205 else "test")


def _locate(text: str, facts: dict[str, Any]) -> dict[str, Any]:
    pos = 0
    for key in ("injections", "nerves"):
        for item in facts.get(key) or []:
            t = item.get("text")
            if not t:
                continue
            i = text.find(t, pos)
            if i < 0:
                i = text.find(t)
            if i >= 0:
                item["start"], item["end"] = i, i + len(t)
                pos = i
    return facts


def merge(root: Path) -> dict[str, Any]:
    merged: dict[str, Any] = {
        "_format": "btxcode gold: see training_data/README.md. Keys are note file names under notes/.",
    }
    for part in sorted((root / "gold_parts").glob("*.json")):
        data = json.loads(part.read_text(encoding="utf-8"))
        for name, rec in sorted(data.items()):
            if name.startswith("_"):
                continue
            note = root / "notes" / name
            if not note.exists():
                raise SystemExit(f"{part.name}: {name} has no note file")
            rec = dict(rec)
            rec["split"] = split_of(name)
            rec["author"] = part.stem
            if isinstance(rec.get("facts"), dict):
                rec["facts"] = _locate(note.read_text(encoding="utf-8"), rec["facts"])
            merged[name] = rec
    return merged


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", nargs="?", default="training_data", type=Path)
    args = ap.parse_args(argv)
    merged = merge(args.root)
    out = args.root / "gold.json"
    out.write_text(json.dumps(merged, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    counts: dict[str, int] = {}
    for k, v in merged.items():
        if not k.startswith("_"):
            counts[v["split"]] = counts.get(v["split"], 0) + 1
    print(f"wrote {out}: {counts}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
