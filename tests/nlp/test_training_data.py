"""training_data: gold.json is the merge of gold_parts (`make gold`), with a fixed split and valid lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nlp.evaluate import parse_line
from nlp.training.gold import merge, split_of

ROOT = Path(__file__).resolve().parents[2] / "training_data"


def test_gold_json_is_up_to_date_with_the_parts() -> None:
    on_disk = json.loads((ROOT / "gold.json").read_text(encoding="utf-8"))
    assert merge(ROOT) == on_disk, "training_data/gold.json is stale: run `make gold`"


def test_enough_notes_in_every_split(training_gold: dict[str, dict[str, Any]]) -> None:
    assert len(training_gold) >= 150
    splits = {rec["split"] for rec in training_gold.values()}
    assert splits == {"train", "dev", "test"}
    for name, rec in training_gold.items():
        assert rec["split"] == split_of(name)
        assert (ROOT / "notes" / name).is_file(), name


def test_gold_lines_and_facts_are_well_formed(training_gold: dict[str, dict[str, Any]]) -> None:
    for name, rec in training_gold.items():
        assert rec.get("accept"), name
        for alt in rec["accept"]:
            for line in alt:
                parse_line(line)
        text = (ROOT / "notes" / name).read_text(encoding="utf-8")
        facts = rec.get("facts") or {}
        for key in ("injections", "nerves"):
            for item in facts.get(key) or []:
                assert item["text"] in text, f"{name}: fact text {item['text']!r} is not in the note"
                if "start" in item:
                    assert text[item["start"] : item["end"]] == item["text"], name
