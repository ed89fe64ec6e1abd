"""Lexicon integrity: muscles.csv and nerves.csv (unique ids and aliases, known regions, resolvable links)."""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from nlp.loaders import Row, split, table

MUSCLE_REGIONS = {
    "facial", "trigeminal", "neck", "larynx", "upper_extremity", "lower_extremity", "trunk", "extraocular",
    "salivary", "axilla", "palm", "sole", "skin_other", "bladder", "anal_sphincter", "esophagus",
}  # fmt: skip
NERVE_REGIONS = {"upper_extremity", "lower_extremity", "trunk"}
SHARED_ABBREVIATIONS = {"TA"}  # tibialis anterior / thyroarytenoid: the extractor disambiguates by context
# bare words that are common English or fragments of several muscle names must never be aliases
FORBIDDEN_ALIASES = {
    "abductor", "adductor", "anterior", "arm", "bladder", "brevis", "capitis", "cervicis", "extensor",
    "extensors", "face", "feet", "flexor", "flexors", "foot", "forehead", "gluteus", "hand", "hands",
    "head", "inferior", "lateral", "leg", "lid", "lids", "longissimus", "longus", "magnus", "major",
    "medial", "medius", "minimus", "minor", "muscle", "muscles", "neck", "oblique", "obliques",
    "orbicularis", "peroneus", "posterior", "pterygoid", "quad", "rectus", "sole", "superior", "trap",
    "traps",
}  # fmt: skip
SNAKE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


@pytest.fixture(scope="module")
def muscles() -> tuple[Row, ...]:
    return table("lexicon/muscles.csv")


@pytest.fixture(scope="module")
def nerves() -> tuple[Row, ...]:
    return table("lexicon/nerves.csv")


def _norm(alias: str) -> str:
    return " ".join(alias.lower().split())


def _loose(alias: str) -> str:
    return re.sub(r"[\s\-/]+", "", alias.lower())


def test_ids_are_unique_snake_case_and_disjoint(muscles: tuple[Row, ...], nerves: tuple[Row, ...]) -> None:
    mids = [r["muscle_id"] for r in muscles]
    nids = [r["nerve_id"] for r in nerves]
    for ids in (mids, nids):
        assert len(ids) == len(set(ids)), {i for i in ids if ids.count(i) > 1}
        assert all(SNAKE.match(i) for i in ids), [i for i in ids if not SNAKE.match(i)]
    assert not set(mids) & set(nids)


def test_regions_and_flags(muscles: tuple[Row, ...], nerves: tuple[Row, ...]) -> None:
    for r in muscles:
        assert r["region"] in MUSCLE_REGIONS, (r["muscle_id"], r["region"])
        assert r["is_group"] in {"0", "1"}, r["muscle_id"]
        assert r["name"], r["muscle_id"]
    for r in nerves:
        assert r["region"] in NERVE_REGIONS, (r["nerve_id"], r["region"])
        assert any("nerve" in a for a in split(r["aliases"])), f"{r['nerve_id']}: no alias mentions 'nerve'"


def test_aliases_are_unique_lowercase_and_specific(muscles: tuple[Row, ...], nerves: tuple[Row, ...]) -> None:
    owner: dict[str, str] = {}
    loose_owner: dict[str, str] = {}
    problems: list[str] = []
    rows = [(r["muscle_id"], r["aliases"]) for r in muscles] + [(r["nerve_id"], r["aliases"]) for r in nerves]
    for rid, aliases in rows:
        parts = aliases.split("|")
        if not aliases:
            problems.append(f"{rid}: no aliases")
        for a in parts:
            if not a or a != a.strip() or "  " in a:
                problems.append(f"{rid}: bad alias {a!r}")
                continue
            if a != a.lower():
                problems.append(f"{rid}: alias not lower-case {a!r}")
            key = _norm(a)
            if key in FORBIDDEN_ALIASES:
                problems.append(f"{rid}: forbidden bare alias {a!r}")
            if key in owner:
                problems.append(f"alias {a!r} in both {owner[key]} and {rid}")
            owner[key] = rid
            lk = _loose(a)
            if lk in loose_owner and loose_owner[lk] != rid:
                problems.append(
                    f"alias {a!r} ({rid}) differs only by spaces/hyphens from one in {loose_owner[lk]}"
                )
            loose_owner.setdefault(lk, rid)
    assert not problems, problems


def test_abbreviations(muscles: tuple[Row, ...]) -> None:
    aliases = {_norm(a): r["muscle_id"] for r in muscles for a in split(r["aliases"])}
    owners: dict[str, list[str]] = defaultdict(list)
    for r in muscles:
        for ab in split(r["abbreviations"]):
            assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", ab) and ab.lower() != ab, (r["muscle_id"], ab)
            owners[ab].append(r["muscle_id"])
    for ab, who in owners.items():
        assert len(who) == 1 or ab in SHARED_ABBREVIATIONS, f"abbreviation {ab} used by {who}"
        other = aliases.get(ab.lower())
        assert other is None or other in who, f"abbreviation {ab} ({who}) equals an alias of {other}"
    for ab in SHARED_ABBREVIATIONS:
        assert len(owners.get(ab, [])) == 2, f"shared abbreviation {ab} should be in exactly two rows"


def test_counts_as_and_members_resolve(muscles: tuple[Row, ...]) -> None:
    by_id = {r["muscle_id"]: r for r in muscles}
    for r in muscles:
        rid = r["muscle_id"]
        if r["counts_as"]:
            target = by_id.get(r["counts_as"])
            assert target is not None, f"{rid}: counts_as {r['counts_as']!r} is not a muscle_id"
            assert not target["counts_as"], f"{rid}: counts_as chain"
            assert target["region"] == r["region"], f"{rid}: counts_as target in another region"
            assert target["is_group"] == "0" and not target["members"], f"{rid}: counts_as a group"
            assert r["is_group"] == "0", f"{rid}: counts_as with is_group"
        if r["members"]:
            members = split(r["members"])
            assert len(members) >= 2 and len(set(members)) == len(members), rid
            for m in members:
                t = by_id.get(m)
                assert t is not None, f"{rid}: member {m!r} is not a muscle_id"
                assert not t["members"] and t["is_group"] == "0" and t["region"] == r["region"], (rid, m)
            assert not r["counts_as"] and r["is_group"] == "0", rid


def test_products_lexicon() -> None:
    rows = table("lexicon/products.csv")
    ids = [r["product_id"] for r in rows]
    assert len(ids) == len(set(ids))
    for needed in ("botox", "dysport", "xeomin", "myobloc", "daxxify"):
        assert needed in ids
    for r in rows:
        assert r["serotype"] in {"A", "B"}, r
        assert r["cosmetic_only"] in {"0", "1"}, r
        assert split(r["aliases"]), r
