"""Where the engine's time goes (``python -m bench.run --profile``).

Three passes over the same notes, each through the real ``btxcode batch`` path:

1. **stages**: the spaCy tokenizer, each pipeline component, and the functions ``nlp.engine`` calls from
   other ``nlp`` modules (``facts_from_doc``, ``map_claim`` …) are wrapped with timers; ``json.dumps``
   is timed in the loop; the remainder is engine glue (JSONL parsing, ``decode_note``, building the
   result dict, sha256, ``nlp.pipe`` plumbing). Timer overhead is ~1 µs per call.
2. **regexes**: every compiled pattern reachable from an ``nlp`` module (module globals, patterns inside
   module-level tuples/lists/dicts/dataclasses, and zero-argument cached builders such as
   ``lexicons.muscle_lexicon()``) is swapped for a timing proxy, and each module's ``re`` is swapped for
   a shim that times ``re.search(r"...")``-style calls by pattern. Time inside the regex engine is
   attributed to a named pattern; everything else stays where it was.
3. **cProfile**: the top 25 functions by cumulative time, then self time grouped by area (each ``nlp``
   module; built-ins and library code are charged to the ``nlp`` function that called them).

Everything is restored after each pass. Nothing in ``nlp/`` is edited.
"""

from __future__ import annotations

import copy
import cProfile
import dataclasses
import functools
import inspect
import io
import json
import os
import pstats
import re
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

perf = time.perf_counter


class Acc:
    """Accumulated seconds and call counts by key."""

    def __init__(self) -> None:
        self.t: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.src: dict[str, str] = {}
        self.callers: dict[str, set[str]] = defaultdict(set)

    def caller(self, key: str, depth: int) -> None:
        """Note which nlp function made this call (``depth`` frames up from the caller of this); only the
        first 200 calls of each pattern are looked at, to keep the proxies cheap."""
        if self.n[key] >= 200:
            return
        f = sys._getframe(depth + 1)
        self.callers[key].add(f"{_short(f.f_globals.get('__name__', '?'))}.{f.f_code.co_name}")

    def add(self, key: str, dt: float) -> None:
        self.t[key] += dt
        self.n[key] += 1


class TimedCall:
    """A callable wrapped with a timer. Deliberately has no ``pipe`` attribute, so spaCy calls
    ``__call__`` once per doc (the btx components have no batch ``pipe`` anyway)."""

    def __init__(self, fn: Callable[..., Any], key: str, acc: Acc):
        self.fn, self.key, self.acc = fn, key, acc

    def __call__(self, *a: Any, **k: Any) -> Any:
        t = perf()
        try:
            return self.fn(*a, **k)
        finally:
            self.acc.add(self.key, perf() - t)

    def __getattr__(self, name: str) -> Any:
        if name == "pipe":
            raise AttributeError(name)
        return getattr(self.fn, name)


