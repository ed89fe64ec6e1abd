"""The lexicons' fast paths (lower-cased note, word index) find exactly what their regexes find."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest

from nlp import lexicons

ROOT = Path(__file__).resolve().parents[2]
NOTES = sorted((ROOT / "training_data" / "notes").glob("*.txt"))[:120]


def _lexicons() -> list[lexicons.Lexicon]:
    return [lexicons.muscle_lexicon(), lexicons.nerve_lexicon(), lexicons.product_lexicon()]


def _scanners() -> list[lexicons.Scanner]:
    return [lexicons.entity_patterns()[0], lexicons.context_patterns()[0]]


def _matches(ms: list[re.Match[str]]) -> list[tuple[int, int, str | None]]:
    return [(m.start(), m.end(), m.lastgroup) for m in ms]


def _check(text: str) -> None:
    for lex in _lexicons():
        assert lex.find(text) == lex._find_regex(text), text[:200]
    for sc in _scanners():
        assert _matches(sc.finditer(text)) == _matches(sc._finditer_regex(text)), text[:200]
        # the candidates regex the word path stands for, read on the note itself
        assert _matches(sc._finditer_regex(text)) == _matches(_scanner_reference(sc, text))


def _scanner_reference(sc: lexicons.Scanner, text: str) -> list[re.Match[str]]:
    out, last_end = [], -1
    for w in sc._candidates.finditer(text):
        if w.start() < last_end:
            continue
        m = sc.regex.match(text, w.start())
        if m is not None and m.end() > m.start():
            out.append(m)
            last_end = m.end()
    return out


def _variants(text: str, rng: random.Random) -> list[str]:
    a, b = sorted(rng.randrange(len(text) + 1) for _ in range(2))
    return [
        text,
        text.upper(),
        text.swapcase(),
        text[a:b],
        text.replace(" ", "\u00a0", 3).replace("e", "\u00e9", 2).replace("a", "\u00c6", 1),
        text.replace("s", "\u017f", 1),  # case-folds to "s": the regex path
        text.replace(" ", ";", 5).replace("-", "[", 3).replace(" ", "/", 4),
        text.replace(" ", "\t", 7).replace(" ", "  ", 5),
    ]


def test_unsafe_characters_are_exactly_those_that_case_fold_to_ascii() -> None:
    chars = "".join(chr(c) for c in range(0x80, sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    unsafe = set(re.findall("(?i)[a-z0-9]", chars))
    for letter in "abcdefghijklmnopqrstuvwxyz":
        unsafe |= set(re.findall("(?i)" + letter, chars))
    unsafe |= {c for c in chars if len(c.lower()) != 1 or c.lower().isascii()}
    assert unsafe == {c for c in chars if lexicons._CASE_UNSAFE.match(c)}


@pytest.mark.parametrize("path", NOTES, ids=lambda p: p.stem)
def test_fast_paths_match_regexes_on_notes(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    for variant in _variants(text, random.Random(path.stem)):
        _check(variant)


def test_fast_paths_match_regexes_on_phrase_soup() -> None:
    """Random strings made of alias pieces, trigger words and separators (plurals, prefixes of
    longer aliases, abbreviations in both cases, words glued by punctuation)."""
    rng = random.Random(5)
    pieces: list[str] = []
    for lex in _lexicons():
        pieces += list(lex.by_alias)[:400] + list(lex.by_abbrev)
    for sc in _scanners():
        pieces += sorted(sc.prefixes | sc.short)
    pieces += ["h/o", "no", "by", "e-stim", "e stim", "left mca", "BoNT-A", "btx-b", "botox", "s", "x", "9"]
    seps = [" ", "  ", "-", "/", ";", "[", ",", ".", "\n", "s ", "'s ", "(", ")", "", "\u00a0", "\u2022"]
    for _ in range(3000):
        parts = []
        for _ in range(rng.randrange(1, 12)):
            p = rng.choice(pieces)
            r = rng.random()
            if r < 0.2:
                p = p.upper()
            elif r < 0.3:
                p = p[: rng.randrange(len(p) + 1)]
            elif r < 0.4:
                p = p.title()
            parts += [p, rng.choice(seps)]
        _check("".join(parts))


def test_scanner_prefix_analysis() -> None:
    """The scanners use the word path with tests, and the prefix analysis behind the tests."""
    for sc in _scanners():
        fast = sc._fast
        assert fast is not None and fast[3] is not None
    out: set[tuple[str, bool]] = set()
    lexicons._starts(list(lexicons._sre_parse.parse(r"e-?\s?stim(?:ulation)?\b", re.I).data), "", out)
    assert out == {("e", True), ("e-", True), ("e-stim", True), ("e-stimul", False), ("estim", True), ("estimula", False)}
    out = set()
    lexicons._starts(list(lexicons._sre_parse.parse(r"\b(?:left|right) mca\b", re.I).data), "", out)
    assert out == {("left mca", False), ("right mc", False)}  # eight characters at most


def test_code_and_date_patterns_match_their_fast_forms() -> None:
    from nlp.components import entities as E

    rng = random.Random(11)
    alphabet = "0123456789" * 4 + "ABVXZ.,/-x×* \n:#=" + "\u0663\u0664\u00a0" + "Date of service DOS Jan March sept "
    texts = [p.read_text(encoding="utf-8") for p in NOTES[:40]]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60))) for _ in range(4000)]
    texts += ["DOS: 3/4/2021 date of Service 2020-01-02 64615, J0585 x 2 G24.3 333.83 V12.5 Mar 3, 2020"]
    texts += ["Procedure date 1/2/2003 procedure Date: 2004-05-06; visit date: 7 Jul 2008 J0585x2 64616times 3"]

    def spans(ms: list[re.Match[str]], *groups: str) -> list[tuple]:
        return [(m.span(), *(m.span(g) for g in groups), m.group(*groups)) for m in ms]

    patterns = (
        (E._CPT, E._CPT_FAST, ("code", "mod", "units")),
        (E._ICD10, E._ICD10_FAST, ("code",)),
        (E._ICD9, E._ICD9_FAST, ("code",)),
        (E._DOS, None, ("value",)),
    )
    for text in texts:
        ix = lexicons.lowered(text) if text.isascii() else None
        by_words = E._code_matches(text, ix) if ix is not None else None
        for k, (slow, fast, groups) in enumerate(patterns):
            want = spans(list(slow.finditer(text)), *groups)
            if fast is not None:
                assert want == spans(list(fast.finditer(text)), *groups), text
            if by_words is not None:
                assert want == spans(by_words[k], *groups), text


def test_sentence_break_pattern_matches_its_fast_form() -> None:
    from nlp.components import sections as S

    rng = random.Random(7)
    alphabet = "ab.A!?\"')] ,\n\t%9:;|x-"
    texts = [p.read_text(encoding="utf-8") for p in NOTES[:40]]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80))) for _ in range(20000)]
    for text in texts:
        fast = [m.span() if m.lastindex == 3 else m.span(m.lastindex) for m in S._BREAK_FAST.finditer(text)]
        assert [m.span() for m in S._BREAK.finditer(text)] == fast, text


def test_entities_shared_word_pass_matches_separate_scans() -> None:
    """find_entities' one pass over the words finds what the lexicons, scanner and codes find alone."""
    from nlp.components import entities as E

    rng = random.Random(13)
    texts = [p.read_text(encoding="utf-8") for p in NOTES]
    texts += [t[a:b] for t in texts[:40] for a, b in [sorted(rng.randrange(len(t) + 1) for _ in range(2))]]
    texts += [t.upper() for t in texts[:20]] + ["", " ", "Botox 100 units; [R] SCM 64616 G24.3 DOS: 1/2/2020"]
    nerve, muscle, product = lexicons.nerve_lexicon(), lexicons.muscle_lexicon(), lexicons.product_lexicon()
    scanner = lexicons.entity_patterns()[0]
    for text in texts:
        if not text.isascii():
            continue
        ix = lexicons.lowered(text)
        shared = E._shared_pass(text, ix, nerve, muscle, product, scanner)
        assert shared is not None
        assert shared[0] == nerve.find(text) and shared[1] == muscle.find(text), text[:200]
        assert shared[2] == product.find(text), text[:200]
        assert _matches(shared[3]) == _matches(scanner.finditer(text)), text[:200]
        want = [[m.span() for m in ms] for ms in E._code_matches(text, ix)]
        assert [[m.span() for m in ms] for ms in shared[4]] == want, text[:200]
        # the context scanner's word positions, offered by the shared pass, give its matches
        context = lexicons.context_patterns()[0]
        assert lexicons._offered[0][0] is text and lexicons._offered[0][1] is context
        assert _matches(context.finditer(text)) == _matches(context._finditer_regex(text)), text[:200]
        assert lexicons._offered[0][0] is None


def test_header_run_matches_the_lazy_header_pattern() -> None:
    from nlp.components import sections as S

    rng = random.Random(17)
    pieces = ["a", "B", " ", "  ", ":", "\n", "\t", ".", ",", "-", ")", "1", "x" * 30, "Dr", "e.g", "(s)", "\u00e9"]
    texts = [p.read_text(encoding="utf-8") for p in NOTES[:40]]
    texts += ["".join(rng.choice(pieces) for _ in range(rng.randrange(0, 60))) for _ in range(20000)]
    for text in texts:
        for start in range(0, len(text) + 1, max(1, len(text) // 50)):
            m = S._HEADER.match(text, start)
            r = S._HEADER_RUN.match(text, start)
            title = r[1] if r is not None else None
            if title is not None and len(title.rstrip(" ")) > 61:
                title = None
            if m is None:
                assert title is None, (text, start)
            else:
                assert title is not None and title.rstrip(" ") == m["title"], (text, start)
                assert (r.start(1), r.end()) == (m.start("title"), m.end()), (text, start)
