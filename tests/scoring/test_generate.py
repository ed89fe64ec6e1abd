"""nlp.training.generate: deterministic notes, well-formed gold, and its own coding rules (Part 1)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from nlp.evaluate import parse_line
from nlp.training import generate as G
from nlp.training.gold import split_of

GENERATED = Path(__file__).resolve().parents[2] / "training_data" / "generated"


def _case(dos: str, injections: list[tuple[str, str, float]], **kw: object) -> G.Case:
    c = G.Case(
        note_id="t.txt", dos=date.fromisoformat(dos), scenario="test", injections=[G.Inj(m, s, u) for m, s, u in injections]
    )
    c.product = kw.pop("product", "botox")  # type: ignore[assignment]
    for k, v in kw.items():
        setattr(c, k, v)
    return c


def test_seed_scenario_extremities_by_era() -> None:
    """100 U Botox to extremity muscles: 64614 (+J0585 ×100) in 2006, the 64642 family in 2026 (never 64640)."""
    inj = [("biceps", "R", 40.0), ("fcr", "R", 30.0), ("gastroc", "R", 30.0)]
    old = _case("2006-06-01", inj, vial_count=1, vial_size=100, waste_mode="zero")
    assert sorted(G.gold_claim(old)) == ["64614-RTx1", "J0585x100"]
    new = _case("2026-03-02", inj, vial_count=1, vial_size=100, waste_mode="zero", guidance="emg")
    assert sorted(G.gold_claim(new)) == ["64642x1", "64643x1", "95874x2", "J0585-JZx100"]


def test_larynx_by_era_and_guidance() -> None:
    inj = [("ta_larynx", "R", 2.5), ("ta_larynx", "L", 2.5)]
    old = _case("2008-02-01", inj, guidance="emg", vial_count=1, vial_size=100, waste_mode="stated")
    assert sorted(G.gold_claim(old)) == ["64613-50x1", "95874x1", "J0585x100"]
    new = _case("2020-02-01", inj, guidance="emg", vial_count=1, vial_size=100, waste_mode="stated")
    assert sorted(G.gold_claim(new)) == ["64617-50x1", "J0585-JWx95", "J0585x5"]


def test_primary_extremity_counts_and_trunk_sides() -> None:
    inj = [(m, "L", 20.0) for m in ("biceps", "brachialis", "fcr", "fcu", "fds", "pt")]
    inj += [("gastroc_med", "L", 20.0), ("gastroc_lat", "L", 20.0), ("soleus", "L", 20.0)]
    inj += [("lumbar_paraspinals", "L", 20.0), ("lumbar_paraspinals", "R", 20.0)]
    c = _case("2019-01-10", inj, guidance="estim", vial_count=2, vial_size=200, waste_mode="undocumented")
    # 6 muscles LUE → 64644; medial + lateral gastrocnemius are one muscle → LLE 2 muscles → 64643; trunk 2 → 64646
    assert sorted(G.gold_claim(c)) == ["64643x1", "64644x1", "64646x1", "95873x3", "J0585x220"]


def test_drug_units_waste_and_products() -> None:
    dys = _case(
        "2022-01-05",
        [("scm", "L", 250.0), ("splenius", "R", 255.0)],
        product="dysport",
        vial_count=2,
        vial_size=300,
        waste_mode="stated",
    )
    assert sorted(G.gold_claim(dys)) == ["64616-50x1", "J0586-JWx19", "J0586x101"]
    pre = _case("2012-05-05", [("scm", "L", 50.0)], vial_count=1, vial_size=100, waste_mode="stated")
    assert sorted(G.gold_claim(pre)) == ["64613-LTx1", "J0585x100"]
    unnamed = _case("2019-05-05", [("scm", "L", 50.0)], vial_count=1, vial_size=100, product_named="unnamed")
    assert sorted(G.gold_claim(unnamed)) == ["64616-LTx1"]
    type_a_2008 = _case(
        "2008-05-05", [("scm", "L", 50.0)], vial_count=1, vial_size=100, product_named="type_a", waste_mode="undocumented"
    )
    assert sorted(G.gold_claim(type_a_2008)) == ["64613-LTx1", "J0585x50"]
    type_b = _case(
        "2019-05-05",
        [("scm", "L", 2500.0)],
        product="myobloc",
        product_named="type_b",
        vial_count=1,
        vial_size=5000,
        waste_mode="zero",
    )
    assert sorted(G.gold_claim(type_b)) == ["64616-LTx1", "J0587x25"]


def test_not_performed_and_neurolysis() -> None:
    c = _case("2021-01-01", [("scm", "L", 50.0)], performed=False)
    assert G.gold_claim(c) == []
    c = _case(
        "2021-01-01",
        [("biceps", "R", 50.0)],
        nerves=[("obturator", "R"), ("tibial", "R"), ("obturator", "L")],
        vial_count=1,
        vial_size=100,
        waste_mode="stated",
        guidance="estim",
    )
    assert sorted(G.gold_claim(c)) == ["64640-LTx1", "64640-RTx2", "64642x1", "95873x1", "J0585-JWx50", "J0585x50"]


def test_deterministic() -> None:
    assert G.build(7, G.SEED) == G.build(7, G.SEED)
    assert G.build(7, G.SEED) != G.build(8, G.SEED)


def test_generated_data_on_disk_is_the_generator_output(tmp_path: Path) -> None:
    meta = json.loads((GENERATED / "gold.json").read_text(encoding="utf-8"))["_generator"]
    G.generate(tmp_path, meta["n"], meta["seed"])
    assert (tmp_path / "gold.json").read_bytes() == (GENERATED / "gold.json").read_bytes(), (
        "training_data/generated is stale: run `make train` (it regenerates it)"
    )
    names = sorted(p.name for p in (GENERATED / "notes").glob("*.txt"))
    assert names == sorted(p.name for p in (tmp_path / "notes").glob("*.txt"))
    for name in names[:: max(1, len(names) // 50)]:
        assert (tmp_path / "notes" / name).read_bytes() == (GENERATED / "notes" / name).read_bytes(), name


def test_gold_is_well_formed() -> None:
    gold = json.loads((GENERATED / "gold.json").read_text(encoding="utf-8"))
    recs = {k: v for k, v in gold.items() if not k.startswith("_")}
    assert len(recs) >= 300
    assert {r["split"] for r in recs.values()} == {"train", "dev", "test"}
    noise = {n for r in recs.values() for n in r["noise"]}
    assert set(G.NOISE_KINDS) <= noise
    eras = {r["dos"] < "2014-01-01" for r in recs.values()}
    assert eras == {True, False}
    for name, rec in recs.items():
        assert rec["split"] == split_of(name)
        for alt in rec["accept"]:
            for line in alt:
                parse_line(line)
        text = (GENERATED / "notes" / name).read_text(encoding="utf-8")
        for inj in rec["facts"]["injections"]:
            assert text[inj["start"] : inj["end"]] == inj["text"], (name, inj)


@pytest.mark.parametrize("index", range(1, 40))
def test_rendered_doses_are_the_gold_doses(index: int) -> None:
    """Every injection the gold lists is in the text with its dose (except a deliberate dictation error)."""
    text, rec = G.build(index, G.SEED)
    for inj in rec["facts"]["injections"]:
        assert inj["text"] in text
