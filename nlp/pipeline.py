"""Build the spaCy pipeline declared in ``nlp/config.cfg`` (blank English + btx components)."""

from __future__ import annotations

from importlib import resources
from typing import Any

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Config

# importing the modules registers the factories
from nlp.components import context, doses, entities, sections  # noqa: F401


def load_config() -> Config:
    text = resources.files("nlp").joinpath("config.cfg").read_text(encoding="utf-8")
    return Config().from_str(text)


class _KeepText:
    """Wraps the tokenizer so the note's text is kept on the Doc (``Doc.text`` rebuilds it from tokens)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> Doc:
        doc = self.tokenizer(text)
        doc.user_data["btx_text"] = text
        return doc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def build_nlp() -> Language:
    """The extraction pipeline: ``spacy.blank("en")`` tokenizer plus the btx components."""
    nlp = spacy.util.load_model_from_config(load_config(), auto_fill=True, validate=True)
    nlp.tokenizer = _KeepText(nlp.tokenizer)
    return nlp
