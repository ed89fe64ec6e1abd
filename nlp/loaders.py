"""Cached, validated readers for the rule tables shipped in ``nlp/tables``.

Every table is read once, lazily, through :mod:`importlib.resources`; a malformed row raises
:class:`TableError` naming the file and line. Rows with ``valid_from``/``valid_to`` columns are
answered "as of a date" with :func:`active`.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
import tomllib
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from importlib import resources
from typing import Any, TypeVar

T = TypeVar("T")

Row = Mapping[str, str]


class TableError(ValueError):
    """A rule table is malformed."""


def _files() -> Any:
    return resources.files("nlp").joinpath("tables")


def read_text(name: str) -> str:
    """Text of one table file, by its path relative to ``nlp/tables``."""
    return _files().joinpath(name).read_text(encoding="utf-8")


_REQUIRED: dict[str, tuple[str, ...]] = {
    "lexicon/muscles.csv": ("muscle_id", "name", "region", "aliases", "source_id"),
    "lexicon/nerves.csv": ("nerve_id", "name", "aliases", "source_id"),
    "codes/icd.csv": ("rule_id", "concept", "system", "code", "valid_from", "source_id"),
    "rules/chemodenervation.csv": ("rule_id", "region", "code", "valid_from", "source_id"),
}


@functools.cache
def table(name: str) -> tuple[Row, ...]:
    """All rows of a CSV table; checks required columns and parses nothing else."""
    text = read_text(name)
    reader = csv.DictReader(io.StringIO(text))
    rows: list[Row] = []
    required = _REQUIRED.get(name, ())
    for line_no, rec in enumerate(reader, start=2):
        if None in rec or any(v is None for v in rec.values()):
            raise TableError(f"{name}:{line_no}: wrong number of columns")
        clean = {k.strip(): (v or "").strip() for k, v in rec.items()}
        for col in required:
            if not clean.get(col):
                raise TableError(f"{name}:{line_no}: empty required column {col!r}")
        for col in ("valid_from", "valid_to"):
            if clean.get(col):
                try:
                    date.fromisoformat(clean[col])
                except ValueError as exc:
                    raise TableError(f"{name}:{line_no}: bad date in {col!r}: {clean[col]!r}") from exc
        rows.append(clean)
    out = tuple(rows)
    _TABLES[id(out)] = out
    for r in out:
        _TABLE_ROWS[id(r)] = r
    return out


# what table() returned, by id (held here, so that an id keeps meaning the same object): only these rows
# and tables have their parsed dates and rows in force cached
_TABLES: dict[int, tuple[Row, ...]] = {}
_TABLE_ROWS: dict[int, Row] = {}


def _d(value: str) -> date | None:
    return date.fromisoformat(value) if value else None


# per table row, by id: (the row, valid_from, valid_to, option)
_ROWINFO: dict[int, tuple[Row, date | None, date | None, str]] = {}


def _info(row: Row) -> tuple[Row, date | None, date | None, str]:
    """A row's validity dates and option, parsed once for the rows of :func:`table` (which never change)."""
    key = id(row)
    got = _ROWINFO.get(key)
    if got is None or got[0] is not row:
        got = (row, _d(row.get("valid_from", "")), _d(row.get("valid_to", "")), row.get("option", ""))
        if _TABLE_ROWS.get(key) is row:
            _ROWINFO[key] = got
    return got


def _span(row: Row) -> tuple[date | None, date | None]:
    """A row's validity dates, parsed once (rows are cached and never change)."""
    info = _info(row)
    return info[1], info[2]


def is_active(row: Row, dos: date, options: Iterable[str] = ()) -> bool:
    """True when ``row`` is in force on ``dos`` and its ``option`` column (if any) is satisfied."""
    _, start, end, opt = _info(row)
    if start and dos < start:
        return False
    if end and dos > end:
        return False
    if opt:
        opts = options if isinstance(options, (tuple, frozenset, set)) else set(options)
        if opt.startswith("!"):
            return opt[1:] not in opts
        return opt in opts
    return True


class _Eras:
    """The rows of one cached table, with the dates where its set of rows in force changes: rows in force
    are answered once per (era, options)."""

    def __init__(self, rows: tuple[Row, ...]):
        self.rows = rows
        cuts: set[date] = set()
        for r in rows:
            _, start, end, _ = _info(r)
            if start:
                cuts.add(start)
            if end and end < date.max:
                cuts.add(end + timedelta(days=1))
        self.cuts = sorted(cuts)
        self.cache: dict[tuple[int, tuple[str, ...]], tuple[Row, ...]] = {}


