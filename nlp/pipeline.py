"""Build the spaCy pipeline declared in ``nlp/config.cfg`` (blank English + btx components)."""

from __future__ import annotations

from importlib import resources

import spacy
from spacy.language import Language
from thinc.api import Config

# importing the modules registers the factories
from nlp import tokenizer  # noqa: F401
from nlp.components import context, doses, entities, sections  # noqa: F401


def load_config() -> Config:
    text = resources.files("nlp").joinpath("config.cfg").read_text(encoding="utf-8")
    return Config().from_str(text)


def build_nlp() -> Language:
    """The extraction pipeline: blank English with the clinical tokenizer (nlp/tokenizer.py) plus the btx components."""
    nlp = spacy.util.load_model_from_config(load_config(), auto_fill=True, validate=True)
    return nlp
