"""Lexicons compiled once from the tables: muscles, nerves, products, agents, guidance, diagnoses.

Phrase lists are compiled into trie-shaped regular expressions, so one pass over a note finds the
longest alias at each position whatever the lexicon size.
"""

from __future__ import annotations

import functools
import re
import re._constants as _sre
import re._parser as _sre_parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from nlp.loaders import compiled, split, table
from nlp.textutil import Taken


def trie_regex(phrases: Iterable[str]) -> str:
    """A regular expression matching any of ``phrases``, longest first, built as a trie."""
    trie: dict = {}
    for p in phrases:
        node = trie
        for ch in p:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict) -> str:
        alts = []
        end = "" in node
        for ch in sorted(k for k in node if k):
            alts.append(re.escape(ch) + build(node[ch]))
        if not alts:
            return ""
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if end else body

    return build(trie)


_LB = r"(?<![A-Za-z0-9])"
_RB = r"(?![A-Za-z0-9])"

# --- fast path: one lower-cased copy of the note, shared by every lexicon and scanner -------------
#
# On a lower-cased note a case-sensitive scan finds what a case-insensitive scan of the note finds,
# several times faster, provided no character changes length when lower-cased or is matched
# case-insensitively by an ASCII letter. Only four characters do (İ ı ſ K, the Kelvin sign); a note
# containing one takes the regex path. tests/nlp/test_lexicons_speed_equivalence.py checks the list.
_CASE_UNSAFE = re.compile("[\u0130\u0131\u017f\u212a]")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
# every byte but [a-z0-9] to a space (bytes.translate is several times faster than str.translate)
_NOT_ALNUM_BYTES = bytes(c if chr(c) in _ALNUM else 32 for c in range(256))


@dataclass(frozen=True, slots=True)
class Lowered:
    """A note lower-cased, and its words: ``padded`` is `` low `` with every run of characters other
    than ``[a-z0-9]`` blanked, so `` word `` finds a whole word; ``words`` are its words in order."""

    low: str
    padded: str
    words: list[str]


_last_lowered: tuple[str | None, Lowered | None] = (None, None)


def word_keys(words: list[str], memo: dict[str, Any], make: Callable[[str], Any], limit: int = 200_000) -> list[Any]:
    """``make(word)`` for each of the note's words, remembered in ``memo`` (emptied past ``limit`` words;
    ``make`` never returns None)."""
    keys = list(map(memo.get, words))
    if None in keys:
        if len(memo) > limit:
            memo.clear()
        for i, k in enumerate(keys):
            if k is None:
                keys[i] = memo[words[i]] = make(words[i])
    return keys


def lowered(text: str) -> Lowered | None:
    """The lower-cased index of ``text`` (None when the fast path does not apply). The last note's
    index is kept, so the lexicons and scanners that read one note build it once."""
    global _last_lowered
    last = _last_lowered
    if last[0] is text:
        return last[1]
    if text.isascii():
        low = text.lower()
        padded = " " + low.encode("ascii").translate(_NOT_ALNUM_BYTES).decode("ascii") + " "
        out: Lowered | None = Lowered(low, padded, padded.split())
    else:
        low = text.lower()
        if len(low) != len(text) or _CASE_UNSAFE.search(text) is not None:
            out = None
        else:
            padded = " " + _NOT_ALNUM.sub(" ", low) + " "
            out = Lowered(low, padded, padded.split())
    _last_lowered = (text, out)
    return out


def _leading_run(s: str) -> str:
    """The leading ``[a-z0-9]`` characters of ``s``."""
    i = 0
    while i < len(s) and s[i] in _ALNUM:
        i += 1
    return s[:i]


@dataclass(frozen=True, slots=True)
class Muscle:
    muscle_id: str
    name: str
    region: str
    counts_as: str
    members: tuple[str, ...]
    is_group: bool
    source_id: str

    @property
    def count_ids(self) -> tuple[str, ...]:
        """Muscle ids this mention counts as (heads fold into their muscle; compounds expand)."""
        if self.members:
            return tuple(self.members)
        return (self.counts_as or self.muscle_id,)