_ERAS: dict[int, _Eras] = {}


def _eras(rows: tuple[Row, ...]) -> _Eras:
    eras = _ERAS.get(id(rows))
    if eras is None or eras.rows is not rows:
        eras = _Eras(rows)
        if _TABLES.get(id(rows)) is rows:
            _ERAS[id(rows)] = eras
    return eras


def era(rows: tuple[Row, ...], dos: date) -> int:
    """For a table (the tuple :func:`table` returns): a number that is the same for two dates exactly when
    the same rows are in force on both (before options), to key caches of what is derived from the rows
    in force (with ``id(rows)``)."""
    return bisect_right(_eras(rows).cuts, dos)


def active(rows: Iterable[Row], dos: date, options: Iterable[str] = ()) -> list[Row]:
    """Rows in force on ``dos`` under the given profile options (remembered per era and options for the
    tables :func:`table` returns)."""
    opts = tuple(options)
    if type(rows) is not tuple or _TABLES.get(id(rows)) is not rows:
        return [r for r in rows if is_active(r, dos, opts)]
    eras = _eras(rows)
    key = (bisect_right(eras.cuts, dos), opts)
    got = eras.cache.get(key)
    if got is None:
        got = eras.cache[key] = tuple(r for r in rows if is_active(r, dos, opts))
    return list(got)


_DERIVED: dict[tuple[Any, ...], Any] = {}


def in_force(path: str, dos: date, options: Iterable[str], build: Callable[[list[Row]], T]) -> T:
    """``build(rows of table(path) in force on dos under options)``, built once per era of the table,
    options and builder (``build`` must be a pure module-level function)."""
    rows = table(path)
    opts = tuple(options)
    key = (id(rows), era(rows, dos), opts, build)
    got = _DERIVED.get(key)
    if got is None:
        got = _DERIVED[key] = build(active(rows, dos, opts))
    return got


def split(value: str) -> list[str]:
    """A pipe-separated cell as a list (empty cell → empty list)."""
    return [v.strip() for v in value.split("|") if v.strip()] if value else []


@functools.cache
def compiled(name: str, column: str = "pattern", flags: int = re.IGNORECASE) -> tuple[tuple[re.Pattern[str], Row], ...]:
    """Each row of a pattern table with its regular expression compiled once."""
    out = []
    for i, row in enumerate(table(name), start=2):
        try:
            out.append((re.compile(row[column], flags), row))
        except re.error as exc:
            raise TableError(f"{name}:{i}: bad pattern: {exc}") from exc
    return tuple(out)


@functools.cache
def profile(name: str) -> dict[str, Any]:
    """A payer profile: ``medicare``, ``commercial`` or ``BASE+option+option``."""
    base, *extra = name.split("+")
    try:
        data = tomllib.loads(read_text(f"profiles/{base}.toml"))
    except FileNotFoundError:
        raise KeyError(f"unknown payer profile {base!r}; known: {', '.join(profile_names())}") from None
    known = {r["option"] for r in table("profiles/options.csv")}
    bad = [o for o in extra if o not in known]
    if bad:
        raise KeyError(f"unknown profile option(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
    data = dict(data)
    data["name"] = name
    data["options"] = tuple(dict.fromkeys([*data.get("options", []), *extra]))
    return data


def profile_names() -> list[str]:
    """Names of the shipped base profiles."""
    return sorted(p.name[:-5] for p in _files().joinpath("profiles").iterdir() if p.name.endswith(".toml"))


@functools.cache
def tables_digest() -> str:
    """SHA-256 over every shipped table, to tie artefacts and results to a rule version."""
    h = hashlib.sha256()
    stack = [_files()]
    paths = []
    while stack:
        node = stack.pop()
        for child in node.iterdir():
            if child.is_dir():
                stack.append(child)
            elif child.name.endswith((".csv", ".toml", ".json", ".jsonl")):
                paths.append(child)
    for p in sorted(paths, key=lambda p: str(p)):
        h.update(str(p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def sources() -> dict[str, Row]:
    """Source rows by id."""
    return {r["source_id"]: r for r in table("sources.csv")}