class Patch:
    """setattr with undo."""

    def __init__(self) -> None:
        self.undo: list[tuple[Any, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        self.undo.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def restore(self) -> None:
        for obj, name, old in reversed(self.undo):
            setattr(obj, name, old)
        self.undo.clear()


def engine_batch(engine_path: Any, n: int, on_dumps: Callable[[float], None] | None = None) -> float:
    """One pass of the batch path over the first n notes; returns wall seconds."""
    with open(os.devnull, "w", encoding="utf-8") as sink, open(engine_path.input_file(n), encoding="utf-8") as fin:
        t0 = perf()
        for result in engine_path.engine.suggest_many(engine_path.read(fin)):
            t = perf()
            sink.write(json.dumps(result, ensure_ascii=False) + "\n")
            if on_dumps is not None:
                on_dumps(perf() - t)
        return perf() - t0


# ------------------------------------------------------------------------------------- 1. stages


def stage_pass(engine_path: Any, n: int) -> dict[str, Any]:
    import nlp.engine as engine_mod

    acc = Acc()
    patch = Patch()
    nlp = engine_path.engine.nlp
    patch.set(nlp, "tokenizer", TimedCall(nlp.tokenizer, "spaCy tokenizer", acc))
    original_components = list(nlp._components)
    nlp._components[:] = [(name, TimedCall(proc, f"component {name}", acc)) for name, proc in original_components]
    for name, obj in list(vars(engine_mod).items()):
        mod = getattr(obj, "__module__", "") or ""
        if inspect.isfunction(obj) and mod.startswith("nlp.") and mod != "nlp.engine":
            patch.set(engine_mod, name, TimedCall(obj, f"{name} ({mod})", acc))
    try:
        from nlp.facts import Facts

        if hasattr(Facts, "as_dict"):
            fn = Facts.as_dict
            patch.set(Facts, "as_dict", lambda self, *a, **k: _timed(acc, "Facts.as_dict (nlp.facts)", fn, self, *a, **k))
    except ImportError:
        pass
    scorer = getattr(engine_path.engine, "scorer", None)
    if scorer is not None and hasattr(scorer, "score"):
        patch.set(scorer, "score", TimedCall(scorer.score, f"scorer.score ({type(scorer).__module__})", acc))
    try:
        total = engine_batch(engine_path, n, on_dumps=lambda dt: acc.add("json.dumps + write", dt))
    finally:
        nlp._components[:] = original_components
        patch.restore()
    rows = [{"stage": k, "calls": acc.n[k], "s": round(v, 4), "ms_per_note": round(v * 1000 / n, 3),
             "share": round(v / total, 4)} for k, v in acc.t.items()]
    # the facts time as measured includes Facts.as_dict only if facts_from_doc calls it; as_dict is
    # called from Engine._result, which is glue: subtract nothing, the keys are disjoint in practice
    rest = total - sum(acc.t.values())
    rows.append({"stage": "engine glue (JSONL read, decode_note, result dict, sha256, nlp.pipe plumbing)",
                 "calls": n, "s": round(rest, 4), "ms_per_note": round(rest * 1000 / n, 3),
                 "share": round(rest / total, 4)})
    rows.sort(key=lambda r: -r["s"])
    return {"notes": n, "total_s": round(total, 4), "ms_per_note": round(total * 1000 / n, 3), "rows": rows}


def _timed(acc: Acc, key: str, fn: Callable[..., Any], *a: Any, **k: Any) -> Any:
    t = perf()
    try:
        return fn(*a, **k)
    finally:
        acc.add(key, perf() - t)


# ------------------------------------------------------------------------------------- 2. regexes


class TimedIter:
    __slots__ = ("_it", "_k", "_a")

    def __init__(self, it: Iterator[re.Match[str]], key: str, acc: Acc):
        self._it, self._k, self._a = it, key, acc

    def __iter__(self) -> TimedIter:
        return self

    def __next__(self) -> re.Match[str]:
        t = perf()
        try:
            return next(self._it)
        finally:
            self._a.t[self._k] += perf() - t


class TimedPattern:
    """A compiled pattern that charges the time spent in the regex engine to ``key``."""

    __slots__ = ("_p", "_k", "_a")

    def __init__(self, p: re.Pattern[str], key: str, acc: Acc):
        self._p, self._k, self._a = p, key, acc
        acc.src.setdefault(key, p.pattern if isinstance(p.pattern, str) else repr(p.pattern))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)

    def _call(self, meth: str, a: tuple[Any, ...], k: dict[str, Any]) -> Any:
        self._a.caller(self._k, 2)
        t = perf()
        try:
            return getattr(self._p, meth)(*a, **k)
        finally:
            self._a.add(self._k, perf() - t)

    def search(self, *a: Any, **k: Any) -> Any:
        return self._call("search", a, k)

    def match(self, *a: Any, **k: Any) -> Any:
        return self._call("match", a, k)

    def fullmatch(self, *a: Any, **k: Any) -> Any:
        return self._call("fullmatch", a, k)

    def sub(self, *a: Any, **k: Any) -> Any:
        return self._call("sub", a, k)

    def subn(self, *a: Any, **k: Any) -> Any:
        return self._call("subn", a, k)

    def findall(self, *a: Any, **k: Any) -> Any:
        return self._call("findall", a, k)

    def split(self, *a: Any, **k: Any) -> Any:
        return self._call("split", a, k)

    def finditer(self, *a: Any, **k: Any) -> Any:
        self._a.caller(self._k, 1)
        t = perf()
        it = self._p.finditer(*a, **k)
        self._a.add(self._k, perf() - t)
        return TimedIter(it, self._k, self._a)


class ReShim:
    """Stands in for the ``re`` module inside one ``nlp`` module: times the module-level functions by
    pattern (the per-call ``re._compile`` cache lookup included)."""

    def __init__(self, modname: str, acc: Acc):
        self._mod, self._acc = modname, acc

    def __getattr__(self, name: str) -> Any:
        return getattr(re, name)

    def _key(self, fn: str, pattern: Any) -> tuple[str, Any]:
        if isinstance(pattern, TimedPattern):
            return pattern._k, pattern._p
        src = pattern.pattern if isinstance(pattern, re.Pattern) else pattern
        key = f"{self._mod}: re.{fn}(r{str(src)[:48]!r}{'…' if len(str(src)) > 48 else ''})"
        self._acc.src.setdefault(key, str(src))
        return key, pattern

    def _run(self, fn: str, pattern: Any, a: tuple[Any, ...], k: dict[str, Any]) -> Any:
        key, pattern = self._key(fn, pattern)
        self._acc.caller(key, 2)
        t = perf()
        try:
            out = getattr(re, fn)(pattern, *a, **k)
        finally:
            self._acc.add(key, perf() - t)
        return TimedIter(out, key, self._acc) if fn == "finditer" else out

    def search(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("search", pattern, a, k)

    def match(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("match", pattern, a, k)

    def fullmatch(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("fullmatch", pattern, a, k)

    def sub(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("sub", pattern, a, k)

    def subn(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("subn", pattern, a, k)

    def findall(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("findall", pattern, a, k)

    def split(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("split", pattern, a, k)

    def finditer(self, pattern: Any, *a: Any, **k: Any) -> Any:
        return self._run("finditer", pattern, a, k)

    def compile(self, pattern: Any, flags: int = 0) -> Any:
        key, pattern = self._key("compile", pattern)
        key = key.replace(": re.compile(", ": re.compile at call time (")
        t = perf()
        p = re.compile(pattern, flags)
        self._acc.add(key, perf() - t)
        return TimedPattern(p, key, self._acc)


def proxify(value: Any, key: str, acc: Acc, depth: int = 0) -> tuple[Any, bool]:
    """``value`` with every compiled pattern inside it replaced by a TimedPattern (copies containers)."""
    if isinstance(value, re.Pattern):
        return TimedPattern(value, key, acc), True
    if depth >= 3:
        return value, False
    if isinstance(value, (tuple, list)) and len(value) <= 2000:
        items, changed = [], False
        for i, v in enumerate(value):
            nv, c = proxify(v, f"{key}[{i}]", acc, depth + 1)
            items.append(nv)
            changed |= c
        if not changed:
            return value, False
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*items), True
        return (tuple(items) if isinstance(value, tuple) else items), True
    if isinstance(value, dict) and len(value) <= 2000:
        out, changed = {}, False
        for k, v in value.items():
            nv, c = proxify(v, f"{key}[{k!r}]", acc, depth + 1)
            out[k] = nv
            changed |= c
        return (out, True) if changed else (value, False)
    if (not dataclasses.is_dataclass(value) and not isinstance(value, type) and hasattr(value, "__dict__")
            and (type(value).__module__ or "").startswith("nlp")):
        # a plain object of an nlp class (e.g. a scanner holding its regex): a shallow copy with proxies
        changes = {}
        for name, v in vars(value).items():
            nv, c = proxify(v, f"{key}.{name}", acc, depth + 1)
            if c:
                changes[name] = nv
        if changes:
            clone = copy.copy(value)
            for name, nv in changes.items():
                object.__setattr__(clone, name, nv)
            return clone, True
        return value, False
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for f in dataclasses.fields(value):
            if f.init:
                nv, c = proxify(getattr(value, f.name), f"{key}.{f.name}", acc, depth + 1)
                if c:
                    changes[f.name] = nv
        if changes:
            try:
                return dataclasses.replace(value, **changes), True
            except (TypeError, ValueError):
                return value, False
    return value, False


def _short(modname: str) -> str:
    parts = modname.split(".")
    return ".".join(parts[2:] if parts[:2] == ["nlp", "components"] else parts[1:]) or modname


def instrument_regexes(acc: Acc) -> Patch:
    patch = Patch()
    mods = [m for name, m in sorted(sys.modules.items()) if m is not None and (name == "nlp" or name.startswith("nlp."))]
    for mod in mods:
        short = _short(mod.__name__)
        ns = vars(mod)
        if ns.get("re") is re:
            patch.set(mod, "re", ReShim(short, acc))
        for name, value in list(ns.items()):
            if name.startswith("__") or inspect.ismodule(value):
                continue
            if isinstance(value, functools._lru_cache_wrapper) and getattr(value, "__module__", None) == mod.__name__:
                try:
                    if inspect.signature(value).parameters:
                        continue
                    built, changed = proxify(value(), f"{short}.{name}()", acc)
                except Exception:  # noqa: BLE001 - a builder we cannot call without arguments
                    continue
                if changed:
                    patch.set(mod, name, functools.update_wrapper(lambda built=built: built, value))
                continue
            if inspect.isclass(value) and value.__module__ == mod.__name__:
                for cname, cval in list(vars(value).items()):
                    if isinstance(cval, re.Pattern):
                        patch.set(value, cname, TimedPattern(cval, f"{short}.{name}.{cname}", acc))
                continue
            if inspect.isfunction(value) or inspect.isclass(value) or callable(value) and not isinstance(value, re.Pattern):
                continue
            new, changed = proxify(value, f"{short}.{name}", acc)
            if changed:
                patch.set(mod, name, new)
    return patch


def regex_pass(engine_path: Any, n: int) -> dict[str, Any]:
    acc = Acc()
    patch = instrument_regexes(acc)
    try:
        total = engine_batch(engine_path, n)
    finally:
        patch.restore()
    regex_total = sum(acc.t.values())
    rows = [{"pattern": k, "calls": acc.n[k], "ms": round(v * 1000, 2), "ms_per_note": round(v * 1000 / n, 4),
             "share_of_engine": round(v / total, 4), "used_by": sorted(acc.callers.get(k, ())),
             "source": acc.src.get(k, "")[:200]}
            for k, v in sorted(acc.t.items(), key=lambda kv: -kv[1])]
    by_module: dict[str, float] = defaultdict(float)
    for k, v in acc.t.items():
        by_module[re.split(r"[.:\[]", k, maxsplit=1)[0]] += v
    return {
        "notes": n, "total_s": round(total, 4), "regex_s": round(regex_total, 4),
        "regex_share": round(regex_total / total, 4),
        "by_module": {k: round(v, 4) for k, v in sorted(by_module.items(), key=lambda kv: -kv[1])},
        "patterns_instrumented": len(acc.src), "rows": rows,
    }


# ------------------------------------------------------------------------------------- 3. cProfile


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    for marker in ("/site-packages/", "/lib/python3"):
        if marker in filename:
            tail = filename.split(marker, 1)[1]
            return f"{tail.split('/', 1)[1] if marker == '/lib/python3' and '/' in tail else tail}:{line}({name})"
    if "/nlp/" in filename:
        return f"nlp/{filename.rsplit('/nlp/', 1)[1]}:{line}({name})"
    if "/bench/" in filename:
        return f"bench/{filename.rsplit('/bench/', 1)[1]}:{line}({name})"
    return f"{filename}:{line}({name})"


def _home_area(func: tuple[str, int, str]) -> str | None:
    filename = func[0]
    if "/nlp/" in filename:
        rel = filename.rsplit("/nlp/", 1)[1]
        if rel.startswith("components/"):
            return f"extract: nlp/{rel}"
        if rel.startswith("mapping/"):
            return "mapping: nlp/mapping/*"
        if rel in ("engine.py", "cli.py"):
            return "engine glue: nlp/engine.py, nlp/cli.py"
        return f"nlp/{rel}"
    if "/json/" in filename:
        return "json.dumps / json.loads"
    if "/spacy/" in filename or "/thinc/" in filename:
        return "spaCy (tokenizer, Language.pipe, Doc/Span)"
    if "/bench/" in filename:
        return "bench loop"
    return None


def cprofile_pass(engine_path: Any, n: int, top: int = 25) -> dict[str, Any]:
    prof = cProfile.Profile()
    prof.enable()
    total = engine_batch(engine_path, n)
    prof.disable()
    st = pstats.Stats(prof)
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = st.stats  # type: ignore[attr-defined]

    # Each function's self time is charged to an owner: an nlp function owns its own time; json, spaCy
    # and bench code are areas of their own; built-ins and other library code (re, sklearn, numpy …) are
    # charged to their callers, in proportion to the self time each caller edge accounts for, up to the
    # nearest owner. Recursive edges are dropped and the rest renormalised.
    Owner = tuple[str, int, str] | str
    memo: dict[tuple[str, int, str], dict[Owner, float]] = {}

    def owner_of(func: tuple[str, int, str]) -> Owner | None:
        if "/nlp/" in func[0]:
            return func
        return _home_area(func)

    def share(func: tuple[str, int, str], seen: frozenset[tuple[str, int, str]] = frozenset()) -> tuple[dict[Owner, float], bool]:
        """(owner -> fraction of func's self time, clean); not memoised when a recursive edge was dropped."""
        if func in memo:
            return memo[func], True
        own = owner_of(func)
        if own is not None:
            memo[func] = {own: 1.0}
            return memo[func], True
        seen = seen | {func}
        edges: list[tuple[dict[Owner, float], float]] = []
        clean = True
        for caller, v in stats[func][4].items():
            if caller in seen:
                clean = False
                continue
            if caller not in stats or v[2] <= 0:
                continue
            sub, ok = share(caller, seen)
            clean &= ok
            if sub:  # empty: every path from that caller leads back into the cycle
                edges.append((sub, v[2]))
        tot = sum(w for _, w in edges)
        out: dict[Owner, float] = defaultdict(float)
        if tot <= 0:
            if clean:
                out["other (unattributed library time)"] = 1.0
        else:
            for sub, w in edges:
                for o, f in sub.items():
                    out[o] += f * w / tot
        if clean:
            memo[func] = dict(out)
        return dict(out), clean

    owned: dict[Owner, float] = defaultdict(float)
    for func, (_cc, _nc, tt, _ct, _callers) in stats.items():
        for o, f in share(func)[0].items():
            owned[o] += tt * f
    areas: dict[str, float] = defaultdict(float)
    own: dict[tuple[str, int, str], float] = {}
    for o, v in owned.items():
        if isinstance(o, tuple):
            areas[_home_area(o) or "nlp"] += v
            own[o] = v
        else:
            areas[o] += v
    profiled = sum(v[2] for v in stats.values())
    area_rows = [{"area": a, "s": round(v, 4), "share": round(v / profiled, 4)}
                 for a, v in sorted(areas.items(), key=lambda kv: -kv[1])]
    own_rows = [{"function": _label(f), "own_s": round(v, 4), "share": round(v / profiled, 4),
                 "calls": stats[f][1], "cum_s": round(stats[f][3], 4)}
                for f, v in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    cum = sorted(stats.items(), key=lambda kv: -kv[1][3])
    cum_rows = [{"function": _label(f), "ncalls": v[1], "tottime_s": round(v[2], 4), "cumtime_s": round(v[3], 4),
                 "percall_cum_ms": round(v[3] * 1000 / max(v[1], 1), 4)}
                for f, v in cum if not f[2].startswith("<method 'disable'")][:top]
    text = io.StringIO()
    pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(top)
    return {"notes": n, "wall_s_under_profiler": round(total, 3), "profiled_s": round(profiled, 3),
            "top_cumulative": cum_rows, "areas": area_rows, "nlp_functions_by_own_time": own_rows,
            "pstats_text": text.getvalue()}


# ------------------------------------------------------------------------------------- medspaCy


def medspacy_stages(med: Any, n: int) -> dict[str, Any]:
    acc = Acc()
    nlp = med.nlp
    tok = nlp.tokenizer
    nlp.tokenizer = TimedCall(tok, "medspaCy tokenizer", acc)
    original = list(nlp._components)
    nlp._components[:] = [(name, TimedCall(proc, f"component {name}", acc)) for name, proc in original]
    try:
        t0 = perf()
        for _ in nlp.pipe(med.texts[:n]):
            pass
        total = perf() - t0
    finally:
        nlp._components[:] = original
        nlp.tokenizer = tok
    rows = [{"stage": k, "s": round(v, 4), "ms_per_note": round(v * 1000 / n, 3), "share": round(v / total, 4)}
            for k, v in sorted(acc.t.items(), key=lambda kv: -kv[1])]
    return {"notes": n, "total_s": round(total, 4), "ms_per_note": round(total * 1000 / n, 3), "rows": rows}


# ------------------------------------------------------------------------------------- driver + report


def profile_engine(engine_path: Any, n: int, med: Any = None) -> dict[str, Any]:
    print(f"profiling the engine on {n} notes: stages, regexes, cProfile …", file=sys.stderr, flush=True)
    engine_batch(engine_path, min(n, 20))  # warm
    c0 = time.process_time()
    base = engine_batch(engine_path, n)
    base_cpu_ms = (time.process_time() - c0) * 1000 / n
    out: dict[str, Any] = {"notes": n, "uninstrumented_s": round(base, 4),
                           "uninstrumented_ms_per_note": round(base * 1000 / n, 3),
                           "uninstrumented_cpu_ms_per_note": round(base_cpu_ms, 3)}
    # the passes time with perf_counter (cheap); their shares are scaled to the uninstrumented CPU time
    # per note, so a burst of load from other processes during one pass does not distort the ms figures
    out["stages"] = stage_pass(engine_path, n)
    for r in out["stages"]["rows"]:
        r["est_cpu_ms_per_note"] = round(r["share"] * base_cpu_ms, 3)
    out["regexes"] = regex_pass(engine_path, n)
    for r in out["regexes"]["rows"]:
        r["est_cpu_ms_per_note"] = round(r["share_of_engine"] * base_cpu_ms, 4)
    out["regexes"]["est_regex_cpu_ms_per_note"] = round(out["regexes"]["regex_share"] * base_cpu_ms, 3)
    out["cprofile"] = cprofile_pass(engine_path, n)
    if med is not None:
        out["medspacy_stages"] = medspacy_stages(med, min(n, 100))
    return out


def _rows(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_profile(p: dict[str, Any]) -> None:
    s, rx, cp = p["stages"], p["regexes"], p["cprofile"]
    print(f"\n== Engine stages ({s['notes']} notes; uninstrumented {p['uninstrumented_cpu_ms_per_note']:.2f} CPU ms/note, "
          f"{p['uninstrumented_ms_per_note']:.2f} wall; with timers {s['ms_per_note']:.2f} wall) ==")
    print("(share: of the timed pass's wall time; ms/note: share x uninstrumented CPU ms/note)")
    print(_rows([("stage", "ms/note", "share")]
                + [(r["stage"], f"{r['est_cpu_ms_per_note']:.3f}", f"{r['share']:.1%}") for r in s["rows"]]))
    print(f"\n== Regex time by pattern ({rx['patterns_instrumented']} patterns instrumented; regex engine total "
          f"{rx['regex_share']:.1%} of the engine's time) ==")
    print(_rows([("pattern", "calls", "ms/note", "share", "used by")]
                + [(r["pattern"][:60], str(r["calls"]), f"{r['est_cpu_ms_per_note']:.3f}", f"{r['share_of_engine']:.1%}",
                    ", ".join(r["used_by"])[:70]) for r in rx["rows"][:25]]))
    print(f"(ms/note: share x uninstrumented CPU ms/note; the proxied pass ran at {rx['total_s'] * 1000 / rx['notes']:.2f} "
          f"wall ms/note vs {p['uninstrumented_ms_per_note']:.2f} without proxies, so shares are slight underestimates)")
    print("by defining module: " + ", ".join(f"{k} {v * 1000 / rx['notes']:.2f} ms/note" for k, v in rx["by_module"].items()))
    print(f"\n== cProfile: top 25 by cumulative time ({cp['notes']} notes, {cp['wall_s_under_profiler']:.1f} s "
          "under the profiler) ==")
    print(_rows([("function", "ncalls", "tottime s", "cumtime s")]
                + [(r["function"][:100], str(r["ncalls"]), f"{r['tottime_s']:.3f}", f"{r['cumtime_s']:.3f}")
                   for r in cp["top_cumulative"]]))
    print("\n== cProfile: self time by area (built-ins and library code charged to their nlp caller) ==")
    print(_rows([("area", "s", "share")] + [(r["area"], f"{r['s']:.3f}", f"{r['share']:.1%}") for r in cp["areas"]]))
    print("\n== cProfile: nlp functions by own time (self time + the library/built-in time charged to them) ==")
    print(_rows([("function", "calls", "own s", "share", "cum s")]
                + [(r["function"], str(r["calls"]), f"{r['own_s']:.3f}", f"{r['share']:.1%}",
                    f"{r['cum_s']:.3f}") for r in cp["nlp_functions_by_own_time"]]))
    if p.get("medspacy_stages"):
        m = p["medspacy_stages"]
        print(f"\n== medspaCy default pipeline stages ({m['notes']} notes, {m['ms_per_note']:.2f} ms/note) ==")
        print(_rows([("stage", "ms/note", "share")] + [(r["stage"], f"{r['ms_per_note']:.3f}", f"{r['share']:.1%}")
                                                      for r in m["rows"]]))


def stages_markdown(p: dict[str, Any]) -> str:
    s = p["stages"]
    lines = [f"Where the engine's time goes ({s['notes']} notes, `--profile`: timers around each stage; ms/note = share × "
             f"the uninstrumented {p['uninstrumented_cpu_ms_per_note']:.2f} CPU ms/note):", "",
             "| stage | ms/note | share |", "|---|---:|---:|"]
    lines += [f"| {r['stage']} | {r['est_cpu_ms_per_note']:.3f} | {r['share']:.1%} |" for r in s["rows"]]
    rx = p["regexes"]
    lines += ["", f"Regex engine time: {rx['regex_share']:.1%} of the engine. Costliest patterns:", "",
              "| pattern | used by | calls | ms/note | share |", "|---|---|---:|---:|---:|"]
    lines += [f"| `{r['pattern'][:70]}` | {', '.join(r['used_by'])[:60]} | {r['calls']} | {r['est_cpu_ms_per_note']:.3f} "
              f"| {r['share_of_engine']:.1%} |" for r in rx["rows"][:12]]
    if p.get("medspacy_stages"):
        m = p["medspacy_stages"]
        lines += ["", f"medspaCy default, by stage ({m['notes']} notes): "
                  + ", ".join(f"{r['stage']} {r['share']:.0%}" for r in m["rows"])]
    return "\n".join(lines)


def profile_markdown(p: dict[str, Any]) -> str:
    cp = p["cprofile"]
    lines = [stages_markdown(p), "", "cProfile self time by area:", "", "| area | s | share |", "|---|---:|---:|"]
    lines += [f"| {r['area']} | {r['s']:.3f} | {r['share']:.1%} |" for r in cp["areas"]]
    lines += ["", "nlp functions by own time (self time + the library/built-in time charged to them):", "",
              "| function | calls | own s | share |", "|---|---:|---:|---:|"]
    lines += [f"| `{r['function']}` | {r['calls']} | {r['own_s']:.3f} | {r['share']:.1%} |"
              for r in cp["nlp_functions_by_own_time"][:15]]
    return "\n".join(lines) + "\n"
