"""Plain-Python evaluation of a fitted confidence model, with the numbers of ``predict_proba``.

The persisted model is the scikit-learn object (``CalibratedClassifierCV`` over a frozen
``DictVectorizer`` + ``GradientBoostingClassifier`` pipeline). Calling ``predict_proba`` on it costs a
few milliseconds per call in input validation alone — more than the whole engine spends on a note — so
the scorer compiles it once at load time into flat node arrays and walks every tree for all rows of a
batch of notes (:meth:`CompiledSet.predict_notes`) in a few vectorised NumPy steps (one per tree level).
Rows are encoded through precompiled lookups, and the note-level features a note shares with all its
rows are encoded once. :meth:`CompiledModel.from_sklearn` returns ``None`` for any other model
structure, and the scorer checks the compiled numbers against ``predict_proba`` on reference rows
before using them (falling back to ``predict_proba`` on any difference).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from numbers import Number
from operator import itemgetter
from typing import Any

_NUMBER = (int, float, bool)
_SEQ = (list, tuple, set, frozenset)


def encode(row: dict[str, Any], sep: str = "=") -> dict[str, float]:
    """``DictVectorizer``'s view of one row: numbers as they are, strings as ``name=value`` → 1, iterables
    of strings as counts of ``name=value``; values rounded to float32 as the trees see them."""
    out: dict[str, float] = {}
    for k, v in row.items():
        t = type(v)
        if t is str:
            key = f"{k}{sep}{v}"
            out[key] = out.get(key, 0.0) + 1.0
        elif t in _NUMBER or isinstance(v, Number):
            out[k] = out.get(k, 0.0) + float(v)
        elif t in _SEQ or isinstance(v, Iterable):
            for vv in v:
                key = f"{k}{sep}{vv}"
                out[key] = out.get(key, 0.0) + 1.0
        else:
            raise TypeError(f"feature {k!r} has unsupported value {v!r}")
    if out:
        keys = list(out)
        out = dict(zip(keys, array("f", [out[k] for k in keys]).tolist(), strict=True))
    return out


class CompiledModel:
    """Sigmoid-calibrated gradient boosting as flat node arrays, evaluated for all rows and trees at once."""

    def __init__(
        self,
        columns: dict[str, int],
        feat: Any,
        thr: Any,
        left: Any,
        right: Any,
        value: Any,
        roots: Any,
        depth: int,
        init: float,
        calibrators: list[tuple[float, float]],
        sep: str,
    ):
        self.columns = columns
        # base feature names some column belongs to: rows are encoded only for these
        self.names = {c.split(sep, 1)[0] for c in columns}
        self.feat, self.thr, self.left, self.right, self.value, self.roots = feat, thr, left, right, value, roots
        self.depth = depth
        self.init = init
        self.calibrators = calibrators
        self.sep = sep

    @classmethod
    def from_sklearn(cls, model: Any) -> CompiledModel | None:
        """Compile ``CalibratedClassifierCV(FrozenEstimator(Pipeline(DictVectorizer, GradientBoostingClassifier)),
        method="sigmoid")``; None for anything else."""
        try:
            import numpy as np
            from sklearn.calibration import CalibratedClassifierCV
            from sklearn.ensemble import GradientBoostingClassifier
            from sklearn.feature_extraction import DictVectorizer
            from sklearn.pipeline import Pipeline

            if not isinstance(model, CalibratedClassifierCV) or model.method != "sigmoid":
                return None
            calibrators = []
            pipe = None
            for cc in model.calibrated_classifiers_:
                est = getattr(cc.estimator, "estimator", cc.estimator)  # unwrap FrozenEstimator
                if pipe is None:
                    pipe = est
                elif est is not pipe:
                    return None
                if len(cc.calibrators) != 1:
                    return None
                cal = cc.calibrators[0]
                calibrators.append((float(cal.a_), float(cal.b_)))
            if not isinstance(pipe, Pipeline) or len(pipe.steps) != 2:
                return None
            vec, gbc = pipe.steps[0][1], pipe.steps[1][1]
            if not isinstance(vec, DictVectorizer) or not isinstance(gbc, GradientBoostingClassifier):
                return None
            if len(gbc.classes_) != 2 or gbc.estimators_.shape[1] != 1:
                return None
            lr = float(gbc.learning_rate)
            feats, thrs, lefts, rights, vals, roots = [], [], [], [], [], []
            depth = 0
            for i in range(gbc.estimators_.shape[0]):
                t = gbc.estimators_[i, 0].tree_
                off = len(feats)
                roots.append(off)
                depth = max(depth, int(t.max_depth))
                for node in range(t.node_count):
                    leaf = t.children_left[node] == -1
                    feats.append(0 if leaf else int(t.feature[node]))
                    thrs.append(math.inf if leaf else float(t.threshold[node]))
                    lefts.append(off + node if leaf else off + int(t.children_left[node]))
                    rights.append(off + node if leaf else off + int(t.children_right[node]))
                    vals.append(float(t.value[node].ravel()[0]) * lr if leaf else 0.0)
            # keep only the columns some tree splits on (a column no tree reads cannot change the result)
            names = list(vec.feature_names_)
            used = sorted({f for f, th in zip(feats, thrs, strict=True) if th != math.inf})
            remap = {old: new for new, old in enumerate(used)}
            feats = [remap.get(f, 0) for f in feats]
            fast = cls(
                {names[c]: remap[c] for c in used},
                np.asarray(feats, dtype=np.intp),
                np.asarray(thrs, dtype=np.float64),
                np.asarray(lefts, dtype=np.intp),
                np.asarray(rights, dtype=np.intp),
                np.asarray(vals, dtype=np.float64),
                np.asarray(roots, dtype=np.intp),
                depth,
                0.0,
                calibrators,
                vec.separator,
            )
            raw0 = float(gbc.decision_function(vec.transform([{}])).ravel()[0])
            fast.init = raw0 - float(fast.raw([{}])[0])  # fast.init is 0.0 while this runs
            return fast
        except (ImportError, AttributeError, TypeError, ValueError):
            return None

    def raw(self, rows: list[dict[str, Any]]) -> Any:
        """The boosting decision function of each row."""
        return CompiledSet({"_": self}).raw({"_": {}}, {"_": rows})["_"]

    def predict(self, rows: list[dict[str, Any]]) -> list[float]:
        """Calibrated probability of the positive class for each row (``predict_proba(rows)[:, 1]``)."""
        if not rows:
            return []
        return CompiledSet({"_": self}).predict({"_": {}}, {"_": rows})["_"]


def _append(
    row: dict[str, Any],
    cols: dict[str, int],
    sep: str,
    base: int,
    pos: list[int],
    val: list[float],
    names: set[str] | None = None,
) -> None:
    """Append the (flat position, value) pairs of ``row`` under the column map ``cols`` (only the features
    in ``names``, when given). The reference encoder; :class:`CompiledSet` uses precompiled lookups."""
    for k, v in row.items():
        if names is not None and k not in names:
            continue
        t = type(v)
        if t is str:
            c = cols.get(f"{k}{sep}{v}")
            if c is not None:
                pos.append(base + c)
                val.append(1.0)
        elif t in _NUMBER:
            c = cols.get(k)
            if c is not None:
                pos.append(base + c)
                val.append(v)
        elif t in _SEQ:
            for vv in v:
                c = cols.get(f"{k}{sep}{vv}")
                if c is not None:
                    pos.append(base + c)
                    val.append(1.0)
        else:
            for kk, vv in encode({k: v}, sep).items():
                c = cols.get(kk)
                if c is not None:
                    pos.append(base + c)
                    val.append(vv)


# One feature name's columns: (its numeric column or -1, {string value: its ``name=value`` column}).
_Enc = dict[str, tuple[int, dict[str, int]]]


def _encoder(columns: dict[str, int], sep: str, off: int = 0) -> _Enc:
    """Column lookups by feature name and value (``name=value`` split at the first separator), with the
    columns shifted by ``off``."""
    enc: _Enc = {}
    for col, c in columns.items():
        name, has_sep, value = col.partition(sep)
        num, strs = enc.get(name, (-1, {}))
        if has_sep:
            strs[value] = off + c
        else:
            num = off + c
        enc[name] = (num, strs)
    return enc


def _encode(
    row: dict[str, Any],
    enc: _Enc,
    fallback: tuple[dict[str, int], str, int],
    base: int,
    ind: list[int],
    pos: list[int],
    val: list[float],
) -> None:
    """:func:`_append` through precompiled lookups: the positions of the ``name=value`` indicators in
    ``ind`` (each adds 1.0), the numbers as (position, value) pairs in ``pos``/``val``."""
    get = enc.get
    add = ind.append
    for k, v in row.items():
        e = get(k)
        if e is None:
            continue
        t = type(v)
        if t is float or t is int or t is bool:  # the commonest first
            c = e[0]
            if c >= 0:
                pos.append(base + c)
                val.append(v)
        elif t is str:
            c = e[1].get(v)
            if c is not None:
                add(base + c)
        elif t in _SEQ:
            strs = e[1]
            if strs:
                sget = strs.get
                for vv in v:
                    c = sget(vv) if type(vv) is str else sget(f"{vv}")
                    if c is not None:
                        add(base + c)
        else:
            cols, sep, off = fallback
            _append({k: v}, cols, sep, base + off, pos, val)


# A row's encoding plan for one column map and one key order (the feature functions always build their
# dicts with the same keys in the same order): (id of the plan, getter of the values of the names with
# only a numeric column, those columns, getter of the values of the names with ``name=value`` columns,
# their value → column maps). Names without columns are left out.
_Plan = tuple[int, Any, Any, Any, tuple[tuple[str, dict[str, int]], ...]]
_NUM_TYPES = frozenset((int, float, bool))


def _getter(keys: list[str]) -> Any:
    """A function of a dict that returns the tuple of its values at ``keys``."""
    if len(keys) > 1:
        return itemgetter(*keys)
    if keys:
        k = keys[0]
        return lambda row: (row[k],)
    return lambda row: ()


def _make_plan(enc: _Enc, keys: tuple[str, ...], ident: int) -> _Plan:
    import numpy as np

    num_keys: list[str] = []
    num_cols: list[int] = []
    str_keys: list[str] = []
    str_maps: list[dict[str, int]] = []
    for k in keys:
        e = enc.get(k)
        if e is None:
            continue
        num, strs = e
        if strs:
            str_keys.append(k)
            str_maps.append(strs)
        elif num >= 0:
            num_keys.append(k)
            num_cols.append(num)
    strs_of = tuple(zip(str_keys, str_maps, strict=True))
    return ident, _getter(num_keys), np.asarray(num_cols, dtype=np.intp), _getter(str_keys), strs_of


def _encode_plan(
    row: dict[str, Any],
    enc: _Enc,
    fallback: tuple[dict[str, int], str, int],
    base: int,
    ind: list[int],
    pos: list[int],
    val: list[float],
    plans: dict[tuple[int, tuple[str, ...]], _Plan],
    nums: dict[int, tuple[Any, list[int], list[tuple[Any, ...]]]],
    r: int,
) -> None:
    """:func:`_encode` through a plan for the row's keys: the indicators as there, the numbers collected in
    ``nums`` (by plan: columns, row ``r``, value tuple) for :func:`_place`. A row whose numeric names do
    not all carry numbers is encoded by :func:`_encode`."""
    keys = tuple(row)
    plan = plans.get((id(enc), keys))
    if plan is None:
        plan = plans[(id(enc), keys)] = _make_plan(enc, keys, len(plans))
    ident, num_get, num_cols, str_get, str_maps = plan
    values = num_get(row)
    if not _NUM_TYPES.issuperset(map(type, values)):
        _encode(row, enc, fallback, base, ind, pos, val)
        return
    add = ind.append
    for (k, strs), v in zip(str_maps, str_get(row), strict=True):
        if type(v) is str:
            c = strs.get(v)
            if c is not None:
                add(base + c)
        elif type(v) in _SEQ:
            sget = strs.get
            for vv in v:
                c = sget(vv) if type(vv) is str else sget(f"{vv}")
                if c is not None:
                    add(base + c)
        elif type(v) not in _NUM_TYPES:  # a number for a string feature adds nothing (as in _encode)
            cols, sep, off = fallback
            _append({k: v}, cols, sep, base + off, pos, val)
    if len(num_cols):
        got = nums.get(ident)
        if got is None:
            got = nums[ident] = (num_cols, [], [])
        got[1].append(r)
        got[2].append(values)


def _place(X: Any, nums: dict[int, tuple[Any, list[int], list[tuple[Any, ...]]]]) -> None:
    """Write the numbers collected by :func:`_encode_plan` into the rows of ``X`` (their columns are empty:
    one number per column and row)."""
    import numpy as np

    for cols, rows, values in nums.values():
        X[np.asarray(rows, dtype=np.intp)[:, None], cols] = np.asarray(values, dtype=np.float64)


class CompiledSet:
    """Several compiled models evaluated together: one matrix and one tree walk for all rows of a note,
    or of many notes (:meth:`predict_notes`)."""

    def __init__(self, models: dict[str, CompiledModel]):
        import numpy as np

        self.kinds = list(models)
        self.models = models
        col_off, node_off = 0, 0
        feats, thrs, lefts, rights, vals = [], [], [], [], []
        self.col_off: dict[str, int] = {}
        roots: dict[str, Any] = {}
        for kind, m in models.items():
            self.col_off[kind] = col_off
            feats.append(m.feat + col_off)
            thrs.append(m.thr)
            lefts.append(m.left + node_off)
            rights.append(m.right + node_off)
            vals.append(m.value)
            roots[kind] = m.roots + node_off
            col_off += max(1, len(m.columns))
            node_off += len(m.feat)
        # a dummy leaf (value 0) pads the tree list of the kinds with fewer trees
        dummy = node_off
        self.feat = np.concatenate([*feats, [0]]).astype(np.intp)
        self.thr = np.concatenate([*thrs, [math.inf]])
        self.left = np.concatenate([*lefts, [dummy]]).astype(np.intp)
        self.right = np.concatenate([*rights, [dummy]]).astype(np.intp)
        self.value = np.concatenate([*vals, [0.0]])
        width = max(len(r) for r in roots.values())
        self.roots = {k: np.concatenate([r, np.full(width - len(r), dummy, dtype=np.intp)]) for k, r in roots.items()}
        # one more column that is always 0.0: the leaves of the walk's node layout read it (see _layout)
        self.width = col_off + 1
        self._layout(col_off)
        self.depth = max(m.depth for m in models.values())
        # precompiled encoders: one per kind, for its own block of the columns
        self.enc = {k: _encoder(m.columns, m.sep, self.col_off[k]) for k, m in models.items()}
        self.fallback = {k: (m.columns, m.sep, self.col_off[k]) for k, m in models.items()}
        self.kind_ix = {k: i for i, k in enumerate(self.kinds)}
        self._plans: dict[tuple[int, tuple[str, ...]], _Plan] = {}  # see _encode_plan
        self.init = [models[k].init for k in self.kinds]
        self.cal = [models[k].calibrators for k in self.kinds]
        # the note-level space: every column name of every kind once, so that the features a note shares
        # with all its rows are encoded once and then copied into each kind's block (src → dst)
        seps = {m.sep for m in models.values()}
        self.note_space: tuple[_Enc, tuple[dict[str, int], str, int], Any, Any, int] | None = None
        if len(seps) == 1:
            names: dict[str, int] = {}
            src, dst = [], []
            for k, m in models.items():
                for col, c in m.columns.items():
                    src.append(names.setdefault(col, len(names)))
                    dst.append(self.col_off[k] + c)
            sep = seps.pop()
            self.note_space = (
                _encoder(names, sep),
                (names, sep, 0),
                np.asarray(src, dtype=np.intp),
                np.asarray(dst, dtype=np.intp),
                max(1, len(names)),
            )

    def _layout(self, zero: int) -> None:
        """The nodes renumbered for the walk: the two children of every split are neighbours (left, then
        right), so one step is ``node = w_right[node] - (x <= w_thr[node])``. A leaf steps to itself: it
        reads column ``zero`` (always 0.0) against +inf, and its ``w_right`` is itself + 1. A split's
        threshold becomes the largest float32 not above it, which answers ``x <= threshold`` exactly as
        the float64 threshold does for every float32 ``x`` (NaN included, which goes right)."""
        import numpy as np

        feat, thr, left, right = self.feat.tolist(), self.thr.tolist(), self.left.tolist(), self.right.tolist()
        n = len(feat)
        new = [-1] * n
        order: list[int] = []
        for r in sorted({int(x) for rr in self.roots.values() for x in rr}):
            new[r] = len(order)
            order.append(r)
        i = 0
        while i < len(order):
            node = order[i]
            i += 1
            if left[node] != node:  # a split
                for child in (left[node], right[node]):
                    new[child] = len(order)
                    order.append(child)
        for node in range(n):  # nodes no tree reaches (none in a fitted tree) keep a place
            if new[node] < 0:
                new[node] = len(order)
                order.append(node)
        w_feat = np.zeros(n, dtype=np.intp)
        w_thr = np.full(n, np.inf, dtype=np.float32)
        w_right = np.zeros(n, dtype=np.intp)
        w_value = np.zeros(n, dtype=np.float64)
        for node in range(n):
            j = new[node]
            w_value[j] = self.value[node]
            if left[node] == node:  # a leaf
                w_feat[j] = zero
                w_right[j] = j + 1
            else:
                w_feat[j] = feat[node]
                t32 = np.float32(thr[node])
                if float(t32) > thr[node]:
                    t32 = np.nextafter(t32, np.float32(-np.inf))
                w_thr[j] = t32
                w_right[j] = new[right[node]]
        self.w_feat, self.w_thr, self.w_right, self.w_value = w_feat, w_thr, w_right, w_value
        self.w_roots = np.stack([np.asarray([new[int(x)] for x in self.roots[k]], dtype=np.intp) for k in self.kinds])

    def _walk(
        self,
        S: Any,
        shared_of_row: list[int],
        kind_of_row: list[int],
        ind: list[int],
        pos: list[int],
        val: list[float],
        nums: dict[int, tuple[Any, list[int], list[tuple[Any, ...]]]] | None = None,
    ) -> list[float]:
        """Decision function of each row: row ``i`` is its own encoded part plus row ``shared_of_row[i]`` of
        the shared matrix ``S`` (the two never fill the same column), evaluated with the trees of kind
        ``kind_of_row[i]``."""
        import numpy as np

        W, r = self.width, len(kind_of_row)
        # summed in float64 like DictVectorizer, then float32 like the trees (every column is either a
        # count of indicators or one number, so the order of the additions does not matter)
        X = _dense(ind, pos, val, r * W).reshape(r, W)
        if nums:
            _place(X, nums)
        if S is not None:
            X += S[np.asarray(shared_of_row, dtype=np.intp)]
        X = X.astype(np.float32).ravel()
        idx = self.w_roots[np.asarray(kind_of_row, dtype=np.intp)]
        rowbase = (np.arange(r, dtype=np.intp) * W)[:, None]
        feat, thr, right = self.w_feat, self.w_thr, self.w_right
        for _ in range(self.depth):
            idx = right[idx] - (X[rowbase + feat[idx]] <= thr[idx])
        raw: list[float] = self.w_value[idx].sum(axis=1).tolist()
        init = self.init
        return [v + init[k] for v, k in zip(raw, kind_of_row, strict=True)]

    def raw(self, common: dict[str, dict[str, Any]], parts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Decision function of every row, by kind. Row ``i`` of kind ``k`` is ``{**common[k], **parts[k][i]}``
        (the keys of the two must not overlap); the shared part is encoded once per kind."""
        W = self.width
        ind: list[int] = []
        pos: list[int] = []
        val: list[float] = []
        sind: list[int] = []
        spos: list[int] = []
        sval: list[float] = []
        shared_of_row: list[int] = []
        kind_of_row: list[int] = []
        order: list[str] = []
        n_shared = 0
        for kind in self.kinds:
            rows = parts.get(kind) or []
            if not rows:
                continue
            enc, fb, ki = self.enc[kind], self.fallback[kind], self.kind_ix[kind]
            _encode(common.get(kind) or {}, enc, fb, n_shared * W, sind, spos, sval)
            for row in rows:
                _encode(row, enc, fb, len(kind_of_row) * W, ind, pos, val)
                shared_of_row.append(n_shared)
                kind_of_row.append(ki)
                order.append(kind)
            n_shared += 1
        if not kind_of_row:
            return {}
        S = _dense(sind, spos, sval, n_shared * W).reshape(n_shared, W)
        out: dict[str, Any] = {}
        for k, v in zip(order, self._walk(S, shared_of_row, kind_of_row, ind, pos, val), strict=True):
            out.setdefault(k, []).append(v)
        return out

    def predict(self, common: dict[str, dict[str, Any]], parts: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
        """Calibrated probabilities by kind (kinds without rows are absent)."""
        out: dict[str, list[float]] = {}
        for kind, raws in self.raw(common, parts).items():
            cal = self.models[kind].calibrators
            out[kind] = [_calibrate(cal, f) for f in raws]
        return out

    def predict_notes(self, notes: list[tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]]) -> list[dict[str, list[float]]]:
        """Calibrated probabilities by kind for many notes in one tree walk. Each note is ``(note, parts)``:
        row ``i`` of kind ``k`` is ``{**note, **parts[k][i]}`` — the same numbers as
        ``predict(dict.fromkeys(kinds, note), parts)`` note by note."""
        import numpy as np

        if self.note_space is None:
            return [self.predict(dict.fromkeys(self.kinds, note), parts) for note, parts in notes]
        nenc, nfb, src, dst, NW = self.note_space
        W = self.width
        ind: list[int] = []
        pos: list[int] = []
        val: list[float] = []
        sind: list[int] = []
        spos: list[int] = []
        sval: list[float] = []
        shared_of_row: list[int] = []
        kind_of_row: list[int] = []
        kinds = [(k, self.enc[k], self.fallback[k], self.kind_ix[k]) for k in self.kinds]
        counts: list[list[int]] = []
        plans = self._plans
        # numbers by plan: (plan's columns, row bases, value tuples), placed in one NumPy step per plan
        nums: dict[int, tuple[Any, list[int], list[tuple[Any, ...]]]] = {}
        snums: dict[int, tuple[Any, list[int], list[tuple[Any, ...]]]] = {}
        for n, (note, parts) in enumerate(notes):
            _encode_plan(note, nenc, nfb, n * NW, sind, spos, sval, plans, snums, n)
            cnt = []
            for kind, enc, fb, ki in kinds:
                rows = parts.get(kind) or ()
                cnt.append(len(rows))
                for row in rows:
                    r = len(kind_of_row)
                    _encode_plan(row, enc, fb, r * W, ind, pos, val, plans, nums, r)
                    shared_of_row.append(n)
                    kind_of_row.append(ki)
            counts.append(cnt)
        if not kind_of_row:
            return [{} for _ in notes]
        N = _dense(sind, spos, sval, len(notes) * NW).reshape(len(notes), NW)
        _place(N, snums)
        S = np.zeros((len(notes), W))
        S[:, dst] = N[:, src]
        raws = self._walk(S, shared_of_row, kind_of_row, ind, pos, val, nums)
        cal = self.cal
        out: list[dict[str, list[float]]] = []
        i = 0
        for cnt in counts:
            res: dict[str, list[float]] = {}
            for ki, c in enumerate(cnt):
                if c:
                    cc = cal[ki]
                    res[self.kinds[ki]] = [_calibrate(cc, f) for f in raws[i : i + c]]
                    i += c
            out.append(res)
        return out


def _dense(ind: list[int], pos: list[int], val: list[float], size: int) -> Any:
    """A flat float64 vector of ``size``: 1.0 added at each position of ``ind``, ``val[i]`` at ``pos[i]``."""
    import numpy as np

    if pos:
        X = np.bincount(np.asarray(pos, dtype=np.intp), weights=np.asarray(val, dtype=np.float64), minlength=size)
    else:
        X = np.zeros(size)
    if ind:
        X += np.bincount(np.asarray(ind, dtype=np.intp), minlength=size)
    return X


def _calibrate(cal: list[tuple[float, float]], f: float) -> float:
    """The mean of the sigmoid calibrators' probabilities for decision value ``f``."""
    if len(cal) == 1:  # the same number as the mean below: 0 + p and p / 1 are p
        a, b = cal[0]
        return _expit(-(a * f + b))
    return sum(_expit(-(a * f + b)) for a, b in cal) / len(cal)


def _expit(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)
