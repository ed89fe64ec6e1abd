"""Rule tables (nlp/tables): every file loads, every row is sourced, validity ranges never overlap (P3-P6)."""

from __future__ import annotations

import re
import string
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from nlp.loaders import Row, compiled, split, table

NLP_SRC = Path(__file__).resolve().parents[2] / "nlp"


def _walk(node: Any, prefix: str = "") -> Iterator[str]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.is_dir():
            yield from _walk(child, f"{prefix}{child.name}/")
        else:
            yield f"{prefix}{child.name}"


TABLE_FILES = [p for p in _walk(resources.files("nlp").joinpath("tables")) if not p.startswith("__")]
CSV_FILES = [p for p in TABLE_FILES if p.endswith(".csv")]


def _d(value: str, default: date) -> date:
    return date.fromisoformat(value) if value else default


def _overlaps(rows: Iterable[Row], key: tuple[str, ...]) -> list[str]:
    groups: dict[tuple[str, ...], list[Row]] = defaultdict(list)
    for r in rows:
        groups[tuple(r.get(k, "") for k in key)].append(r)
    found = []
    for k, members in groups.items():
        spans = sorted(
            (_d(r.get("valid_from", ""), date.min), _d(r.get("valid_to", ""), date.max), r) for r in members
        )
        for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:], strict=False):
            if start_b <= end_a:
                ident = a.get("rule_id") or a.get("code")
                found.append(f"{k}: {ident} and {b.get('rule_id') or b.get('code')}")
    return found


def test_tables_ship_with_the_package() -> None:
    for name in ("sources.csv", "rules/chemodenervation.csv", "codes/cpt.csv", "profiles/medicare.toml"):
        assert name in TABLE_FILES


@pytest.mark.parametrize("name", CSV_FILES)
def test_every_csv_loads(name: str) -> None:
    rows = table(name)
    assert rows, f"{name} is empty"
    header = set(rows[0])
    assert all(set(r) == header for r in rows)


@pytest.mark.parametrize("name", CSV_FILES)
def test_every_csv_is_utf8_lf_without_bom(name: str) -> None:
    raw = resources.files("nlp").joinpath("tables", name).read_bytes()
    raw.decode("utf-8")
    assert not raw.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in raw


@pytest.mark.parametrize("name", [n for n in CSV_FILES if "source_id" in table(n)[0]])
def test_every_row_names_a_known_source(name: str) -> None:
    known = {r["source_id"] for r in table("sources.csv")}
    for i, row in enumerate(table(name), start=2):
        assert row["source_id"], f"{name}:{i}: no source_id"
        for sid in split(row["source_id"]):
            assert sid in known, f"{name}:{i}: source {sid!r} is not in sources.csv"


def test_sources_are_complete_and_unique() -> None:
    rows = table("sources.csv")
    ids = [r["source_id"] for r in rows]
    assert len(ids) == len(set(ids))
    for r in rows:
        assert r["title"] and r["publisher"], r["source_id"]


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("rules/chemodenervation.csv", ("region", "role", "muscles_min", "muscles_max", "option")),
        ("codes/icd.csv", ("concept", "qualifiers", "system")),
        ("codes/hcpcs.csv", ("product",)),
        ("codes/cpt.csv", ("code",)),
        ("rules/guidance.csv", ("method", "option")),
        ("rules/drug.csv", ("kind", "option")),
    ],
)
def test_no_overlapping_validity(name: str, key: tuple[str, ...]) -> None:
    assert not _overlaps(table(name), key), f"{name}: rows with the same key overlap in time"


@pytest.mark.parametrize("name", [n for n in CSV_FILES if "valid_from" in table(n)[0]])
def test_validity_ranges_are_ordered(name: str) -> None:
    for row in table(name):
        start, end = _d(row["valid_from"], date.min), _d(row.get("valid_to", ""), date.max)
        assert start <= end, (name, row)