@dataclass(frozen=True, slots=True)
class Lexicon:
    """A compiled phrase lexicon: case-insensitive aliases and case-sensitive abbreviations."""

    aliases: re.Pattern[str]
    abbreviations: re.Pattern[str] | None
    by_alias: dict[str, list[str]]
    by_abbrev: dict[str, list[str]]
    # first word of an alias or abbreviation → (" word ", is an alias's, is an abbreviation's), and
    # the alias regex for a lower-cased note; None when the words cannot tell (see _words_index)
    by_word: dict[str, tuple[str, bool, bool]] | None = field(default=None, compare=False, repr=False)
    aliases_lower: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.by_word is None:
            by_word = _words_index(self.aliases, self.by_alias, self.by_abbrev)
            object.__setattr__(self, "by_word", by_word)
            if by_word is not None:
                object.__setattr__(self, "aliases_lower", re.compile(self.aliases.pattern))

    def find(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, ids) for every non-overlapping match, longest first."""
        ix = lowered(text) if self.by_word is not None else None
        if ix is None:
            return self._find_regex(text)
        padded = ix.padded
        located = []
        cursor = 0
        for entry in filter(None, map(self.by_word.get, ix.words)):
            # this key's next occurrence is the word: no word in between is a key (map listed it)
            key = entry[0]
            pos = padded.find(key, cursor)
            cursor = pos + len(key) - 1
            located.append((pos, entry))
        return self.find_located(text, ix.low, located)

    def find_located(
        self, text: str, low: str, located: list[tuple[int, tuple[str, bool, bool]]]
    ) -> list[tuple[int, int, list[str]]]:
        """:meth:`find` on a note whose :func:`lowered` index ``low`` applies, given the position and
        :attr:`by_word` entry of every word of the note that starts an alias or abbreviation, in order
        (a caller may find them once for several lexicons)."""
        # The regexes are tried only at the words that start an alias or abbreviation, which is where
        # every match starts (each phrase starts with [a-z0-9] after the look-behind), in order and
        # from the end of the previous match, as finditer does.
        by_alias, alias_at, abbrev_at = self.by_alias, self.aliases_lower.match, self.abbreviations
        hits: list[tuple[int, int, list[str]]] = []
        abbrevs: list[tuple[int, int, list[str]]] = []
        alias_end = abbrev_end = 0
        for pos, (_, is_alias, is_abbrev) in located:
            if is_alias and pos >= alias_end:
                m = alias_at(low, pos)
                if m is not None:
                    alias_end = m.end()
                    ids = by_alias.get(m.group(0))
                    if ids:
                        hits.append((pos, alias_end, ids))
            if is_abbrev and pos >= abbrev_end:
                m = abbrev_at.match(text, pos)
                if m is not None:
                    abbrev_end = m.end()
                    abbrevs.append((pos, abbrev_end, self.by_abbrev[m.group(0)]))
        if abbrevs:
            taken = Taken()
            for s, e, _ in hits:
                taken.add(s, e)
            for s, e, ids in abbrevs:
                if not taken.overlaps(s, e):
                    hits.append((s, e, ids))
            hits.sort()
        return hits

    def _find_regex(self, text: str) -> list[tuple[int, int, list[str]]]:
        hits: list[tuple[int, int, list[str]]] = []
        for m in self.aliases.finditer(text):
            ids = self.by_alias.get(m.group(0).lower())
            if ids:
                hits.append((m.start(), m.end(), ids))
        if self.abbreviations is not None:
            taken = Taken()
            for s, e, _ in hits:
                taken.add(s, e)
            for m in self.abbreviations.finditer(text):
                if taken.overlaps(m.start(), m.end()):
                    continue
                hits.append((m.start(), m.end(), self.by_abbrev[m.group(0)]))
        hits.sort()
        return hits


def _words_index(
    aliases: re.Pattern[str], by_alias: dict[str, list[str]], by_abbrev: dict[str, list[str]]
) -> dict[str, tuple[str, bool, bool]] | None:
    """:attr:`Lexicon.by_word`. None unless every phrase starts with a word of [a-z0-9] (so a match
    starts a word) and the alias pattern has no upper-case letter outside its boundary classes (so,
    compiled without IGNORECASE, it finds on the lower-cased note what it finds on the note)."""
    if re.search(r"[A-Z]", aliases.pattern.replace("A-Za-z0-9", "")) or not aliases.flags & re.IGNORECASE:
        return None
    out: dict[str, tuple[str, bool, bool]] = {}
    for phrase in by_alias:
        word = _leading_run(phrase)
        if not word or phrase != phrase.lower():
            return None
        out[word] = (f" {word} ", True, False)
    for phrase in by_abbrev:
        word = _leading_run(phrase.lower())
        if not word or not phrase.isascii():
            return None
        out[word] = (f" {word} ", word in out and out[word][1], True)
    return out


def _compile(alias_map: dict[str, list[str]], abbrev_map: dict[str, list[str]]) -> Lexicon:
    alias_re = re.compile(_LB + trie_regex(sorted(alias_map)) + r"s?" + _RB, re.IGNORECASE)
    abbrev_re = re.compile(_LB + trie_regex(sorted(abbrev_map)) + _RB) if abbrev_map else None
    # allow a plural "s" on aliases: map the plural to the same ids
    full = dict(alias_map)
    for a, ids in alias_map.items():
        full.setdefault(a + "s", ids)
    return Lexicon(alias_re, abbrev_re, full, abbrev_map)


def _collect(rows: Iterable[dict], id_col: str, extra_aliases: Iterable[str] = ()) -> tuple[dict, dict]:
    alias_map: dict[str, list[str]] = {}
    abbrev_map: dict[str, list[str]] = {}
    for row in rows:
        names = split(row.get("aliases", ""))
        if row.get("name") and not row.get("name", "").endswith(")"):
            names.append(row["name"])
        for col in extra_aliases:
            names.extend(split(row.get(col, "")))
        for a in names:
            alias_map.setdefault(a.lower(), [])
            if row[id_col] not in alias_map[a.lower()]:
                alias_map[a.lower()].append(row[id_col])
        for a in split(row.get("abbreviations", "")):
            abbrev_map.setdefault(a, [])
            if row[id_col] not in abbrev_map[a]:
                abbrev_map[a].append(row[id_col])
    return alias_map, abbrev_map


@functools.cache
def muscles() -> dict[str, Muscle]:
    out = {}
    for r in table("lexicon/muscles.csv"):
        out[r["muscle_id"]] = Muscle(
            muscle_id=r["muscle_id"],
            name=r["name"],
            region=r["region"],
            counts_as=r.get("counts_as", ""),
            members=tuple(split(r.get("members", ""))),
            is_group=r.get("is_group", "0") == "1",
            source_id=r["source_id"],
        )
    return out


@functools.cache
def muscle_lexicon() -> Lexicon:
    return _compile(*_collect(table("lexicon/muscles.csv"), "muscle_id"))


@functools.cache
def nerves() -> dict[str, dict[str, str]]:
    return {r["nerve_id"]: dict(r) for r in table("lexicon/nerves.csv")}


@functools.cache
def nerve_lexicon() -> Lexicon:
    return _compile(*_collect(table("lexicon/nerves.csv"), "nerve_id"))


@functools.cache
def products() -> dict[str, dict[str, str]]:
    return {r["product_id"]: dict(r) for r in table("lexicon/products.csv")}


@functools.cache
def product_lexicon() -> Lexicon:
    alias_map, _ = _collect(table("lexicon/products.csv"), "product_id", extra_aliases=("brand", "generic"))
    return _compile(alias_map, {})


def split_alternatives(pattern: str) -> list[str]:
    """Top-level ``|`` alternatives of a regular expression (respecting groups, classes, escapes)."""
    out, depth, in_class, cur, i = [], 0, False, [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            cur.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    out.append("".join(cur))
    return out


_LEAD = re.compile(r"^(?:\\b|\(\?<![^)]*\))+")


def _split_leading_group(body: str) -> tuple[str, str]:
    """``(?:ab|cd)ef`` → (``ab|cd``, ``ef``): the inside of a leading non-capturing group and the rest."""
    depth, i = 0, 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == "(":
            depth += 1
        elif body[i] == ")":
            depth -= 1
            if depth == 0:
                break
        i += 1
    return body[3:i], body[i + 1 :]


def _expand_leading_group(body: str) -> list[str]:
    """``(?:ab|cd)ef`` → [``abef``, ``cdef``] when the leading group is not quantified; else [body]."""
    if not body.startswith("(?:"):
        return [body]
    inner, rest = _split_leading_group(body)
    if rest[:1] in ("?", "*", "+", "{"):
        return [body]
    return [alt + rest for alt in split_alternatives(inner)]


def _dispatch_parts(patterns: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """The named alternatives of :func:`dispatch_regex`: by (lower-case) first character, and the rest."""
    by_first: dict[str, list[str]] = {}
    other: list[str] = []
    for i, pat in enumerate(patterns):
        j = 0
        for alt in split_alternatives(pat):
            lead = _LEAD.match(alt)
            for body in _expand_leading_group(_LEAD.sub("", alt)):
                j += 1
                first = body[:1].lower()
                if first.isalnum() and body[1:2] not in ("?", "*", "{", "+") and not body.startswith(("\\", "(", "[")):
                    by_first.setdefault(first, []).append(f"(?P<r{i}_{j}>{body[1:]})")
                else:
                    other.append(f"(?P<r{i}_{j}>{(lead.group(0) if lead else '') + body})")
    return by_first, other


def _join_dispatch(by_first: dict[str, list[str]], other: list[str]) -> str:
    parts = [f"[{c}{c.upper()}](?:{'|'.join(alts)})" for c, alts in sorted(by_first.items())]
    body = "(?<![A-Za-z0-9])(?:" + "|".join(parts) + ")" if parts else ""
    if other:
        body = "|".join([body, *other]) if body else "|".join(other)
    return body


def dispatch_regex(patterns: list[str]) -> re.Pattern[str]:
    """One case-insensitive regex over several row patterns, dispatched on each alternative's first
    letter so the engine rejects most positions at once. ``m.lastgroup`` is ``r{row}_{alt}``.

    Python's engine tries every branch of a plain alternation at every position; grouping the branches
    under their (literal) first character makes the scan roughly as cheap as a trie."""
    return re.compile(_join_dispatch(*_dispatch_parts(patterns)), re.IGNORECASE)


_META = set(".^$*+?{}[]\\|()")


def _literal_prefix(body: str) -> str:
    """The literal text a regex alternative must start with (lower case; "" when none)."""
    out = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            if body[i + 1 : i + 2] == "s":
                ch_lit = " "
                i += 2
            else:
                break
        elif ch in _META:
            break
        else:
            ch_lit = ch
            i += 1
        if body[i : i + 1] in ("?", "*", "{"):
            break
        out.append(ch_lit.lower())
    return "".join(out)


def _leading_options(body: str) -> list[str]:
    """Bodies to take literal prefixes from: ``(?:a |b )?rest`` may start with "a", "b" or "rest"."""
    if body.startswith("(?:"):
        inner, rest = _split_leading_group(body)
        if rest[:1] == "?":
            return [*split_alternatives(inner), rest[1:]]
        return split_alternatives(inner)
    return [body]


# --- what a regex alternative's match must start with (for the scanner's word filter) -------------

_PREFIX_LEN = 8  # literal characters followed at most
_PREFIX_MAX = 64  # prefixes per alternative before giving up
_STOP = object()


class _Unbounded(Exception):
    pass


def _class_has_alnum(items: list) -> bool:
    """Whether a parsed character class can match a character of [A-Za-z0-9] (True when unsure)."""
    for op, av in items:
        if op is _sre.LITERAL:
            if chr(av).lower() in _ALNUM or not chr(av).isascii():
                return True
        elif op is _sre.RANGE:
            lo, hi = av
            if hi >= 0x80 or any(chr(c).lower() in _ALNUM for c in range(lo, hi + 1)):
                return True
        elif not (op is _sre.CATEGORY and av is _sre.CATEGORY_SPACE):
            return True
    return False


def _starts(seq: list, acc: str, out: set[tuple[str, bool]]) -> None:
    """Add to ``out`` each ``(prefix, ends_word)`` such that every match of ``seq`` (preceded by the
    literal ``acc``) starts with one of the prefixes, lower-cased; ``ends_word``: the character after
    the prefix is not in [a-z0-9] (or the text ends there)."""
    if len(out) > _PREFIX_MAX:
        raise _Unbounded
    for k, (op, av) in enumerate(seq):
        if len(acc) >= _PREFIX_LEN:
            break
        if op is _sre.LITERAL:
            ch = chr(av).lower()
            if not ch.isascii() or len(ch) != 1:
                break
            acc += ch
        elif op is _sre.AT:
            if av is _sre.AT_BOUNDARY and acc and acc[-1] in _ALNUM:
                out.add((acc, True))
                return
        elif op in (_sre.ASSERT, _sre.ASSERT_NOT):
            continue
        elif op is _sre.IN:
            out.add((acc, not _class_has_alnum(av)))
            return
        elif op is _sre.SUBPATTERN:
            _starts(list(av[-1].data) + seq[k + 1 :], acc, out)
            return
        elif op is _sre.BRANCH:
            for alt in av[1]:
                _starts(list(alt.data) + seq[k + 1 :], acc, out)
            return
        elif op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT):
            lo, hi, item = av
            if lo == 0:
                _starts(seq[k + 1 :], acc, out)
            # once and on (at most once), or once and then unknown (it may repeat)
            _starts(list(item.data) + (seq[k + 1 :] if hi == 1 else [(_STOP, None)]), acc, out)
            return
        else:  # any other item, or _STOP (what follows a repeated item)
            break
    out.add((acc, False))


def _word_test(prefixes: set[tuple[str, bool]]) -> list[tuple[str, int]] | None:
    """Word-level tests for prefixes: (string, kind) with kind 0: the word is the string, 1: the word
    starts with the string. None when some prefix says nothing about the word."""
    tests = []
    for s, ends in prefixes:
        word = _leading_run(s)
        if not s:
            return None
        if not word:
            continue  # starts with a non-word character: never at a word start
        tests.append((word, 0 if word != s or ends else 1))
    return tests


# (note, scanner, positions): the positions of the note's words that the scanner's finditer would
# look at, found by a caller's pass over the words for several lexicons (see offer_positions)
_offered: list[tuple] = [(None, None, None)]


def offer_positions(scanner: Scanner, text: str, positions: list[int]) -> None:
    """Keep ``positions`` for the next :meth:`Scanner.finditer` of ``scanner`` on this very ``text``
    (the same object): what its word pass would find, in order (one note is kept)."""
    _offered[0] = (text, scanner, positions)


class Scanner:
    """Finds the matches of a :func:`dispatch_regex` by trying it only where a match can start.

    Every alternative starts with a literal word; the scanner keeps the first three letters of each,
    walks the note's word starts (and ``;``/``[``), and runs the anchored regex only at words whose
    first letters can begin a match. Same matches as ``finditer``, a fraction of the time, because
    Python's engine otherwise tries every branch at every character."""

    _WORD_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]|[;\[]")

    def __init__(self, patterns: list[str]):
        self.patterns = list(patterns)
        self.regex = dispatch_regex(patterns)
        self._memo: dict[str, str] = {}  # word → its key for finditer ("" when no match starts there)
        self.prefixes: set[str] = set()
        self.short: set[str] = set()
        self.full_scan = False
        for pat in patterns:
            for alt in split_alternatives(pat):
                for body in _expand_leading_group(_LEAD.sub("", alt)):
                    for option in _leading_options(body):
                        lit = _literal_prefix(_LEAD.sub("", option))
                        if option.startswith((";", "\\[")):
                            continue
                        if not lit or not lit[0].isalnum():
                            self.full_scan = True
                        elif len(lit) >= 3:
                            self.prefixes.add(lit[:3])
                        else:
                            self.short.add(lit)

    @functools.cached_property
    def _candidates(self) -> re.Pattern[str]:
        """Word starts whose first letters can begin a match (a trie, scanned in C)."""
        words = sorted(self.prefixes | self.short)
        return re.compile(r"(?<![A-Za-z0-9])(?:" + trie_regex(words) + r")|[;\[]", re.IGNORECASE)

    @functools.cached_property
    def _fast(self) -> tuple | None:
        """What the word-level path needs (None when it does not apply: a pattern with its own groups,
        a non-ASCII trie word).

        - the trie words by length (the candidates regex on a lower-cased note, read off its words);
        - the words whose trie word also covers the next word (``h/o``): they hide it, so they count;
        - per first character, tests a word must pass for some alternative to match there (sound: a
          literal prefix each match must start with, see :func:`_starts`); None: no test;
        - the dispatch regex cut by first character: at a position whose lower-cased character is
          ``c`` only the ``c`` branch (and the branches that start with a class or group, tried after
          it) can match, so ``sub[c]`` finds what the whole regex finds, with the same group names."""
        trie_words = sorted(self.prefixes | self.short)
        if not all(w.isascii() and w == w.lower() and w[:1] in _ALNUM for w in trie_words):
            return None
        by_first, other = _dispatch_parts(self.patterns)
        if re.compile(_join_dispatch(by_first, other)).groups != sum(map(len, by_first.values())) + len(other):
            return None
        by_len = [frozenset(w for w in trie_words if len(w) == n) for n in (0, 1, 2, 3)]
        if any(len(w) > 3 for w in trie_words):
            return None
        # a word that a trie word with a non-word character starts ("by" of "by ")
        heads = frozenset(_leading_run(w) for w in trie_words if _leading_run(w) != w)
        hiding = frozenset(
            _leading_run(w)
            for w in trie_words
            if any(w[i] in ";[" or (w[i] in _ALNUM and w[i - 1] not in _ALNUM) for i in range(1, len(w)))
        )
        tests: dict[str, list[tuple[str, int]]] | None = {}
        try:
            other_tests: list[tuple[str, int]] = []
            for alt in other:
                prefixes: set[tuple[str, bool]] = set()
                _starts(list(_sre_parse.parse(alt, re.IGNORECASE).data), "", prefixes)
                t = _word_test(prefixes)
                if t is None:
                    raise _Unbounded
                other_tests += t
            for c, alts in by_first.items():
                tests[c] = list(other_tests)
                for alt in alts:
                    prefixes = set()
                    _starts(list(_sre_parse.parse(c + alt, re.IGNORECASE).data), "", prefixes)
                    t = _word_test(prefixes)
                    if t is None:
                        raise _Unbounded
                    tests[c] += t
            default_tests = other_tests
        except (_Unbounded, re.error, RecursionError):
            tests = None
            default_tests = None
        rest = re.compile(_join_dispatch({}, other), re.IGNORECASE) if other else None
        subs = {c: re.compile(_join_dispatch({c: alts}, other), re.IGNORECASE) for c, alts in by_first.items()}
        return by_len, heads, hiding, tests, default_tests, subs, rest

    def _word_key(self, word: str) -> str:
        """`` word `` when the scanner must look at this word, else ""."""
        by_len, heads, hiding, tests, default_tests, _, _ = self._fast
        if word in hiding:
            return f" {word} "
        if not (word[:3] in by_len[3] or word[:2] in by_len[2] or word[:1] in by_len[1] or word in heads):
            return ""
        if tests is not None:
            t = tests.get(word[0], default_tests)
            if not any(word == s if kind == 0 else word.startswith(s) for s, kind in t):
                return ""
        return f" {word} "

    def finditer(self, text: str) -> list[re.Match[str]]:
        if self.full_scan:
            return list(self.regex.finditer(text))
        fast = self._fast
        ix = lowered(text) if fast is not None else None
        if ix is None:
            return self._finditer_regex(text)
        pending = _offered[0]
        if pending[0] is text and pending[1] is self:
            _offered[0] = (None, None, None)
            return self.finditer_at(text, ix.low, pending[2])
        low, padded, words = ix.low, ix.padded, ix.words
        keys = word_keys(words, self._memo, self._word_key)
        # the positions the candidates regex may stop at: the words kept, and ";" / "["
        positions = []
        cursor = 0
        for key in filter(None, keys):
            pos = padded.find(key, cursor)
            cursor = pos + len(key) - 1
            positions.append(pos)
        return self.finditer_at(text, low, positions)

    def finditer_at(self, text: str, low: str, positions: list[int]) -> list[re.Match[str]]:
        """:meth:`finditer` on a note whose :func:`lowered` index ``low`` applies (and :attr:`_fast`),
        given the positions, in order, of the note's words that :meth:`_word_key` keeps (a caller may
        find them once for several scanners); ``positions`` is extended."""
        by_len, _, _, _, _, subs, rest = self._fast
        if ";" in low or "[" in low:
            for ch in ";[":
                i = low.find(ch)
                while i >= 0:
                    positions.append(i)
                    i = low.find(ch, i + 1)
            positions.sort()
        three, two, one = by_len[3], by_len[2], by_len[1]
        out = []
        last_end = -1
        scan_from = 0  # where the candidates regex resumes (its trie match consumes up to 3 characters)
        get = subs.get
        for pos in positions:
            if pos < scan_from:
                continue
            c = low[pos]
            if c in _ALNUM:
                if low[pos : pos + 3] in three:
                    scan_from = pos + 3
                elif low[pos : pos + 2] in two:
                    scan_from = pos + 2
                elif c in one:
                    scan_from = pos + 1
                else:
                    continue
            else:
                scan_from = pos + 1
            if pos < last_end:
                continue
            rx = get(c, rest)
            if rx is None:
                continue
            m = rx.match(text, pos)
            if m is not None and m.end() > m.start():
                out.append(m)
                last_end = m.end()
        return out

    def _finditer_regex(self, text: str) -> list[re.Match[str]]:
        out = []
        last_end = -1
        match = self.regex.match
        for w in self._candidates.finditer(text):
            pos = w.start()
            if pos < last_end:
                continue
            m = match(text, pos)
            if m is not None and m.end() > m.start():
                out.append(m)
                last_end = m.end()
        return out


def row_of(m: re.Match[str]) -> int:
    """Row index of a match of a :func:`dispatch_regex` pattern."""
    return int(m.lastgroup[1:].split("_")[0])


def _combined(name: str) -> tuple[re.Pattern[str], list[dict[str, str]]]:
    rows = [dict(r) for _, r in compiled(name)]
    return dispatch_regex([r["pattern"] for r in rows]), rows


@functools.cache
def agent_patterns() -> tuple[re.Pattern[str], list[dict[str, str]]]:
    return _combined("lexicon/agents.csv")


@functools.cache
def guidance_patterns() -> tuple[re.Pattern[str], list[dict[str, str]]]:
    return _combined("lexicon/guidance.csv")


@functools.cache
def diagnosis_patterns() -> tuple[re.Pattern[str], list[dict[str, str]]]:
    return _combined("lexicon/diagnoses.csv")


@functools.cache
def context_patterns() -> tuple[re.Pattern[str], list[dict[str, str]]]:
    """Context triggers, pseudo-triggers first so they win at the same position."""
    rows = [dict(r) for _, r in compiled("patterns/context_rules.csv")]
    # pseudo-triggers first, then multi-word backward/bidirectional rules, so "not used" wins over "not"
    rows.sort(key=lambda r: (r["category"] != "PSEUDO", r["direction"] == "forward"))
    return Scanner([r["pattern"] for r in rows]), rows


@functools.cache
def entity_patterns() -> tuple[re.Pattern[str], list[tuple[str, dict[str, str]]]]:
    """Agents, guidance terms and diagnosis concepts in one dispatched pattern (one pass over a note).
    Each row comes back as ``(table, row)`` with table ``agent``, ``guidance`` or ``dx``."""
    rows: list[tuple[str, dict[str, str]]] = []
    for kind, name in (("agent", "lexicon/agents.csv"), ("guidance", "lexicon/guidance.csv"), ("dx", "lexicon/diagnoses.csv")):
        rows.extend((kind, dict(r)) for _, r in compiled(name))
    return Scanner([r["pattern"] for _, r in rows]), rows
