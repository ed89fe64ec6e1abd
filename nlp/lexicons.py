"""Lexicons compiled once from the tables: muscles, nerves, products, agents, guidance, diagnoses.

Phrase lists are compiled into trie-shaped regular expressions, so one pass over a note finds the
longest alias at each position whatever the lexicon size.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

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

    def find(self, text: str) -> list[tuple[int, int, list[str]]]:
        """(start, end, ids) for every non-overlapping match, longest first."""
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


def dispatch_regex(patterns: list[str]) -> re.Pattern[str]:
    """One case-insensitive regex over several row patterns, dispatched on each alternative's first
    letter so the engine rejects most positions at once. ``m.lastgroup`` is ``r{row}_{alt}``.

    Python's engine tries every branch of a plain alternation at every position; grouping the branches
    under their (literal) first character makes the scan roughly as cheap as a trie."""
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
    parts = [f"[{c}{c.upper()}](?:{'|'.join(alts)})" for c, alts in sorted(by_first.items())]
    body = "(?<![A-Za-z0-9])(?:" + "|".join(parts) + ")" if parts else ""
    if other:
        body = "|".join([body, *other]) if body else "|".join(other)
    return re.compile(body, re.IGNORECASE)


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


class Scanner:
    """Finds the matches of a :func:`dispatch_regex` by trying it only where a match can start.

    Every alternative starts with a literal word; the scanner keeps the first three letters of each,
    walks the note's word starts (and ``;``/``[``), and runs the anchored regex only at words whose
    first letters can begin a match. Same matches as ``finditer``, a fraction of the time, because
    Python's engine otherwise tries every branch at every character."""

    _WORD_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9]|[;\[]")

    def __init__(self, patterns: list[str]):
        self.regex = dispatch_regex(patterns)
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

    def finditer(self, text: str) -> list[re.Match[str]]:
        if self.full_scan:
            return list(self.regex.finditer(text))
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
