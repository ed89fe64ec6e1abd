"""The spaCy pipeline is the one declared in nlp/config.cfg, in order, with no analysis problems (P1)."""

from __future__ import annotations

from typing import Any

from nlp.pipeline import build_nlp, load_config


def test_pipe_names_follow_the_config(engine: Any) -> None:
    declared = list(load_config()["nlp"]["pipeline"])
    assert declared, "config.cfg declares no pipeline"
    assert engine.nlp.pipe_names == declared
    assert all(name.startswith("btx_") for name in declared)


def test_analyze_pipes_reports_no_problems(engine: Any) -> None:
    analysis = engine.nlp.analyze_pipes()
    assert not any(analysis["problems"].values()), analysis["problems"]


def test_pipeline_is_blank_english_without_model_downloads() -> None:
    nlp = build_nlp()
    assert nlp.lang == "en"
    assert all(
        factory.startswith("btx_") for factory in (nlp.get_pipe_meta(n).factory for n in nlp.pipe_names)
    )


def test_components_write_span_groups(engine: Any) -> None:
    doc = engine.nlp("PROCEDURE: Botox 40 units into the left sternocleidomastoid under EMG guidance.")
    assert doc.spans, "no span groups written"
    labels = {span.label_ for group in doc.spans.values() for span in group}
    assert labels, "span groups are empty"


def test_pipeline_bytes_round_trip(engine: Any) -> None:
    """A pipeline restored from ``to_bytes`` tags the same spans (P14 round-trip)."""
    restored = build_nlp().from_bytes(engine.nlp.to_bytes())
    text = "PROCEDURE: Botox 40 units into the left sternocleidomastoid under EMG guidance."

    def spans(doc: Any) -> list[tuple[str, int, int, str]]:
        return sorted((k, s.start_char, s.end_char, s.label_) for k, g in doc.spans.items() for s in g)

    assert spans(restored(text)) == spans(engine.nlp(text))
