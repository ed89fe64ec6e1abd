"""btxcode engine: botulinum-toxin procedure notes → CPT/HCPCS/ICD suggestions with evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nlp.engine import Engine


def load_engine(payer: str = "medicare", **kwargs: Any) -> Engine:
    """Build the engine (pipeline, tables and, when present, the confidence model)."""
    from nlp.engine import Engine

    return Engine(default_payer=payer, **kwargs)
