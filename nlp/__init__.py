"""btxcode engine: botulinum-toxin procedure notes → CPT/HCPCS/ICD suggestions with evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nlp.engine import Engine


def load_engine(payer: str = "medicare", **kwargs: Any) -> Engine:
    """Build the engine (pipeline, tables and, when present, the confidence model)."""
    from nlp.engine import Engine

    model_dir = kwargs.pop("model_dir", None)
    if "scorer" not in kwargs:  # the confidence model of models/confidence, when one is installed (issue 3)
        from nlp.scoring.model import load_scorer

        kwargs["scorer"] = load_scorer(model_dir)
    return Engine(default_payer=payer, **kwargs)