@pytest.mark.parametrize("name", [n for n in CSV_FILES if "rule_id" in table(n)[0]])
def test_rule_ids_are_unique(name: str) -> None:
    ids = [r["rule_id"] for r in table(name)]
    assert len(ids) == len(set(ids)), {i for i in ids if ids.count(i) > 1}


def test_rule_ids_are_unique_across_tables() -> None:
    owner: dict[str, str] = {}
    for name in CSV_FILES:
        rows = table(name)
        if "rule_id" not in rows[0]:
            continue
        for r in rows:
            assert r["rule_id"] not in owner or owner[r["rule_id"]] == name, (
                r["rule_id"],
                owner.get(r["rule_id"]),
                name,
            )
            owner[r["rule_id"]] = name


def test_cpt_rows_summarise_in_our_own_words() -> None:
    for row in table("codes/cpt.csv"):
        assert re.fullmatch(r"\d{5}", row["code"]), row
        assert row["summary_own_words"].strip(), f"{row['code']}: no summary"
        assert row["kind"] in {"primary", "addon", "unlisted"}, row


def _cpt_active(code: str, on: date) -> bool:
    return any(
        r["code"] == code and _d(r["valid_from"], date.min) <= on <= _d(r["valid_to"], date.max)
        for r in table("codes/cpt.csv")
    )


@pytest.mark.parametrize(
    "row", [pytest.param(r, id=r["rule_id"]) for r in table("rules/chemodenervation.csv")]
)
def test_chemodenervation_row_codes_exist_when_the_row_is_in_force(row: Row) -> None:
    start = _d(row["valid_from"], date.min)
    end = _d(row["valid_to"], date(2026, 12, 31))
    for day in (max(start, date(2000, 1, 1)), min(end, date(2026, 12, 31))):
        assert _cpt_active(row["code"], day), f"{row['rule_id']}: {row['code']} not in codes/cpt.csv on {day}"
    assert row["reason"].strip()


@pytest.mark.parametrize("row", [pytest.param(r, id=r["rule_id"]) for r in table("rules/guidance.csv")])
def test_guidance_row_codes_exist(row: Row) -> None:
    assert _cpt_active(row["code"], _d(row["valid_from"], date.min)), row


def test_addon_table_codes_exist() -> None:
    codes = {r["code"] for r in table("codes/cpt.csv")}
    for row in table("rules/addons.csv"):
        assert row["addon"] in codes, row
        for primary in split(row["primaries"]):
            assert primary in codes, (row["addon"], primary)
    for row in table("edits/ptp.csv"):
        assert row["modifier_indicator"] in {"0", "1", "9"}, row


def test_hcpcs_rows() -> None:
    products = {r["product_id"] for r in table("lexicon/products.csv")}
    for row in table("codes/hcpcs.csv"):
        assert re.fullmatch(r"[A-Z]\d{4}", row["code"]), row
        assert row["product"] == "*" or row["product"] in products, row
        assert float(row["units_per_billing_unit"]) >= 0


def test_billing_units_per_product_follow_c9() -> None:
    per = {r["code"]: float(r["units_per_billing_unit"]) for r in table("codes/hcpcs.csv")}
    assert per["J0585"] == 1 and per["J0586"] == 5 and per["J0587"] == 100 and per["J0588"] == 1
    assert per["J0589"] == 1


@pytest.mark.parametrize("name", [n for n in CSV_FILES if "pattern" in table(n)[0]])
def test_patterns_compile(name: str) -> None:
    assert len(compiled(name)) == len(table(name))


# ---------------------------------------------------------------------------------------------------
# diagnoses


def test_icd10_codes_are_in_the_official_code_set() -> None:
    icd = pytest.importorskip("simple_icd_10_cm")
    fy2026 = date(2025, 10, 1)
    for row in table("codes/icd.csv"):
        if row["system"] != "ICD-10-CM":
            continue
        code = row["code"]
        assert icd.is_valid_item(code), f"{row['rule_id']}: {code} is not in ICD-10-CM"
        if not row["valid_to"] or _d(row["valid_to"], date.max) >= fy2026:
            assert icd.is_leaf(code), f"{row['rule_id']}: {code} is not billable (has children) in FY2026"


