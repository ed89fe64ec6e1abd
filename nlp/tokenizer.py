"""The pipeline's tokenizer: a one-regex clinical tokenizer that keeps the note's text on the Doc.

The btx components find their mentions on the note's characters (lexicon tries and regexes) and use
tokens only to give each mention a :class:`~spacy.tokens.Span`. spaCy's rule-based English tokenizer
(prefix/suffix/infix rules, exceptions) is therefore more than the pipeline needs, and it was the
largest single cost of the engine. This tokenizer splits a note into runs of letters, runs of digits,
single other characters and whitespace runs, in one compiled regular expression, and builds the Doc
from those words: ``doc.text`` equals the input exactly and every token's ``idx`` is its character
offset, so ``Doc.char_span`` and the components' offsets agree. ``"100units"`` → ``100`` ``units``;
``"Botox®"`` → ``Botox`` ``®``; ``"R-SCM"`` → ``R`` ``-`` ``SCM``.

The note's text is also stored in ``doc.user_data["btx_text"]`` (``Doc.text`` rebuilds the string from
the tokens on every access).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import spacy
from spacy.tokens import Doc
from spacy.vocab import Vocab

# a token and the single space after it, or a run of whitespace that is a token of its own (its
# "space" is then empty: the run took every space)
_TOKEN = re.compile(r"([^\W\d_]+|\d+|\S|\s+)( ?)")


class ClinicalTokenizer:
    """Callable ``text -> Doc`` (the ``nlp.tokenizer`` of the btxcode pipeline)."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab

    def __call__(self, text: str) -> Doc:
        parts = _TOKEN.findall(text)
        # words and spaces in two tuples; a space is " " or "", which Doc reads as a truth value
        words, spaces = zip(*parts, strict=True) if parts else ((), ())
        doc = Doc(self.vocab, words=words, spaces=spaces)
        doc.user_data["btx_text"] = text
        return doc

    def pipe(self, texts: Iterable[str], batch_size: int = 1000) -> Iterator[Doc]:
        for text in texts:
            yield self(text)

    # nothing to save: the tokenizer has no settings beyond the regular expression above
    def to_bytes(self, **kwargs: Any) -> bytes:
        return b""

    def from_bytes(self, data: bytes, **kwargs: Any) -> ClinicalTokenizer:
        return self

    def to_disk(self, path: Any, **kwargs: Any) -> None:
        return None

    def from_disk(self, path: Any, **kwargs: Any) -> ClinicalTokenizer:
        return self


@spacy.registry.tokenizers("btx.clinical_tokenizer.v1")
def create_clinical_tokenizer() -> Callable[[Any], ClinicalTokenizer]:
    """Registered factory, referenced from ``[nlp.tokenizer]`` in ``nlp/config.cfg``."""

    def make(nlp: Any) -> ClinicalTokenizer:
        return ClinicalTokenizer(nlp.vocab)

    return make
