"""Plain-Python evaluation of a fitted confidence model, with the numbers of ``predict_proba``.

The persisted model is the scikit-learn object (``CalibratedClassifierCV`` over a frozen
``DictVectorizer`` + ``GradientBoostingClassifier`` pipeline). Calling ``predict_proba`` on it costs a
few milliseconds per call in input validation alone — more than the whole engine spends on a note — so
the scorer compiles it once at load time into flat node arrays and walks every tree for all of a note's
rows in a few vectorised NumPy steps (one per tree level). :meth:`CompiledModel.from_sklearn` returns ``None`` for any other model
structure, and the scorer checks the compiled numbers against ``predict_proba`` on reference rows
before using them (falling back to ``predict_proba`` on any difference).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from numbers import Number
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


# One feature name's columns: (numeric columns, {string value: columns}). A name maps to columns of one
# kind (a row encoder) or of several kinds at once (the note-level encoder shared by all kinds).
_Enc = dict[str, tuple[tuple[int, ...], dict[str, tuple[int, ...]]]]


def _encoder(columns: dict[str, int], sep: str, off: int, into: _Enc | None = None) -> _Enc:
    """Column lookups by feature name and value (``name=value`` split at the first separator), with the
    columns shifted by ``off``; added to ``into`` when given."""
    enc: _Enc = {} if into is None else into
    for col, c in columns.items():
        name, has_sep, value = col.partition(sep)
        nums, strs = enc.get(name, ((), {}))
        if has_sep:
            strs[value] = (*strs.get(value, ()), off + c)
        else:
            nums = (*nums, off + c)
        enc[name] = (nums, strs)
    return enc


def _encode(
    row: dict[str, Any],
    enc: _Enc,
    fallback: list[tuple[dict[str, int], str, int]],
    base: int,
    pos: list[int],
    val: list[float],
) -> None:
    """:func:`_append` through precompiled lookups: the same (position, value) pairs, in the same order."""
    get = enc.get
    for k, v in row.items():
        e = get(k)
        if e is None:
            continue
        t = type(v)
        if t is str:
            cs = e[1].get(v)
            if cs is not None:
                for c in cs:
                    pos.append(base + c)
                    val.append(1.0)
        elif t in _NUMBER:
            for c in e[0]:
                pos.append(base + c)
                val.append(v)
        elif t in _SEQ:
            strs = e[1]
            if strs:
                for vv in v:
                    cs = strs.get(vv if type(vv) is str else f"{vv}")
                    if cs is not None:
                        for c in cs:
                            pos.append(base + c)
                            val.append(1.0)
        else:
            for cols, sep, off in fallback:
                _append({k: v}, cols, sep, base + off, pos, val)


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
        self.width = col_off
        self.depth = max(m.depth for m in models.values())
        # precompiled encoders: one per kind (its own block of columns), and one for the note-level
        # features that fills the blocks of every kind at once
        self.enc = {k: _encoder(m.columns, m.sep, self.col_off[k]) for k, m in models.items()}
        self.fallback = {k: [(m.columns, m.sep, self.col_off[k])] for k, m in models.items()}
        self.enc_all: _Enc = {}
        for k, m in models.items():
            _encoder(m.columns, m.sep, self.col_off[k], self.enc_all)
        self.fallback_all = [f for k in self.kinds for f in self.fallback[k]]
        self.kind_ix = {k: i for i, k in enumerate(self.kinds)}
        self.root_mat = np.stack([self.roots[k] for k in self.kinds])
        self.init = [models[k].init for k in self.kinds]
        self.cal = [models[k].calibrators for k in self.kinds]

    def _walk(
        self,
        n_shared: int,
        spos: list[int],
        sval: list[float],
        shared_of_row: list[int],
        kind_of_row: list[int],
        pos: list[int],
        val: list[float],
    ) -> list[float]:
        """Decision function of each row: row ``i`` is its own encoded part plus shared vector
        ``shared_of_row[i]`` (the two never fill the same column), evaluated with the trees of kind
        ``kind_of_row[i]``."""
        import numpy as np

        W, r = self.width, len(kind_of_row)
        # summed in float64 like DictVectorizer, then float32 like the trees
        X = np.bincount(np.asarray(pos, dtype=np.intp), weights=np.asarray(val, dtype=np.float64), minlength=r * W).reshape(r, W)
        if spos:
            S = np.bincount(
                np.asarray(spos, dtype=np.intp), weights=np.asarray(sval, dtype=np.float64), minlength=n_shared * W
            ).reshape(n_shared, W)
            X += S[np.asarray(shared_of_row, dtype=np.intp)]
        X = X.astype(np.float32).ravel()
        idx = self.root_mat[np.asarray(kind_of_row, dtype=np.intp)]
        rowbase = (np.arange(r, dtype=np.intp) * W)[:, None]
        feat, thr, left, right = self.feat, self.thr, self.left, self.right
        for _ in range(self.depth):
            go = X[rowbase + feat[idx]] <= thr[idx]
            idx = np.where(go, left[idx], right[idx])
        raw: list[float] = self.value[idx].sum(axis=1).tolist()
        init = self.init
        return [v + init[k] for v, k in zip(raw, kind_of_row, strict=True)]

    def raw(self, common: dict[str, dict[str, Any]], parts: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """Decision function of every row, by kind. Row ``i`` of kind ``k`` is ``{**common[k], **parts[k][i]}``
        (the keys of the two must not overlap); the shared part is encoded once per kind."""
        W = self.width
        pos: list[int] = []
        val: list[float] = []
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
            _encode(common.get(kind) or {}, enc, fb, n_shared * W, spos, sval)
            for row in rows:
                _encode(row, enc, fb, len(kind_of_row) * W, pos, val)
                shared_of_row.append(n_shared)
                kind_of_row.append(ki)
                order.append(kind)
            n_shared += 1
        if not kind_of_row:
            return {}
        out: dict[str, Any] = {}
        for k, v in zip(order, self._walk(n_shared, spos, sval, shared_of_row, kind_of_row, pos, val), strict=True):
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
        W = self.width
        pos: list[int] = []
        val: list[float] = []
        spos: list[int] = []
        sval: list[float] = []
        shared_of_row: list[int] = []
        kind_of_row: list[int] = []
        enc_all, fb_all = self.enc_all, self.fallback_all
        kinds = [(k, self.enc[k], self.fallback[k], self.kind_ix[k]) for k in self.kinds]
        counts: list[list[int]] = []
        for n, (note, parts) in enumerate(notes):
            _encode(note, enc_all, fb_all, n * W, spos, sval)
            cnt = []
            for kind, enc, fb, ki in kinds:
                rows = parts.get(kind) or ()
                cnt.append(len(rows))
                for row in rows:
                    _encode(row, enc, fb, len(kind_of_row) * W, pos, val)
                    shared_of_row.append(n)
                    kind_of_row.append(ki)
            counts.append(cnt)
        out: list[dict[str, list[float]]] = []
        if not kind_of_row:
            return [{} for _ in notes]
        raws = self._walk(len(notes), spos, sval, shared_of_row, kind_of_row, pos, val)
        cal = self.cal
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


def _calibrate(cal: list[tuple[float, float]], f: float) -> float:
    """The mean of the sigmoid calibrators' probabilities for decision value ``f``."""
    return sum(_expit(-(a * f + b)) for a, b in cal) / len(cal)


def _expit(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)