def test_icd9_codes_are_in_the_shipped_code_set() -> None:
    icd9 = {r["code"] for r in table("codes/icd9cm.csv")}
    for row in table("codes/icd.csv"):
        if row["system"] == "ICD-9-CM":
            assert row["code"] in icd9, f"{row['rule_id']}: {row['code']} is not in codes/icd9cm.csv"
            assert _d(row["valid_from"], date.min) < date(2015, 10, 1), row["rule_id"]
        else:
            assert row["system"] == "ICD-10-CM", row
            assert _d(row["valid_from"], date.min) >= date(2015, 10, 1), row["rule_id"]


def test_ms_code_follows_fy2026() -> None:
    rows = [r for r in table("codes/icd.csv") if r["system"] == "ICD-10-CM" and r["code"].startswith("G35")]
    plain = [r for r in rows if r["code"] == "G35"]
    assert plain and all(
        r["valid_to"] and date.fromisoformat(r["valid_to"]) < date(2025, 10, 1) for r in plain
    )
    assert any(r["code"] == "G35.A" for r in rows)


# ---------------------------------------------------------------------------------------------------
# warnings catalogue and profiles


def test_warning_catalogue() -> None:
    rows = table("rules/warnings.csv")
    codes = [r["code"] for r in rows]
    ids = [r["id"] for r in rows]
    assert len(codes) == len(set(codes)) and len(ids) == len(set(ids))
    for r in rows:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]+", r["code"]), r
        assert re.fullmatch(r"W\d{3}", r["id"]), r
        assert r["severity"] in {"info", "warning", "error"}, r
        list(string.Formatter().parse(r["message"]))  # well-formed placeholders


def test_every_warning_the_code_raises_is_catalogued() -> None:
    catalogue = {r["code"] for r in table("rules/warnings.csv")}
    raised = set()
    for path in NLP_SRC.rglob("*.py"):
        raised |= set(re.findall(r"""\bwarn\(\s*["']([A-Z_]+)["']""", path.read_text(encoding="utf-8")))
    assert raised, "found no warn(...) calls"
    assert not raised - catalogue, f"raised but not in rules/warnings.csv: {sorted(raised - catalogue)}"


@pytest.mark.parametrize(
    "name", [n for n in TABLE_FILES if n.startswith("profiles/") and n.endswith(".toml")]
)
def test_profiles_use_known_options(name: str) -> None:
    data = tomllib.loads(resources.files("nlp").joinpath("tables", name).read_text(encoding="utf-8"))
    known = {r["option"] for r in table("profiles/options.csv")}
    assert data["name"] == Path(name).stem
    assert set(data.get("options", [])) <= known
    threshold = data.get("routing", {}).get("auto_threshold")
    assert threshold is None or 0 < threshold <= 1


def test_every_option_is_used_somewhere() -> None:
    """An option in profiles/options.csv is read by a table row (``option`` column) or by the code."""
    corpus = "\n".join(p.read_text(encoding="utf-8") for p in NLP_SRC.rglob("*.py"))
    used = {r.get("option", "").lstrip("!") for n in CSV_FILES for r in table(n) if "option" in r}
    for row in table("profiles/options.csv"):
        assert row["option"] in used or row["option"] in corpus, f"option {row['option']} is never read"


def test_medicare_and_commercial_profiles_load() -> None:
    from nlp.loaders import profile

    assert profile("medicare")["options"] == ()
    assert "rt_lt_lines" in profile("commercial")["options"]
    assert profile("medicare+rt_lt_lines")["options"] == ("rt_lt_lines",)
    with pytest.raises(KeyError):
        profile("nosuchpayer")
    with pytest.raises(KeyError):
        profile("medicare+nosuchoption")
