"""Doc → Facts: what was done today, as plain frozen dataclasses (no spaCy objects past here).

Decides which muscle mentions are injections today (section, context, injectate, landmark), gives
each its side and dose, and resolves product, amounts, guidance, neurolysis, diagnoses, codes the
note lists and the date of service.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field, fields, replace
from datetime import date, datetime
from functools import lru_cache
from operator import itemgetter
from typing import Any

from spacy.tokens import Doc

from nlp import lexicons
from nlp.components.base import MENTIONS, doc_text
from nlp.textutil import side_of, to_number


@dataclass(frozen=True, slots=True)
class Evidence:
    start: int
    end: int
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "text": self.text}


@dataclass(frozen=True, slots=True)
class Injection:
    muscle_id: str
    name: str
    region: str
    side: str | None
    units: float | None
    count_ids: tuple[str, ...]
    is_group: bool
    evidence: Evidence
    side_rule: str
    guidance: str | None = None  # method that guided this injection (emg, estim, ultrasound, none)


@dataclass(frozen=True, slots=True)
class NerveBlock:
    nerve_id: str
    name: str
    side: str | None
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Diagnosis:
    concept: str
    qualifiers: tuple[tuple[str, str], ...]
    evidence: Evidence
    in_dx_section: bool
    section: str = "none"


@dataclass(frozen=True, slots=True)
class ListedCode:
    code: str
    kind: str
    modifier: str | None
    units: int
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class Excluded:
    """A mention that was not coded, and why (for review and for the confidence model)."""

    label: str
    text: str
    reason: str
    start: int


# Fast constructors of the frozen records built per mention: they fill the slots through their
# descriptors, skipping the frozen ``__init__``'s ``object.__setattr__`` per field (same objects, a
# third of the time). Keep the argument order the field order.
_new = object.__new__
_EV_SET = tuple(getattr(Evidence, x.name).__set__ for x in fields(Evidence))
_INJ_SET = tuple(getattr(Injection, x.name).__set__ for x in fields(Injection))
_EXC_SET = tuple(getattr(Excluded, x.name).__set__ for x in fields(Excluded))


_DX_SET = tuple(getattr(Diagnosis, x.name).__set__ for x in fields(Diagnosis))


def _diagnosis(
    concept: str,
    qualifiers: tuple[tuple[str, str], ...],
    evidence: Evidence,
    in_dx_section: bool,
    section: str,
    _s: tuple[Any, ...] = _DX_SET,
) -> Diagnosis:
    d = _new(Diagnosis)
    _s[0](d, concept)
    _s[1](d, qualifiers)
    _s[2](d, evidence)
    _s[3](d, in_dx_section)
    _s[4](d, section)
    return d


def _evidence(start: int, end: int, text: str, _s: tuple[Any, ...] = _EV_SET) -> Evidence:
    e = _new(Evidence)
    _s[0](e, start)
    _s[1](e, end)
    _s[2](e, text)
    return e


def _excluded(label: str, text: str, reason: str, start: int, _s: tuple[Any, ...] = _EXC_SET) -> Excluded:
    x = _new(Excluded)
    _s[0](x, label)
    _s[1](x, text)
    _s[2](x, reason)
    _s[3](x, start)
    return x


def _injection(
    muscle_id: str,
    name: str,
    region: str,
    side: str | None,
    units: float | None,
    count_ids: tuple[str, ...],
    is_group: bool,
    evidence: Evidence,
    side_rule: str,
    guidance: str | None = None,
    _s: tuple[Any, ...] = _INJ_SET,
) -> Injection:
    i = _new(Injection)
    _s[0](i, muscle_id)
    _s[1](i, name)
    _s[2](i, region)
    _s[3](i, side)
    _s[4](i, units)
    _s[5](i, count_ids)
    _s[6](i, is_group)
    _s[7](i, evidence)
    _s[8](i, side_rule)
    _s[9](i, guidance)
    return i


@dataclass(slots=True)
class Facts:
    injections: list[Injection] = field(default_factory=list)
    nerves: list[NerveBlock] = field(default_factory=list)
    product: str | None = None
    product_evidence: list[Evidence] = field(default_factory=list)
    products_named: list[str] = field(default_factory=list)
    serotype: str | None = None
    toxin_mentioned: bool = False
    toxin_today: bool = False
    guidance: list[tuple[str, Evidence]] = field(default_factory=list)
    guidance_negated: list[str] = field(default_factory=list)
    administered_units: float | None = None
    administered_source: str | None = None
    administered_evidence: list[Evidence] = field(default_factory=list)
    stated_total: float | None = None
    sum_units: float | None = None
    discarded_units: float | None = None
    discarded_evidence: list[Evidence] = field(default_factory=list)
    no_waste: bool = False
    vial_units: float | None = None
    vial_evidence: list[Evidence] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    handedness: str | None = None
    listed_codes: list[ListedCode] = field(default_factory=list)
    date_of_service: date | None = None
    date_evidence: Evidence | None = None
    migraine_protocol: bool = False
    cosmetic: bool = False
    cancelled: bool = False
    excluded: list[Excluded] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (the ``facts`` member of the result object)."""

        # (Evidence.as_dict written out: no call per evidence)
        return {
            "injections": [
                {
                    "muscle": i.muscle_id,
                    "name": i.name,
                    "region": i.region,
                    "side": i.side,
                    "units": i.units,
                    "is_group": i.is_group,
                    "guidance": i.guidance,
                    "evidence": {"start": e.start, "end": e.end, "text": e.text} if (e := i.evidence) else None,
                }
                for i in self.injections
            ],
            "nerve_blocks": [
                {
                    "nerve": n.nerve_id,
                    "side": n.side,
                    "evidence": {"start": e.start, "end": e.end, "text": e.text} if (e := n.evidence) else None,
                }
                for n in self.nerves
            ],
            "product": self.product,
            "products_named": self.products_named,
            "serotype": self.serotype,
            "guidance": sorted({m for m, _ in self.guidance}),
            "guidance_negated": sorted(set(self.guidance_negated)),
            "administered_units": self.administered_units,
            "administered_source": self.administered_source,
            "stated_total_units": self.stated_total,
            "sum_of_muscle_doses": self.sum_units,
            "discarded_units": self.discarded_units,
            "no_waste_documented": self.no_waste,
            "vial_units": self.vial_units,
            "diagnoses": [
                {
                    "concept": d.concept,
                    **dict(d.qualifiers),
                    "evidence": {"start": e.start, "end": e.end, "text": e.text} if (e := d.evidence) else None,
                }
                for d in self.diagnoses
            ],
            "handedness": self.handedness,
            "listed_codes": [
                {"code": c.code, "kind": c.kind, "modifier": c.modifier, "units": c.units} for c in self.listed_codes
            ],
            "date_of_service_in_note": self.date_of_service.isoformat() if self.date_of_service else None,
            "migraine_protocol": self.migraine_protocol,
            "cosmetic": self.cosmetic,
            "procedure_not_performed": self.cancelled,
            "not_coded": [{"label": x.label, "text": x.text, "reason": x.reason} for x in self.excluded],
        }


# ----------------------------------------------------------------------------------------------
# helpers

_SIDE_TOKEN = re.compile(
    r"(?<![A-Za-z])(?:(?P<word>left|right|bilateral(?:ly)?|bilat\.?|b/l|both|lt\.?|rt\.?)"
    r"|(?P<letter>L|R|B)(?=[\s\-:.)/]|$))(?![A-Za-z])",
    re.IGNORECASE,
)
# _SIDE_TOKEN on lower-cased text, without its groups, each alternative starting with its letter (the
# regex engine skips to l, r, b); same matches
_SIDE_TOKEN_LOW = re.compile(
    r"l(?<![a-z]l)(?:eft|t\.?|(?=[\s\-:.)/]|$))(?![a-z])"
    r"|r(?<![a-z]r)(?:ight|t\.?|(?=[\s\-:.)/]|$))(?![a-z])"
    r"|b(?<![a-z]b)(?:ilateral(?:ly)?|ilat\.?|/l|oth|(?=[\s\-:.)/]|$))(?![a-z])"
)
_SIDE_AFTER = re.compile(
    # (possessive blanks: the same matches, without trying every split of a run of blanks on failure)
    r"^\s*+(?:muscles?|m\.|mm\.|heads?)?\s*+(?:,\s*+)?[(\[-]?\s*+(?:on\s+the\s+|on\s+)?"
    r"(?P<s>left|right|bilateral(?:ly)?|bilat\.?|both\s+sides|b/l|lt|rt|L|R|B)\b\s*(?:side|sided)?\s*[)\]]?",
    re.IGNORECASE,
)
_SIDE_HEADER = re.compile(
    r"(?im)^[ \t\-*•>]*(?P<h>(?:left|right|lt\.?|rt\.?|l|r|bilateral)(?:[ \t]+(?:side|sided|upper|lower|arm|leg|"
    r"extremity|extremities|limb|ue|le|neck|face|hand|foot|muscles))*|rue|lue|rle|lle|rul|lul)[ \t]*(?::|-|–|—|\n)"
)
_INJECT_CUE = re.compile(
    r"inject|chemodenervat|infiltrat|administ|treated|\bunits?\b|\d\s*u\b|\bbtx|botox|toxin|dysport|xeomin|myobloc|daxxify"
    r"|\bdose|\bsites?\b",
    re.IGNORECASE,
)
_CUE_WORDS = (
    "inject",
    "chemodenervat",
    "infiltrat",
    "administ",
    "treated",
    "unit",
    "btx",
    "botox",
    "toxin",
    "dysport",
    "xeomin",
    "myobloc",
    "daxxify",
    "dose",
    "site",
)
_DIGIT_U = re.compile(r"\d\s*[uU]\b")
_PERFORMED = re.compile(
    r"\b(?:was|were|been)\s+(?:injected|administered|performed|given|treated|completed|done)\b|\binjected\b|\bperformed\b"
    r"|\badministered\b|\btoday\b",
    re.IGNORECASE,
)
_NOT_TODAY = re.compile(
    r"\b(?:no|not|without|defer\w*|hold|held|postpone\w*)\b[^.;\n]{0,40}\btoday\b|\bnext (?:visit|time)\b", re.IGNORECASE
)
_TODAY = re.compile(r"\btoday\b|\bthis (?:visit|session|procedure)\b", re.IGNORECASE)
_LANDMARK = re.compile(
    r"^\s*(?:muscle\s+)?(?:tendon|origin|insertion|fascia|aponeurosis|attachment|border|belly of|membrane|cartilage|"
    r"ligament|notch|bone|reflex|jerk)",
    re.IGNORECASE,
)
_CONNECT_BEFORE = re.compile(
    r"\s*(?:of\s+(?:[\w-]+\s+){0,3}?)?(?:(?:was|were|is|are|then)\s+)?(?:(?:injected|given|placed|administered|delivered|used|"
    r"divided|distributed|split)\s+)?(?:(?:each|per|to\s+each|in\s+each|both)\s+(?:eyes?|sides?|axillae?|limbs?)\s*,?\s*)?"
    r"(?:(?:each|evenly|equally)\s+)?(?:in|into|to|at|for|within|across|throughout|per)\s+"
    r"(?:the\s+|each\s+|both\s+|bilateral\s+)?(?:(?:left|right|bilateral|lt\.?|rt\.?|l|r|b/l)\s+)?"
    r"(?:(?:upper|lower|medial|lateral|long|short|mid|middle|deep|superficial)\s+)?(?:head\s+of\s+(?:the\s+)?)?"
    r"|\s*[:(\-–]?\s*(?:(?:left|right|[LR]|lt|rt|bilateral|b/l)\.?\s+)?",
    re.IGNORECASE,
)
_CONNECT_AFTER = re.compile(
    r"(?:\s*(?:muscles?|m\.|mm\.|heads?|bilaterally|bilateral|each side|on the (?:left|right)|\((?:[LRB]|left|right|bilat(?:eral)?)\)|[LRB]|left|right))*"
    r"\s*(?:[:=\-–|,]|\(|\bwith\b|\breceived\b|\bwas injected with\b|\binjected with\b|\bx\b|@)?\s*(?:[\w\s|]{0,12}?\|\s*)?"
    r"(?:dose\s*[:=]?\s*)?"
    r"(?:approximately\s+|approx\.?\s+|about\s+|a total of\s+)?",
    re.IGNORECASE,
)
# _CONNECT_BEFORE / _CONNECT_AFTER on slices of ``_Note.low`` (no IGNORECASE: same matches there)
_CONNECT_BEFORE_LOW = re.compile(_CONNECT_BEFORE.pattern.replace("[LR]", "[lr]"))
_CONNECT_AFTER_LOW = re.compile(_CONNECT_AFTER.pattern.replace("[LRB]", "[lrb]"))
# _LANDMARK run at an offset of the text (``match(text, pos, endpos)``: the same as on the slice)
_LANDMARK_AT = re.compile(_LANDMARK.pattern[1:], re.IGNORECASE)
_ADMIN_AFTER = re.compile(
    r"^\s*(?:\([^)]*\)\s*)?(?:was|were|is|are)?\s*(?:administered|injected|given|used|delivered|divided|distributed)\b",
    re.IGNORECASE,
)
_ADMIN_BEFORE = re.compile(
    r"\b(?:administered|injected|gave|given|used|received|total of)\s*(?:a\s+total\s+of\s+)?$|(?:^|\n)\s*(?:drug|medication|agent|dose)\s*:\s*$",
    re.IGNORECASE,
)
_INJECTED = re.compile(r"\binject|\badminist|\bgiven\b|\bplaced\b|\bdelivered\b", re.IGNORECASE)
_CANCEL = re.compile(
    r"\b(?:injections?|procedure|treatment|toxin|botox|chemodenervation|session)\b[^.\n]{0,40}?\b(?:was|were|is|has\s+been|had\s+to\s+be)\s+"
    r"(?:deferred|postponed|cancel+ed|aborted|not\s+performed|not\s+done|held|rescheduled|withheld|stopped)\b"
    r"|\b(?:deferred|postponed|cancel+ed|aborted|held|rescheduled)\s+(?:the\s+|today'?s\s+|this\s+)?(?:injections?|procedure|treatment)\b"
    r"|\b(?:declined|refused)\s+(?:the\s+|any\s+|further\s+|today'?s\s+)?(?:botox|toxin|botulinum|injections?|procedure|treatment)\b"
    r"|\b(?:did\s+not|does\s+not|do\s+not)\s+(?:proceed|wish\s+to\s+proceed)\b|\bprocedure\s*:\s*not\s+performed\b",
    re.IGNORECASE,
)
_PARTIAL = re.compile(
    r"\b(?:left|right|lt|rt|[LR]|bilateral|side|arm|leg|limb|[LR][UL]E|upper|lower|calf|neck|face|eye|lid|hand|foot)\b|\b(?:lue|rue|lle|rle)\b",
    re.IGNORECASE,
)
_CANCEL_KEYS = (
    "defer",
    "postpon",
    "cancel",
    "abort",
    "not performed",
    "not done",
    "held",
    "reschedul",
    "withheld",
    "stopped",
    "declin",
    "refus",
    "did not",
    "does not",
    "do not",
)
_TOXIN_NEGATED = re.compile(
    r"\bno\s+(?:botulinum(?:\s+toxin)?|botox|toxin)\s*[.,;]|\bnever\s+(?:actually\s+)?received\s+(?:botulinum|botox|toxin)"
    r"|\bno\s+(?:injections?|botox|toxin|procedure)\s+(?:was\s+|were\s+)?(?:given\s+|performed\s+|done\s+)?today\b"
    r"|\bno\s+(?:botulinum(?:\s+toxin)?|botox|toxin|dysport|xeomin|myobloc|daxxify)\s+(?:was|were)\s+(?:used|given|injected|administered)\b"
    r"|\b(?:botulinum(?:\s+toxin)?|botox|toxin)\s+(?:was|were)\s+not\s+(?:used|given|injected|administered)\b",
    re.IGNORECASE,
)
_DIVIDED = re.compile(r"\b(?:total|divided|split|combined|between)\b", re.IGNORECASE)
_HAND = re.compile(
    r"\b(?P<s>right|left)[- ]hand(?:ed|-dominant| dominant)\b|\b(?P<s2>right|left)[- ]handed\b|\bdominant (?:hand|side) (?:is )?(?:the )?(?P<s3>right|left)\b|\bambidextrous\b",
    re.IGNORECASE,
)
_CELL_SPLIT = re.compile(r"\s*\|\s*|\t+|\s{3,}")

_BAD_SECTIONS = {"exam", "diagnosis", "codes"}
_DX_SECTIONS = {"diagnosis", "assessment_plan"}


def _with_side(i: Injection, side: str | None, side_rule: str) -> Injection:
    """``replace(i, side=side, side_rule=side_rule)``, without dataclasses.replace's field walk."""
    return _injection(i.muscle_id, i.name, i.region, side, i.units, i.count_ids, i.is_group, i.evidence, side_rule, i.guidance)


def _ev(text: str, a: dict[str, Any]) -> Evidence:
    return _evidence(a["start"], a["end"], text[a["start"] : a["end"]])


def _context_block(ctx: dict[str, Any]) -> str | None:
    """Why a mention's context excludes it, or None."""
    for flag in ("negated", "declined", "hypothetical", "historical"):
        if ctx.get(flag):
            return flag
    return None


@lru_cache(maxsize=4096)
def _parse_date(value: str) -> date | None:
    v = value.strip().replace(".", "")
    fmts = (
        "%Y-%m-%d",
        "%m/%d/%Y",
        "%m-%d-%Y",
        "%m/%d/%y",
        "%m-%d-%y",
        "%B %d, %Y",
        "%B %d %Y",
        "%b %d, %Y",
        "%b %d %Y",
        "%d %B %Y",
        "%d %b %Y",
    )
    for f in fmts:
        try:
            return datetime.strptime(v, f).date()
        except ValueError:
            continue
    return None


# characters that IGNORECASE matches to an ASCII letter but ``str.lower`` does not turn into it (or turns
# into two characters): a note with none of them can be searched in lower case without IGNORECASE
_FOLD_SPECIAL = ("\u0130", "\u0131", "\u017f", "\u212a")
# _INJECT_CUE on ``_Note.low`` as two patterns that each start with a literal (a letter, a digit), so the
# regex engine skips ahead; "\\bX" is written "x(?<!\\wx)…"
_INJECT_CUE_WORD = re.compile(
    r"inject|chemodenervat|infiltrat|administ|treated|u(?<!\wu)nits?\b|b(?<!\wb)tx|botox|toxin|dysport|xeomin|myobloc"
    r"|daxxify|d(?<!\wd)ose|s(?<!\ws)ites?\b"
)
_CUE_PLAIN = (
    "inject",
    "treated",
    "administ",
    "toxin",
    "botox",
    "chemodenervat",
    "infiltrat",
    "dysport",
    "xeomin",
    "myobloc",
    "daxxify",
)
_INJECT_CUE_BOUNDED = re.compile(r"u(?<!\wu)nits?\b|b(?<!\wb)tx|d(?<!\wd)ose|s(?<!\ws)ites?\b")
_INJECT_CUE_DIGIT = re.compile(r"\d\s*u\b")
_START = itemgetter("start")


def _doc_attr(doc: Doc, name: str) -> Any:
    """``doc._.<name>`` for an attribute the pipeline set, read where spaCy keeps it (every ``doc._``
    builds an accessor object; the fallback covers any other storage)."""
    value = doc.user_data.get(("._.", name, None, None))
    return getattr(doc._, name) if value is None else value


class _Note:
    """Index of a processed Doc: spans by label and by segment, segment texts, section lookups."""

    def __init__(self, doc: Doc):
        self.doc = doc
        self.text = text = doc_text(doc)
        self.low = text.lower()
        # ``low`` has the text's offsets, and a lower-case pattern without IGNORECASE matches on it exactly
        # where the IGNORECASE pattern matches on the text
        self.exact = text.isascii() or not any(c in text for c in _FOLD_SPECIAL)
        self.segs = _doc_attr(doc, "btx_segments")
        self.sections = _doc_attr(doc, "btx_sections")
        self.section_cats = _doc_attr(doc, "btx_section_cats")
        self.by_label: dict[str, list[dict[str, Any]]] = {}
        self.by_seg: dict[int, list[dict[str, Any]]] = {}
        self.seg_labels: dict[int, set[str]] = {}  # labels present in each segment
        self.used_doses: set[int] = set()
        by_label, by_seg, seg_labels = self.by_label, self.by_seg, self.seg_labels
        # one stable sort by start: every list below is then in start order (ties in mention order)
        mentions = doc.user_data.get(MENTIONS)
        if mentions is None:
            mentions = doc._.btx_mentions
        for a in sorted(mentions or (), key=_START):
            lab = a["label"]
            lst = by_label.get(lab)
            if lst is None:
                by_label[lab] = [a]
            else:
                lst.append(a)
            seg = a["ctx"]["segment"]
            lst = by_seg.get(seg)
            if lst is None:
                by_seg[seg] = [a]
                seg_labels[seg] = {lab}
            else:
                lst.append(a)
                seg_labels[seg].add(lab)
        self._cues: dict[int, bool] = {}
        self.sec_starts: set[int] | None = None
        self._blocks: dict[int, str | None] = {}
        self._mstarts: list[int] | None = None
        self._doses: dict[int, list[dict[str, Any]]] = {}
        self._headers: list[tuple[int, int, str]] | None = None

    def muscles_after(self, pos: int) -> list[dict[str, Any]]:
        """The muscle mentions starting after ``pos`` (at most the next two)."""
        mus = self.labels("MUSCLE")
        i = bisect.bisect_right(self.muscle_starts(), pos)
        return mus[i : i + 2]

    def muscle_starts(self) -> list[int]:
        if self._mstarts is None:
            self._mstarts = [x["start"] for x in self.labels("MUSCLE")]
        return self._mstarts

    def side_headers(self) -> list[tuple[int, int, str]]:
        if self._headers is None:
            self._headers = _side_headers(self)
        return self._headers

    def has_cue(self, i: int) -> bool:
        """Whether segment ``i`` mentions an injection (cached: asked for every mention and list line)."""
        cue = self._cues.get(i)
        if cue is None:
            if i < 0:
                cue = False
            else:
                s, e = self.segs.ranges[i]
                if self.exact:
                    # (a cue word and _INJECT_CUE) or _DIGIT_U is _INJECT_CUE alone when ``low`` is exact
                    seg = self.low[s:e]
                    for k in _CUE_PLAIN:  # the alternatives of _INJECT_CUE_WORD with no boundary test
                        if k in seg:
                            cue = True
                            break
                    else:  # the others, then _INJECT_CUE_DIGIT
                        cue = (
                            ("unit" in seg or "btx" in seg or "dose" in seg or "site" in seg)
                            and _INJECT_CUE_BOUNDED.search(seg) is not None
                        ) or _INJECT_CUE_DIGIT.search(seg) is not None
                else:
                    seg = self.text[s:e]
                    low = seg.lower()
                    cue = any(k in low for k in _CUE_WORDS) and bool(_INJECT_CUE.search(seg)) or bool(_DIGIT_U.search(seg))
            self._cues[i] = cue
        return cue

    def doses_in(self, i: int) -> list[dict[str, Any]]:
        """The DOSE and VOLUME mentions of segment ``i``, by start."""
        doses = self._doses.get(i)
        if doses is None:
            doses = self._doses[i] = [a for a in self.by_seg.get(i, ()) if a["label"] in ("DOSE", "VOLUME")]
        return doses

    def seg_text(self, i: int) -> str:
        if i < 0:
            return ""
        s, e = self.segs.ranges[i]
        return self.text[s:e]

    def seg_has(self, i: int, *labels: str, allowed_only: bool = False) -> bool:
        present = self.seg_labels.get(i)
        if not present:
            return False
        if not allowed_only:
            for lab in labels:
                if lab in present:
                    return True
            return False
        for a in self.by_seg[i]:
            if a["label"] in labels and _context_block(a["ctx"]) is None:
                return True
        return False

    def has_agent(self, i: int, agent_class: str) -> bool:
        """Whether segment ``i`` names an injectate of ``agent_class``."""
        present = self.seg_labels.get(i)
        if not present or "AGENT" not in present:
            return False
        return any(x["label"] == "AGENT" and x.get("agent_class") == agent_class for x in self.by_seg[i])

    def labels(self, label: str) -> list[dict[str, Any]]:
        return self.by_label.get(label, [])

    def section_cat(self, pos: int) -> str:
        j = self.sections.index(pos)
        return self.section_cats[j] if j >= 0 else "none"

    def maybe(self, *keys: str) -> bool:
        """False only when none of the lower-case ``keys`` occurs in the note (a prefilter for IGNORECASE
        patterns that need one of them; inexact lower-casing always says True)."""
        if not self.exact:
            return True
        low = self.low
        for k in keys:
            if k in low:
                return True
        return False


def _section_ok(note: _Note, a: dict[str, Any]) -> str | None:
    """Why the section of mention ``a`` rules it out as something done today, or None."""
    ctx = a["ctx"]
    section = ctx["section"]
    if section in _BAD_SECTIONS:
        return f"section:{section}"
    if section != "history" and section != "plan":
        return None
    for r in ctx["rules"]:
        if not r.startswith("SECTION:"):
            return None
    seg = note.seg_text(ctx["segment"])
    if section == "history":
        return None if _TODAY.search(seg) else "section:history"
    sections = note.sections
    j = sections.index(a["start"])
    head = ""
    if j >= 0:
        text = note.text
        s0 = sections.ranges[j][0]
        e0 = text.find("\n", s0)
        head = text[s0 : e0 if e0 >= 0 else len(text)]
    performed = [t for t in (seg, head) if _PERFORMED.search(t) and not _NOT_TODAY.search(t)]
    return None if performed else "section:plan"


def _mention_block(note: _Note, a: dict[str, Any]) -> str | None:
    """Why mention ``a`` is not something done today (context or section), or None (the section test of a
    history or plan mention cached per mention)."""
    ctx = a["ctx"]
    for r in ctx["rules"]:
        if not r.startswith("SECTION:"):
            if ctx.get("negated"):
                return "negated"
            if ctx.get("declined"):
                return "declined"
            if ctx.get("hypothetical"):
                return "hypothetical"
            if ctx.get("historical"):
                return "historical"
            break
    section = ctx["section"]
    if section in _BAD_SECTIONS:
        return f"section:{section}"
    if section != "history" and section != "plan":
        return None
    key = id(a)
    blocks = note._blocks
    if key in blocks:
        return blocks[key]
    reason = _section_ok(note, a)
    blocks[key] = reason
    return reason


def _mention_block_uncached(note: _Note, a: dict[str, Any]) -> str | None:
    ctx = a["ctx"]
    for r in ctx["rules"]:
        if not r.startswith("SECTION:"):
            for flag in ("negated", "declined", "hypothetical", "historical"):
                if ctx.get(flag):
                    return flag
            break
    return _section_ok(note, a)


# ----------------------------------------------------------------------------------------------
# sides

_EYE_HEADER = re.compile(r"(?m)^[ \t\-*•>]*(?P<h>OD\s*/\s*OS|OS\s*/\s*OD|OD\s*(?:and|&|\+)\s*OS|OU|OD|OS)\b[^\n]{0,30}?:")
_COLON_END = re.compile(r"(?m):[ \t]*$")  # the colon of a line ending in ":" (a line of at most 160 + 1 chars)
_SIDE_HEADER_LOW = re.compile(_SIDE_HEADER.pattern.replace("(?im)", "(?m)"))  # _SIDE_HEADER on ``_Note.low``
_EYE_SIDE = {"OD": "R", "OS": "L", "OU": "B"}
_WS = re.compile(r"\s")
_SIDE_AFTER_FIRST = frozenset("mh,([-olrbMHOLRB")  # what _SIDE_AFTER can start with after blanks
_PAIR_JOIN = re.compile(r"\s*(?:and|&|/|,|or)\s*(?:the\s+)?", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[.;:]\s")


def _side_headers(note: _Note) -> list[tuple[int, int, str]]:
    """(start, block_end, side) for side headers: line-start "Right:", "LUE -", "OD:", or a line ending in
    ":" that names a side ("… on the right side:", "R forearm:")."""
    text = note.text
    low = note.low
    exact = note.exact
    out = []
    if "OD" in text or "OS" in text or "OU" in text:
        for m in _EYE_HEADER.finditer(text):
            h = _WS.sub("", m.group("h"))
            h = h if h in _EYE_SIDE else "OU"
            side = _EYE_SIDE.get(h, "B")
            nxt = text.find("\n\n", m.end())
            out.append((m.start(), nxt if nxt >= 0 else len(text), side))
    # lines ending in ":" (the colon at most 160 characters into its line)
    for c in _COLON_END.finditer(text):
        line_start = text.rfind("\n", 0, c.start()) + 1
        if c.start() - line_start > 160:
            continue
        # (every _SIDE_TOKEN match has its "word" or its "letter" group)
        if exact:
            toks = list(_SIDE_TOKEN_LOW.finditer(low, line_start, c.end()))
        else:
            toks = list(_SIDE_TOKEN.finditer(text[line_start : c.end()]))
        if not toks:
            continue
        side = _side_word(toks[-1].group(0))
        if side is None:
            continue
        nxt = text.find("\n\n", c.end())
        out.append((c.end(), nxt if nxt >= 0 else len(text), side))
    for m in _SIDE_HEADER_LOW.finditer(note.low) if note.exact else _SIDE_HEADER.finditer(text):
        h = m.group("h").lower()
        side = side_of(h.split()[0]) if h[:3] not in ("rue", "lue", "rle", "lle", "rul", "lul") else h[0].upper()
        if side is None:
            continue
        nxt = text.find("\n\n", m.end())
        out.append((m.start(), nxt if nxt >= 0 else len(text), side))
    out.sort()
    return out


_SIDE_MEMO: dict[str, str | None] = {}


def _side_word(word: str) -> str | None:
    """``side_of(word)``, memoised (side tokens are a handful of distinct strings)."""
    try:
        return _SIDE_MEMO[word]
    except KeyError:
        side = _SIDE_MEMO[word] = side_of(word)  # (a few dozen spellings at most)
        return side


def _side_for(
    note: _Note, m: dict[str, Any], prev: dict[str, Any] | None, headers: list[tuple[int, int, str]] | None
) -> tuple[str | None, str]:
    """The side of mention ``m`` and the rule that gave it; ``headers`` None: the note's side headers."""
    text = note.text
    start = m["start"]
    end = m["end"]
    seg = m["ctx"]["segment"]
    lo = start - 60
    if seg >= 0:
        seg_start = note.segs.ranges[seg][0]
        if seg_start > lo:
            lo = seg_start
    elif lo < 0:
        lo = 0
    same_seg = prev is not None and prev["ctx"]["segment"] == seg
    if same_seg and prev["end"] > lo:  # type: ignore[index]
        lo = prev["end"]  # type: ignore[index]
    # stop at a clause break so "… of the right arm. FCR" does not reach back
    exact = note.exact
    src = note.low if exact else text
    cut = max(src.rfind(";", lo, start), src.rfind(". ", lo, start), src.rfind("\n", lo, start))
    if cut >= 0:
        lo = cut + 1
    if exact:
        window = src[lo:start]
        # (every side token starts with l, r or b; findall is the cheap call, positions only for a pair)
        words = _SIDE_TOKEN_LOW.findall(window) if "l" in window or "r" in window or "b" in window else ()
        if words:
            side = _side_word(words[-1])
            if len(words) >= 2:
                a = _side_word(words[-2])
                if (a == "L" and side == "R") or (a == "R" and side == "L"):
                    toks = list(_SIDE_TOKEN_LOW.finditer(window))
                    if _PAIR_JOIN.fullmatch(window, toks[-2].end(), toks[-1].start()):
                        return "B", "side-before"
            return side, "side-before"
    else:
        toks = list(_SIDE_TOKEN.finditer(text[lo:start]))
        if toks:
            last = toks[-1]
            if len(toks) >= 2:
                prev_t = toks[-2]
                a, b = _side_word(prev_t.group(0)), _side_word(last.group(0))
                if ((a == "L" and b == "R") or (a == "R" and b == "L")) and _PAIR_JOIN.fullmatch(
                    text[lo + prev_t.end() : lo + last.start()]
                ):
                    return "B", "side-before"
            return _side_word(last.group(0)), "side-before"
    after = text[end : end + 30]
    first = after.lstrip()[:1]
    am = _SIDE_AFTER.match(after) if first and first in _SIDE_AFTER_FIRST else None
    if am:
        nxt = note.muscles_after(end)
        tail = after[am.end() :].lstrip(" ,")
        if not (nxt and nxt[0]["start"] <= end + am.end() + 3 and not tail.startswith(("(", "-"))):
            return side_of(am.group("s").replace("both sides", "both")), "side-after"
    line_start = max(text.rfind("\n", 0, start) + 1, start - 200)
    line_end = text.find("\n", end, end + 200)
    line = text[line_start : line_end if line_end >= 0 else end + 200]
    if "|" in line or "\t" in line or "   " in line:
        for cell in _CELL_SPLIT.split(line):
            s = side_of(cell) if cell and len(cell) <= 12 else None
            if s:
                return s, "side-table"
    if same_seg and prev.get("side"):  # type: ignore[union-attr]
        between = text[prev["end"] : start]  # type: ignore[index]
        if len(between) < 80 and not _CLAUSE_BREAK.search(between):
            return prev["side"], "side-list"  # type: ignore[index]
    if headers is None:
        headers = note.side_headers()
    inside = [side for hs, he, side in headers if hs <= start < he]
    if inside:
        return inside[-1], "side-header"
    return None, "side-none"


# ----------------------------------------------------------------------------------------------
# doses


def _concentration(note: _Note) -> float | None:
    vial = note.labels("VIAL")
    for c in note.labels("CONC"):
        if c.get("units_per_ml"):
            return float(c["units_per_ml"])
        if c.get("diluent_ml") and vial and vial[0].get("size"):
            return float(vial[0]["size"]) / float(c["diluent_ml"])
    return None


_BARE = re.compile(
    r"[ \t]*(?:\((?:[^()\n]{0,25})\)[ \t]*)?[:=\-–]?[ \t]*(\d+(?:\.\d+)?)(?![\d.,])"
    r"(?![ \t]*(?:ml|cc|mg|%|sites?|mm|cm|kg|y/?o|yrs?|years?|mos?|months?|weeks?|wks?|days?|hours?|x\b|/|-[a-z]|degrees?|°))",
    re.IGNORECASE,
)
_LIST_LINE = re.compile(r"^[ \t]*(?:[-*•·>]|\d+[.)]|\[[xX ]?\]|[LR]\b|(?:left|right|lt|rt)\b|[RL][UL]E\b)", re.IGNORECASE)


_ROW_NUMBER = re.compile(r"\|\s*(\d+(?:\.\d+)?)\s*(?:u|units?)?\s*(?=\||$)", re.IGNORECASE)
_PAREN_UNITS = re.compile(r"\s*\(\s*(\d+(?:\.\d+)?)\s*(?:units?|u)\b", re.IGNORECASE)


def _bare_dose(note: _Note, m: dict[str, Any], limit: int) -> float | None:
    """A number with no unit right after a muscle in a dosing list ("L FCR 25", "MG 100 | LG 100"): units."""
    text = note.text
    bm = _BARE.match(text, m["end"], min(limit, m["end"] + 40))
    if bm is None:
        line_end = text.find("\n", m["end"])
        row = text[m["end"] : line_end if line_end >= 0 else len(text)]
        if "|" in row:  # "| OO | L | 25 |": the row's one number is the dose
            nums = _ROW_NUMBER.findall(row)
            if len(nums) == 1 and 0 < float(nums[0]) <= 2000:
                return float(nums[0])
        return None
    line_start = text.rfind("\n", 0, m["start"]) + 1
    line_end = text.find("\n", m["end"])
    line = text[line_start : line_end if line_end >= 0 else len(text)]
    starts = note.muscle_starts()  # muscles starting in the line
    in_line = bisect.bisect_left(starts, line_start + len(line)) - bisect.bisect_left(starts, line_start)
    if in_line < 2 and not _LIST_LINE.match(line):
        return None
    value = float(bm.group(1))
    return value if 0 < value <= 2000 else None


def _dosing_line(note: _Note, seg: int) -> bool:
    """A line listing two or more muscles each followed by a number ("MG 100 | LG 100 | Sol 120")."""
    pairs = 0
    if "MUSCLE" not in note.seg_labels.get(seg, ()):
        return False
    for x in note.by_seg[seg]:
        if x["label"] == "MUSCLE" and _BARE.match(note.text, x["end"], x["end"] + 40):
            pairs += 1
            if pairs >= 2:
                return True
    return False


def _dose_for(
    note: _Note, m: dict[str, Any], nxt: dict[str, Any] | None, prev: dict[str, Any] | None, conc: float | None, used: set[int]
) -> tuple[float | None, dict[str, Any] | None]:
    """Units injected at muscle mention ``m`` (per side), and the dose span used."""
    seg = m["ctx"]["segment"]
    text = note.text
    start, end = m["start"], m["end"]
    seg_range = note.segs.ranges[seg]
    limit_after = nxt["start"] if nxt is not None and nxt["ctx"]["segment"] == seg else seg_range[1]
    lower = prev["end"] if prev is not None and prev["ctx"]["segment"] == seg else seg_range[0]
    before = after = None  # the last candidate dose before the muscle, the first after it
    for a in note.doses_in(seg):
        a_start = a["start"]
        if a_start in used:
            continue
        if after is None and end <= a_start < limit_after and a_start - end <= 60:
            after = a
        if lower <= a_start and a["end"] <= start and start - a["end"] <= 45:
            before = a
    pick = None
    if before is not None or after is not None:
        if note.exact:
            src, cb, ca = note.low, _CONNECT_BEFORE_LOW, _CONNECT_AFTER_LOW
        else:
            src, cb, ca = text, _CONNECT_BEFORE, _CONNECT_AFTER
        if before is not None and cb.fullmatch(src[before["end"] : start]):
            pick = before
        if pick is None and after is not None and ca.fullmatch(src[end : after["start"]]):
            pick = after
    if pick is None:
        return _bare_dose(note, m, limit_after), None
    if pick["label"] == "DOSE":
        return float(pick["total_units"]), pick
    ml = pick.get("ml")
    follow = text[pick["end"] : pick["end"] + 40]
    cm = [c for c in note.labels("CONC") if pick["end"] <= c["start"] <= pick["end"] + 12 and c.get("units_per_ml")]
    if ml and cm:
        return float(ml) * float(cm[0]["units_per_ml"]), pick
    paren = _PAREN_UNITS.match(follow)
    if ml and paren:
        return float(paren.group(1)), pick
    if ml and conc and not note.seg_has(seg, "AGENT"):
        return float(ml) * conc, pick
    return None, None


# ----------------------------------------------------------------------------------------------
# the main function


def facts_from_doc(doc: Doc) -> Facts:
    """Everything the mapper needs, from a Doc processed by the btx pipeline."""
    note = _Note(doc)
    text = note.text
    f = Facts()
    _product(note, f)
    _injections(note, f)
    _neurolysis(note, f)
    _amounts(note, f)
    _guidance(note, f)
    _diagnoses(note, f)
    # the hints matter only to a mention or nerve block without a side
    unsided = any(i.side is None for i in f.injections) or any(n.side is None for n in f.nerves)
    hints = _region_side_hints(note, f) if unsided else {}
    _fill_sides(f, hints)
    _sweat_sites(note, f)
    _fill_nerve_sides(f, hints)
    _listed_codes(note, f)
    _date(note, f)
    _cosmetic(note, f)
    hm = _HAND.search(text) if note.maybe("t-hand", "t hand", "dominant", "ambidextrous") else None
    if hm:
        g = hm.group("s") or hm.group("s2") or hm.group("s3")
        f.handedness = side_of(g) if g else "B"
    return f


_UNITS_OR_VIAL = re.compile(r"\d\s*(?:units?|u)\b|vial", re.IGNORECASE)
_UNITS_OR_VIAL_LOW = re.compile(_UNITS_OR_VIAL.pattern)  # on ``_Note.low``


def _product(note: _Note, f: Facts) -> None:
    exact, low = note.exact, note.low
    scores: dict[str, float] = {}
    evid: dict[str, list[Evidence]] = {}
    for a in note.labels("PRODUCT"):
        f.toxin_mentioned = True
        reason = _mention_block(note, a)
        if reason:
            f.excluded.append(_excluded("PRODUCT", a["text"], reason, a["start"]))
            continue
        p = a["product"]
        n0, n1 = max(0, a["start"] - 30), a["end"] + 30
        if exact:
            bonus = 2.0 if _UNITS_OR_VIAL_LOW.search(low[n0:n1]) else 0.0
        else:
            bonus = 2.0 if _UNITS_OR_VIAL.search(note.text[n0:n1]) else 0.0
        if p == "botox" and a["text"].lower() == "botox":
            bonus -= 0.5  # "Botox" is often used for any toxin
        scores[p] = scores.get(p, 0.0) + 1.0 + bonus
        evid.setdefault(p, []).append(_ev(note.text, a))
    serotypes = set()
    for a in note.labels("TOXIN"):
        f.toxin_mentioned = True
        if _mention_block(note, a):
            continue
        f.toxin_today = True
        if a.get("serotype"):
            serotypes.add(a["serotype"])
            evid.setdefault("_serotype", []).append(_ev(note.text, a))
    if scores:
        f.toxin_today = True
        ranked = sorted(scores, key=lambda p: (-scores[p], p))
        f.products_named = ranked
        f.product = ranked[0]
        f.product_evidence = evid[ranked[0]]
        f.serotype = lexicons.products()[f.product]["serotype"]
    elif len(serotypes) == 1:
        f.serotype = serotypes.pop()
        f.product_evidence = evid.get("_serotype", [])


def _injections(note: _Note, f: Facts) -> None:
    text = note.text
    muscles = lexicons.muscles()
    conc = _concentration(note)
    mentions = note.labels("MUSCLE")
    used: set[int] = set()
    prev: dict[str, Any] | None = None
    seen: dict[tuple[str, str | None], int] = {}
    # segments naming the toxin or a dose
    toxin_segments = {a["ctx"]["segment"] for lab in ("PRODUCT", "TOXIN", "DOSE") for a in note.labels(lab)}
    regions_in_note = {r for m in mentions for r in m["regions"] if len(m["ids"]) == 1}
    has_cue = note.has_cue
    seg_labels = note.seg_labels
    injections = f.injections
    n_mentions = len(mentions)
    for idx, m in enumerate(mentions):
        nxt = mentions[idx + 1] if idx + 1 < n_mentions else None
        side, side_rule = _side_for(note, m, prev, None)
        m["side"] = side
        before_m, prev = prev, m
        reason = _mention_block(note, m)
        seg = m["ctx"]["segment"]
        if reason is None and _LANDMARK_AT.match(text, m["end"], m["end"] + 25):
            reason = "landmark"
        if reason is None:
            cue = has_cue(seg)
            if cue:
                head: int | None = seg
            else:
                head = _block_cue(note, seg)
            has_toxin = seg in toxin_segments
            other_agent = note.has_agent(seg, "other")
            if head is not None and head != seg and not has_toxin:
                has_toxin = head in toxin_segments
                other_agent = other_agent or note.has_agent(head, "other")
            if (other_agent or "AGENT" in seg_labels.get(seg, ())) and not has_toxin:
                reason = "other injectate"
            elif not (cue or head is not None or (f.toxin_today and _dosing_line(note, seg))):
                reason = "no injection documented"
        if reason is not None:
            f.excluded.append(_excluded("MUSCLE", m["text"], reason, m["start"]))
            continue
        units, dose_span = _dose_for(note, m, nxt, before_m, conc, used)
        if dose_span is not None:
            used.add(dose_span["start"])
            note.used_doses.add(dose_span["start"])
        ids = m["ids"]
        if len(ids) > 1:  # ambiguous abbreviation (TA): prefer the region the rest of the note uses
            ids = sorted(ids, key=lambda i: muscles[i].region not in regions_in_note)
        mus = muscles[ids[0]]
        if side is None and dose_span is not None and dose_span.get("per_side"):
            side, side_rule = "B", "side-per-side-dose"
        sides = [side] if side in ("L", "R", None) else ["L", "R"]
        if (
            side == "B"
            and units is not None
            and dose_span is not None
            and _DIVIDED.search(text[max(0, dose_span["start"] - 25) : dose_span["end"] + 25])
        ):
            units = units / 2
        ev = _ev(text, m)
        for s in sides:
            key = (mus.muscle_id, s)
            if key in seen:
                k = seen[key]
                if injections[k].units is None and units is not None:
                    injections[k] = _injection(
                        mus.muscle_id, mus.name, mus.region, s, units, mus.count_ids, mus.is_group, ev, side_rule
                    )
                continue
            seen[key] = len(injections)
            injections.append(
                _injection(mus.muscle_id, mus.name, mus.region, s, units, mus.count_ids, mus.is_group, ev, side_rule)
            )
    _mirror_sides(note, f)
    _cancellation(note, f)


_MIRROR = re.compile(
    r"(?im)^[ \t\-*•>]*(?P<h>OD|OS|left(?:\s+side)?|right(?:\s+side)?|lt|rt|L|R)\b[^\n:]{0,20}:[ \t]*(?:the\s+)?"
    r"(?:same|identical|mirror(?:ed)?|likewise|ditto)\b"
)


def _mirror_sides(note: _Note, f: Facts) -> None:
    """ "OS: same" / "Left: mirrored" repeats the other side's injections on this side."""
    if not f.injections or not note.maybe("same", "identical", "mirror", "likewise", "ditto"):
        return
    for m in _MIRROR.finditer(note.text):
        h = m.group("h").split()[0].upper()
        side = {"OD": "R", "OS": "L", "LEFT": "L", "RIGHT": "R", "LT": "L", "RT": "R", "L": "L", "R": "R"}[h]
        other = "L" if side == "R" else "R"
        have = {(i.muscle_id, i.side) for i in f.injections}
        for inj in list(f.injections):
            if inj.side == other and inj.evidence.start < m.start() and (inj.muscle_id, side) not in have:
                f.injections.append(_with_side(inj, side, "side-mirror"))


def _lead(words: tuple[str, ...], rest: str = "") -> str:
    """``\\b(?:word1|word2…)rest`` as ``w(?<!\\ww)ord1rest|…``: the same matches, tried in the same order,
    but every alternative starts with a literal letter, so the regex engine skips the positions where
    none can start (a leading ``\\b`` or lookbehind makes it try every position)."""
    return "|".join(f"{w[0]}(?<!\\w{w[0]}){w[1:]}{rest}" for w in words)


# _CANCEL and _TOXIN_NEGATED on ``_Note.low`` (alternatives in the same order), and what every
# _TOXIN_NEGATED match contains
_CANCEL_LOW = re.compile(
    "|".join(
        (
            _lead(
                ("injections?", "procedure", "treatment", "toxin", "botox", "chemodenervation", "session"),
                r"\b[^.\n]{0,40}?\b(?:was|were|is|has\s+been|had\s+to\s+be)\s+(?:deferred|postponed|cancel+ed|aborted|"
                r"not\s+performed|not\s+done|held|rescheduled|withheld|stopped)\b",
            ),
            _lead(
                ("deferred", "postponed", "cancel+ed", "aborted", "held", "rescheduled"),
                r"\s+(?:the\s+|today'?s\s+|this\s+)?(?:injections?|procedure|treatment)\b",
            ),
            _lead(
                ("declined", "refused"),
                r"\s+(?:the\s+|any\s+|further\s+|today'?s\s+)?(?:botox|toxin|botulinum|injections?|procedure|treatment)\b",
            ),
            _lead((r"did\s+not", r"does\s+not", r"do\s+not"), r"\s+(?:proceed|wish\s+to\s+proceed)\b"),
            _lead((r"procedure\s*:\s*not\s+performed\b",)),
        )
    )
)
_TOXIN_NEGATED_LOW = re.compile(
    "|".join(
        (
            _lead((r"no\s+(?:botulinum(?:\s+toxin)?|botox|toxin)\s*[.,;]",)),
            _lead((r"never\s+(?:actually\s+)?received\s+(?:botulinum|botox|toxin)",)),
            _lead(
                (r"no\s+(?:injections?|botox|toxin|procedure)\s+(?:was\s+|were\s+)?(?:given\s+|performed\s+|done\s+)?today\b",)
            ),
            _lead(
                (
                    r"no\s+(?:botulinum(?:\s+toxin)?|botox|toxin|dysport|xeomin|myobloc|daxxify)\s+(?:was|were)\s+"
                    r"(?:used|given|injected|administered)\b",
                )
            ),
            _lead(
                ("botulinum(?:\\s+toxin)?", "botox", "toxin"),
                r"\s+(?:was|were)\s+not\s+(?:used|given|injected|administered)\b",
            ),
        )
    )
)
_NO_TOXIN = re.compile(r"no\s+(?:bot|tox|inj|pro|dys|xeo|myo|dax)")
_WAS_NOT = re.compile(r"w(?:as|ere)\s+not\s")
_WAS_INJECTED = re.compile(r"\bwas injected|\bwere injected|\binjected (?:into|in|to)\b|\badministered\b", re.IGNORECASE)


def _cancellation(note: _Note, f: Facts) -> None:
    """Drop the injections when the note says the procedure was not done today (deferred, aborted,
    declined) or that no toxin was used, unless an injection sentence says it was given."""
    text = note.text

    def ok(m: re.Match[str]) -> bool:
        return note.section_cat(m.start()) not in ("history",)

    low = note.low
    cancel = negated = None
    if "no " in low or "never" in low or " not " in low:
        if note.exact:
            # what every match contains (patterns with a literal prefix: the regex engine skips ahead)
            if _NO_TOXIN.search(low) or "never" in low or _WAS_NOT.search(low):
                negated = next((m for m in _TOXIN_NEGATED_LOW.finditer(low) if ok(m)), None)
        else:
            negated = next((m for m in _TOXIN_NEGATED.finditer(text) if ok(m)), None)
    if negated is None:
        for i in f.injections:
            if i.units is not None:
                return  # a dose was given: a cancellation sentence alone changes nothing (see below)
    if _any_in(_CANCEL_KEYS, low):  # cheap prefilter: almost no note has any of these
        if note.exact:
            cancel = next((m for m in _CANCEL_LOW.finditer(low) if ok(m)), None)
        else:
            cancel = next((m for m in _CANCEL.finditer(text) if ok(m)), None)
    if cancel is None and negated is None:
        return
    if cancel is not None and negated is None and _PARTIAL.search(text[cancel.start() : cancel.end()]):
        return
    performed = [i for i in f.injections if i.units is not None] + [
        i for i in f.injections if _WAS_INJECTED.search(note.seg_text(note.segs.index(i.evidence.start)))
    ]
    if performed and negated is None:
        return
    for i in f.injections:
        f.excluded.append(_excluded("MUSCLE", i.evidence.text, "procedure not performed", i.evidence.start))
    f.injections = []
    f.cancelled = True
    f.toxin_today = False


_REGION_SIDE = re.compile(
    r"(?<![A-Za-z])(?P<s>left|right|bilateral|both|each|lt|rt|L|R)\b[\s-]*(?:sided\s+|side\s+of\s+(?:the\s+)?)?(?:\w+\s+){0,2}?"
    r"(?P<r>hemi-?face|face|facial|eyes?|eyelids?|lids?|neck|cervical|arm|upper (?:extremity|limb)|forearm|hand|wrist|elbow|"
    r"leg|lower (?:extremity|limb)|calf|foot|ankle|knee|thigh|hip|vocal (?:fold|cord)s?|thyroarytenoids?|axillae?|parotids?)\b",
    re.IGNORECASE,
)
_REGION_SIDE_LOW = re.compile(_REGION_SIDE.pattern.replace("A-Za-z", "a-z").replace("|L|R)", "|l|r)"))
_REGION_OF_WORD = {
    "face": "facial",
    "hemiface": "facial",
    "hemi-face": "facial",
    "facial": "facial",
    "eye": "facial",
    "eyes": "facial",
    "eyelid": "facial",
    "eyelids": "facial",
    "lid": "facial",
    "lids": "facial",
    "neck": "neck",
    "cervical": "neck",
    "vocal": "larynx",
    "thyroarytenoid": "larynx",
    "thyroarytenoids": "larynx",
    "axilla": "axilla",
    "axillae": "axilla",
    "parotid": "salivary",
    "parotids": "salivary",
}


def _region_side_hints(note: _Note, f: Facts) -> dict[str, set[str]]:
    """Sides a note gives a whole region ("right face", "L hemifacial spasm", "left hemiparesis")."""
    hints: dict[str, set[str]] = {}
    for m in _REGION_SIDE_LOW.finditer(note.low) if note.exact else _REGION_SIDE.finditer(note.text):
        if note.section_cat(m.start()) == "history":
            continue
        side = side_of(m.group("s"))
        word = m.group("r").lower().split()[0]
        region = _REGION_OF_WORD.get(word)
        if region is None:
            region = "upper_extremity" if word in ("arm", "upper", "forearm", "hand", "wrist", "elbow") else "lower_extremity"
        if side:
            hints.setdefault(region, set()).add(side)
    for d in f.diagnoses:
        q = dict(d.qualifiers)
        if q.get("side") in ("L", "R", "B"):
            if d.concept == "hemifacial_spasm":
                hints.setdefault("facial", set()).add(q["side"])
            elif d.concept in ("hemiplegia",):
                for r in ("upper_extremity", "lower_extremity"):
                    hints.setdefault(r, set()).add(q["side"])
            elif d.concept in ("writers_cramp", "focal_dystonia"):
                hints.setdefault("upper_extremity", set()).add(q["side"])
    return hints


_SWEAT_REGIONS = {"axilla", "palm", "sole", "skin_other"}
_SWEAT_CONTEXT = re.compile(r"hyperhidros|hyperhydros|sweat|starch[- ]iodine|minor'?s test|intradermal", re.IGNORECASE)
_SWEAT_CONTEXT_LOW = re.compile(_SWEAT_CONTEXT.pattern)
_SKIN_SITE = re.compile(r"\b(?:forehead|scalp|hairline|face|craniofacial|brow)\b", re.IGNORECASE)


def _sweat_sites(note: _Note, f: Facts) -> None:
    """Sweat-gland sites count only in a hyperhidrosis note; there, a named skin area (forehead, scalp)
    injected intradermally is a site of its own."""
    if (f.injections or not f.toxin_today) and not any(i.region in _SWEAT_REGIONS for i in f.injections):
        return  # nothing to drop and nothing to add
    low = note.low
    if note.exact:
        sweat = _SWEAT_CONTEXT_LOW.search(low) is not None
    else:
        sweat = any(k in low for k in ("hyperhidros", "hyperhydros", "sweat", "starch", "minor", "intradermal")) and bool(
            _SWEAT_CONTEXT.search(note.text)
        )
    if not sweat:
        dropped = [i for i in f.injections if i.region in _SWEAT_REGIONS]
        f.excluded.extend(_excluded("MUSCLE", i.evidence.text, "not a hyperhidrosis note", i.evidence.start) for i in dropped)
        f.injections = [i for i in f.injections if i.region not in _SWEAT_REGIONS]
        return
    if f.injections or not f.toxin_today:
        return
    for m in _SKIN_SITE.finditer(note.text):
        seg = note.segs.index(m.start())
        if _INJECT_CUE.search(note.seg_text(seg)) and not _mention_block_uncached(
            note, {"ctx": _ctx_at(note, m.start()), "start": m.start()}
        ):
            ev = Evidence(m.start(), m.end(), m.group(0))
            f.injections.append(
                Injection(
                    "craniofacial_skin",
                    "craniofacial skin",
                    "skin_other",
                    None,
                    None,
                    ("craniofacial_skin",),
                    False,
                    ev,
                    "site-skin",
                )
            )
            return


def _ctx_at(note: _Note, pos: int) -> dict[str, Any]:
    """Section and context flags at a character offset (for text found outside the lexicons)."""
    from nlp.components.context import FLAGS, segment_scopes

    seg = note.segs.index(pos)
    s0, e0 = note.segs.ranges[seg]
    ctx: dict[str, Any] = dict.fromkeys(FLAGS, False)
    rules = []
    for flag, lo, hi, rule_id, _ts, _te in segment_scopes(note.text, s0, e0):
        if lo <= pos < hi:
            ctx[flag] = True
            rules.append(rule_id)
    ctx["section"] = note.section_cat(pos)
    ctx["segment"] = seg
    ctx["rules"] = rules
    return ctx


def _fill_sides(f: Facts, hints: dict[str, set[str]] | None = None) -> None:
    """A mention without a side takes the side its region has elsewhere in the note (or that the note
    gives the region as a whole), and is dropped when the same muscle is already listed with a side (a
    summary line repeating the detail)."""
    sided = {(i.muscle_id) for i in f.injections if i.side}
    region_sides: dict[str, set[str]] = {}
    for i in f.injections:
        if i.side:
            region_sides.setdefault(_limb(i.region), set()).add(i.side)
    for region, sides in (hints or {}).items():
        if region not in region_sides and len(sides) == 1 and "B" not in sides:
            region_sides[region] = set(sides)
    limbs_sided = {i.region for i in f.injections if i.side and i.region in ("upper_extremity", "lower_extremity")}
    out = []
    for i in f.injections:
        if i.side is None:
            if i.muscle_id in sided:
                continue
            if i.region in limbs_sided and len(region_sides.get(i.region, ())) > 1:
                # an unsided limb mention beside sided ones ("hamstring spasticity") adds no extremity
                f.excluded.append(_excluded("MUSCLE", i.evidence.text, "side unknown beside sided muscles", i.evidence.start))
                continue
            sides = region_sides.get(_limb(i.region), set())
            if len(sides) == 1:
                i = _with_side(i, next(iter(sides)), "side-region")
        out.append(i)
    f.injections = out


def _fill_nerve_sides(f: Facts, hints: dict[str, set[str]]) -> None:
    """An unsided nerve block takes the side the note gives its limb ("left hemiparesis")."""
    nerves = lexicons.nerves()
    out = []
    for n in f.nerves:
        if n.side is None:
            sides = hints.get(nerves[n.nerve_id].get("region", ""), set())
            if len(sides) == 1 and "B" not in sides:
                n = replace(n, side=next(iter(sides)))
        out.append(n)
    f.nerves = out


def _limb(region: str) -> str:
    return region


def _block_cue(note: _Note, seg: int) -> int | None:
    """The segment that opened the injection list or table segment ``seg`` sits in (itself when it
    announces injections), or None (a list runs until a blank line or a new section): the last segment
    up to ``seg`` with a cue and no list break after it."""
    text = note.text
    sec_starts = note.sec_starts
    if sec_starts is None:
        sec_starts = note.sec_starts = {r[0] for r in note.sections.ranges}
    ranges = note.segs.ranges
    has_cue = note.has_cue
    for j in range(seg, -1, -1):
        if has_cue(j):
            return j
        # the section containing ``s`` starts at ``s`` exactly when a section starts at ``s``
        s = ranges[j][0]
        if s in sec_starts or "\n\n" in text[max(0, s - 4) : s + 1] or "\n \n" in text[max(0, s - 5) : s + 1]:
            return None
    return None


_AGENT_SIDE = re.compile(r"\b(bilaterally|on both sides|on the left|on the right|each side)\b", re.IGNORECASE)


def _neurolysis(note: _Note, f: Facts) -> None:
    text = note.text
    nerves = lexicons.nerves()
    seen: dict[tuple[str, str | None], int] = {}
    prev = None
    headers: list[tuple[int, int, str]] = []
    for a in note.labels("NERVE"):
        side, _ = _side_for(note, a, prev, headers)
        a["side"] = side
        prev = a
        seg = a["ctx"]["segment"]
        reason = _mention_block(note, a)
        # the agent is named in the nerve's sentence or in the one before or after it in the same paragraph
        segs = [seg]
        for nb in (seg - 1, seg + 1):
            if 0 <= nb < len(note.segs):
                lo, hi = sorted((note.segs.ranges[nb], note.segs.ranges[seg]))
                if "\n\n" not in text[lo[1] - 1 : hi[0] + 1]:
                    segs.append(nb)
        agent_segs = [
            sg
            for sg in segs
            if any(
                x["label"] == "AGENT" and x.get("agent_class") == "neurolytic" and _context_block(x["ctx"]) is None
                for x in note.by_seg.get(sg, ())
            )
        ]
        agent = bool(agent_segs)
        if side is None and agent_segs:
            # "4 mL of phenol was injected in this location bilaterally"
            sm = _AGENT_SIDE.search(note.seg_text(agent_segs[0]))
            if sm:
                side = side_of(sm.group(1).replace("on the ", "").replace("on both sides", "both"))
        if reason is None and not agent:
            reason = "no neurolytic agent"
        if reason is not None:
            f.excluded.append(_excluded("NERVE", a["text"], reason, a["start"]))
            continue
        nid = a["ids"][0]
        for s in [side] if side != "B" else ["L", "R"]:
            if (nid, s) in seen:
                continue
            if s is None and any(k[0] == nid for k in seen):
                continue
            seen[(nid, s)] = len(f.nerves)
            f.nerves.append(NerveBlock(nid, nerves[nid]["name"], s, _ev(text, a)))
    # drop a side-less duplicate when a sided mention of the same nerve exists
    sided = {n.nerve_id for n in f.nerves if n.side}
    f.nerves = [n for n in f.nerves if n.side or n.nerve_id not in sided]


_IN_GAP = re.compile(r"\s*(?:in\s+)?")
_VOLUME_WORD = re.compile(r"\b(?:ml|cc|volume|vials?)\b", re.IGNORECASE)
_UNITS_WORD = re.compile(r"\b(?:units?|dose)\b", re.IGNORECASE)


def _amounts(note: _Note, f: Facts) -> None:
    text = note.text
    allowed = [a for a in note.labels("DOSE") if _mention_block(note, a) is None]
    # a stated total: a dose right after "total", or followed by "total"; a total in parentheses is a
    # subtotal, and the last total of the procedure wins (a summary line after the detail)
    found: list[tuple[bool, dict[str, Any]]] = []
    for cue in note.labels("TOTAL_CUE"):
        if _mention_block(note, cue):
            continue
        seg = cue["ctx"]["segment"]
        after = [d for d in allowed if d["ctx"]["segment"] == seg and 0 <= d["start"] - cue["end"] <= 70]
        before = [
            d
            for d in allowed
            if d["ctx"]["segment"] == seg
            and 0 <= cue["start"] - d["end"] <= 8
            and _IN_GAP.fullmatch(text[d["end"] : cue["start"]])
        ]
        pick = before[-1] if before else (after[0] if after else None)
        if pick is None:
            continue
        gap = text[cue["end"] : pick["start"]] if pick["start"] >= cue["end"] else ""
        if _VOLUME_WORD.search(gap) and not _UNITS_WORD.search(gap):
            continue
        line_start = text.rfind("\n", 0, cue["start"]) + 1
        opened = text[line_start : cue["start"]].count("(") > text[line_start : cue["start"]].count(")")
        found.append((opened, pick))
    if found:
        outside = [p for opened, p in found if not opened]
        pick = (outside or [p for _, p in found])[-1]
        f.stated_total = float(pick["total_units"])
        f.administered_evidence = [_ev(text, pick)]
    prods = [a for lab in ("PRODUCT", "TOXIN") for a in note.labels(lab) if _mention_block(note, a) is None]
    if f.stated_total is None:
        for d in allowed:
            near = [
                p
                for p in prods
                if p["ctx"]["segment"] == d["ctx"]["segment"]
                and (0 <= d["start"] - p["end"] <= 4 or 0 <= p["start"] - d["end"] <= 12)
            ]
            if not near:
                continue
            tail = text[d["end"] : d["end"] + 30]
            head = text[max(0, min(d["start"], near[0]["start"]) - 30) : min(d["start"], near[0]["start"])]
            if _ADMIN_AFTER.match(tail) or _ADMIN_BEFORE.search(head):
                f.stated_total = float(d["total_units"])
                f.administered_evidence = [_ev(text, d)]
                break
    doses = [i.units for i in f.injections if i.units is not None]
    if doses:
        f.sum_units = float(sum(doses))
    prod_segs = {a["ctx"]["segment"] for a in prods}
    product_dose = next((d for d in allowed if d["ctx"]["segment"] in prod_segs and d["start"] not in note.used_doses), None)
    if f.stated_total is not None:
        f.administered_units, f.administered_source = f.stated_total, "stated_total"
    elif f.sum_units is not None and (product_dose is None or f.sum_units >= product_dose["total_units"]):
        f.administered_units, f.administered_source = f.sum_units, "sum_of_muscles"
        f.administered_evidence = [i.evidence for i in f.injections if i.units is not None]
    else:
        if product_dose is not None:  # "Botox 20u to L face today" beats a partial per-muscle sum
            f.administered_units, f.administered_source = float(product_dose["total_units"]), "product_dose"
            f.administered_evidence = [_ev(text, product_dose)]
        else:
            # doses given without a muscle in their sentence ("2.5 units in 0.1 mL was injected")
            injected = {g for g in {d["ctx"]["segment"] for d in allowed} if _INJECTED.search(note.seg_text(g))}
            loose = [d for d in allowed if d["ctx"]["segment"] in injected and d["start"] not in note.used_doses]
            if loose and f.injections:
                f.administered_units = float(sum(d["total_units"] for d in loose))
                f.administered_source = "unattributed_doses"
                f.administered_evidence = [_ev(text, d) for d in loose]
    vials = [a for a in note.labels("VIAL") if not (a["ctx"]["negated"] or a["ctx"]["historical"])]
    if vials:
        first_seg = vials[0]["ctx"]["segment"]
        same = [v for v in vials if v["ctx"]["segment"] == first_seg]
        f.vial_units = float(sum(v["units"] for v in same))
        f.vial_evidence = [_ev(text, v) for v in same]
    wastes = [
        a
        for a in note.labels("WASTE")
        if not (a["ctx"]["hypothetical"] or a["ctx"]["historical"]) or a["ctx"]["section"] == "plan"
    ]
    if wastes:
        last = wastes[-1]
        units = last.get("units")
        if units is None and last.get("ml") is not None:
            conc = _concentration(note)
            units = float(last["ml"]) * conc if conc else None
        if units is not None:
            f.discarded_units = float(units)
            f.discarded_evidence = [_ev(text, last)]
    elif list(note.labels("NOWASTE")):
        f.no_waste = True
        f.discarded_units = 0.0
        f.discarded_evidence = [_ev(text, note.labels("NOWASTE")[0])]
    elif note.labels("REMAINDER_WASTED") and f.vial_units and f.administered_units is not None:
        rest = f.vial_units - f.administered_units
        if rest > 0:
            f.discarded_units = rest
            f.discarded_evidence = [_ev(text, note.labels("REMAINDER_WASTED")[0])]
    if f.discarded_units is None and f.vial_units and f.administered_units is not None and f.vial_units == f.administered_units:
        f.no_waste = True
        f.discarded_units = 0.0
        f.discarded_evidence = list(f.vial_evidence)


_REGION_WORDS = (
    (re.compile(r"\bneck\b|\bcervical\b|\bscm\b|torticollis", re.I), ("neck",)),
    (re.compile(r"\beyes?\b|eyelids?|\blids?\b|periocular|\bfac(?:e|ial)\b|blephar|orbicularis", re.I), ("facial",)),
    (re.compile(r"\barms?\b|upper (?:limb|extremit)|\b[rl]?ue\b|forearm|\bhand\b|elbow|wrist", re.I), ("upper_extremity",)),
    (re.compile(r"\blegs?\b|lower (?:limb|extremit)|\b[rl]?le\b|calf|thigh|\bfoot\b|ankle|knee|hip", re.I), ("lower_extremity",)),
    (re.compile(r"laryn|vocal|thyroarytenoid", re.I), ("larynx",)),
    (re.compile(r"salivary|parotid|submandibular|glands?", re.I), ("salivary",)),
    (re.compile(r"\btrunk\b|paraspinal|abdominal", re.I), ("trunk",)),
)


_REGION_WORD_REGIONS = frozenset(r for _, regions in _REGION_WORDS for r in regions)
# _REGION_WORDS on ``_Note.low``, each "\\bX" written "x(?<!\\wx)…" so that every alternative starts with a
# letter and the regex engine skips the positions where none can start (same matches, same order)
_REGION_WORDS_LOW = tuple(
    (re.compile(rx), regions, keys)
    for rx, (_, regions), keys in zip(
        (
            r"n(?<!\wn)eck\b|c(?<!\wc)ervical\b|s(?<!\ws)cm\b|torticollis",
            r"e(?<!\we)yes?\b|eyelids?|l(?<!\wl)ids?\b|periocular|f(?<!\wf)ac(?:e|ial)\b|blephar|orbicularis",
            r"a(?<!\wa)rms?\b|upper (?:limb|extremit)|[rl](?<!\w[rl])ue\b|u(?<!\wu)e\b|forearm|h(?<!\wh)and\b|elbow|wrist",
            r"l(?<!\wl)egs?\b|lower (?:limb|extremit)|[rl](?<!\w[rl])le\b|l(?<!\wl)e\b|calf|thigh|f(?<!\wf)oot\b|ankle|knee|hip",
            r"laryn|vocal|thyroarytenoid",
            r"salivary|parotid|submandibular|glands?",
            r"t(?<!\wt)runk\b|paraspinal|abdominal",
        ),
        _REGION_WORDS,
        (  # words one of which every match contains
            ("neck", "cervical", "scm", "torticollis"),
            ("eye", "lid", "periocular", "fac", "blephar", "orbicularis"),
            ("arm", "upper ", "ue", "forearm", "hand", "elbow", "wrist"),
            ("leg", "lower ", "le", "calf", "thigh", "foot", "ankle", "knee", "hip"),
            ("laryn", "vocal", "thyroarytenoid"),
            ("salivary", "parotid", "submandibular", "gland"),
            ("trunk", "paraspinal", "abdominal"),
        ),
        strict=True,
    )
)


def _guidance(note: _Note, f: Facts) -> None:
    """Guidance methods, and which injections each one guided.

    A mention guides the injections in its own sentence; failing that, the regions it names ("EMG
    for the neck"); failing that, the list it heads ("Neck - EMG guided:"); otherwise the session."""
    text = note.text
    mentions = note.labels("GUIDANCE")
    if not mentions:
        return  # every injection keeps guidance None
    scoped: dict[int, list[str]] = {}
    session: list[str] = []
    by_seg_inj: dict[int, list[int]] = {}
    seg_index = note.segs.index
    seg_labels = note.seg_labels
    for k, i in enumerate(f.injections):
        by_seg_inj.setdefault(seg_index(i.evidence.start), []).append(k)
    # the regions a guidance sentence names can pick out only injections in those regions
    scan_regions = any(i.region in _REGION_WORD_REGIONS for i in f.injections)
    for a in mentions:
        seg = a["ctx"]["segment"]
        present = seg_labels.get(seg) or ()
        if (
            ("NERVE" in present or ("AGENT" in present and note.has_agent(seg, "neurolytic")))
            and "PRODUCT" not in present
            and "TOXIN" not in present
            and "MUSCLE" not in present
            and "DOSE" not in present
        ):
            continue  # a nerve block's guidance
        ctx = a["ctx"]
        method = a["method"]
        if ctx["negated"] and method != "none":
            f.guidance_negated.append(method)
            method = "none"
        elif _mention_block(note, a) or ctx["section"] == "history":
            continue
        else:
            if method != "none":
                f.guidance.append((method, _ev(text, a)))
        targets = list(by_seg_inj.get(seg, ()))
        if not targets and scan_regions:
            s0, e0 = note.segs.ranges[seg]
            best = None
            if note.exact:
                seg_low = note.low[s0:e0]  # (a pattern runs only when a word it needs is in the sentence)
                scans = []
                for rx, regions, keys in _REGION_WORDS_LOW:
                    for k in keys:
                        if k in seg_low:
                            scans.append((rx, regions))
                            break
                haystack = note.low
            else:
                scans, haystack = list(_REGION_WORDS), text
            for rx, regions in scans:
                for m in rx.finditer(haystack, s0, e0):
                    dist = abs(m.start() - a["start"])
                    if best is None or dist < best[0]:
                        best = (dist, regions)
            if best is not None:
                targets = [k for k, i in enumerate(f.injections) if i.region in best[1]]
        if not targets:
            line_end = text.find("\n", a["end"])
            line = text[text.rfind("\n", 0, a["start"]) + 1 : line_end if line_end >= 0 else len(text)]
            if line.rstrip().endswith(":") and line_end >= 0:
                block_end = text.find("\n\n", line_end)
                block_end = block_end if block_end >= 0 else len(text)
                targets = [k for k, i in enumerate(f.injections) if line_end <= i.evidence.start < block_end]
        if targets:
            for k in targets:
                scoped.setdefault(k, []).append(method)
        else:
            session.append(method)
    electro = [m for m in session if m in ("emg", "estim")]
    default = None
    if electro:
        default = max(set(electro), key=lambda m: (electro.count(m), -electro.index(m)))
    elif "ultrasound" in session:
        default = "ultrasound"
    elif session:
        default = "none"
    set_guidance = _INJ_SET[9]
    for k, inj in enumerate(f.injections):
        methods = scoped.get(k)
        if methods:
            el = [m for m in methods if m in ("emg", "estim")]
            chosen = el[0] if el else ("ultrasound" if "ultrasound" in methods else "none")
        else:
            chosen = default
        if chosen != inj.guidance:
            # set in place: the records are this note's own, not yet seen outside (a copy each otherwise)
            set_guidance(inj, chosen)


_QUAL = {
    "intractable": (
        re.compile(r"\bintractable|\brefractory|pharmaco-?resistant", re.I),
        re.compile(r"\bnot intractable|without (?:mention of )?intractab", re.I),
    ),
    "status": (re.compile(r"with status migrainosus", re.I), re.compile(r"without status", re.I)),
    "aura": (re.compile(r"\bwith aura\b", re.I), re.compile(r"without aura", re.I)),
    "chronic": (re.compile(r"\bchronic\b", re.I), re.compile(r"\bacute\b", re.I)),
    "secondary": (re.compile(r"\bsecondary (?:focal )?hyperhidrosis|hyperhidrosis (?:secondary|due) to", re.I), None),
}
_CP_TYPE = [
    ("quadriplegic", r"quadripleg|quadripar|tetrapleg|tetrapar|four[- ]limb"),
    ("diplegic", r"dipleg|dipar"),
    ("hemiplegic", r"hemipleg|hemipar"),
    ("athetoid", r"athetoid|dyskinetic|dystonic cerebral palsy"),
]
_MS_TYPE = [
    ("relapsing", r"relapsing|\brrms\b"),
    ("primary", r"primary[- ]progressive|\bppms\b"),
    ("secondary", r"secondary[- ]progressive|\bspms\b"),
]
_HH_SITE = [
    ("axilla", r"axill|underarm"),
    ("palm", r"palm|\bhands?\b"),
    ("sole", r"plantar|\bsoles?\b|\bfeet\b|\bfoot\b"),
    ("face", r"facial|craniofacial|\bface\b|scalp|forehead"),
]
_REGION_HH = {"axilla": "axilla", "palm": "palm", "sole": "sole", "skin_other": "face"}


# lower-case words without which a _QUAL pattern (positive, negative) cannot match
_QUAL_KEYS = {
    "intractable": (("intractable", "refractory", "resistant"), ("intractab",)),
    "status": (("status",), ("status",)),
    "aura": (("aura",), ("aura",)),
    "chronic": (("chronic",), ("acute",)),
    "secondary": (("hyperhidrosis",), ()),
}
_QUAL_ROWS = tuple((q, pos, neg, *_QUAL_KEYS[q]) for q, (pos, neg) in _QUAL.items())


def _qual_word(low: str) -> bool:
    """Whether lower-case ``low`` holds a word of _QUAL_KEYS (``in`` beats a regex alternation here)."""
    return (
        "chronic" in low
        or "aura" in low
        or "status" in low
        or "acute" in low
        or "intractab" in low
        or "refractory" in low
        or "resistant" in low
        or "hyperhidrosis" in low
    )


_SIDED_DX = ("hemifacial_spasm", "hemiplegia", "stroke", "focal_dystonia", "writers_cramp", "sixth_nerve_palsy")
_DX_SIDE = re.compile(r"(?:of|on|affecting|involving) the (left|right)|\b(left|right)[- ]sided", re.I)
# (name, pattern, lower-case words one of which every match contains)
_CP_TYPE_RX = [
    (name, re.compile(rx, re.I), keys)
    for (name, rx), keys in zip(
        _CP_TYPE, (("quadrip", "tetrap", "four"), ("dip",), ("hemip",), ("athetoid", "dyskinetic", "dystonic")), strict=True
    )
]
_MS_TYPE_RX = [
    (name, re.compile(rx, re.I), keys)
    for (name, rx), keys in zip(_MS_TYPE, (("relapsing", "rrms"), ("primary", "ppms"), ("secondary", "spms")), strict=True)
]
_HH_SITE_RX = [
    (name, re.compile(rx, re.I), keys)
    for (name, rx), keys in zip(
        _HH_SITE,
        (("axill", "underarm"), ("palm", "hand"), ("plantar", "sole", "feet", "foot"), ("facial", "face", "scalp", "forehead")),
        strict=True,
    )
]
_SAH = re.compile(r"subarachnoid|\bsah\b", re.I)
_SAH_KEYS = ("subarachnoid", "sah")
_BLEED = re.compile(r"hemorrhag|\bich\b|bleed", re.I)
_BLEED_KEYS = ("hemorrhag", "ich", "bleed")


def _any_in(keys: tuple[str, ...], low: str) -> bool:
    """``any(k in low for k in keys)`` without the generator."""
    for k in keys:
        if k in low:
            return True
    return False


def _search(rx: re.Pattern[str], keys: tuple[str, ...], text: str, low: str | None) -> re.Match[str] | None:
    """``rx.search(text)``, skipped when ``low`` (exactly lower-cased ``text``) has none of the words every
    match contains."""
    if low is not None:
        for k in keys:
            if k in low:
                break
        else:
            return None
    return rx.search(text)


def _diagnoses(note: _Note, f: Facts) -> None:
    text = note.text
    low = note.low
    exact = note.exact
    mentions = [a for a in note.labels("DX") if not a["ctx"]["negated"] and not a["ctx"]["hypothetical"]]
    if not mentions:
        return  # no diagnoses: nothing to qualify, and no migraine protocol
    in_dx = [a for a in mentions if a["ctx"]["section"] in _DX_SECTIONS]
    for a in mentions:
        w0, w1 = max(0, a["start"] - 60), a["end"] + 60
        window = text[w0:w1]
        wlow = low[w0:w1] if exact else None
        quals: dict[str, str] = {}
        concept = a["concept"]
        # (no qualifier word in the window: no qualifier)
        for q, pos, neg, pos_keys, neg_keys in _QUAL_ROWS if wlow is None or _qual_word(wlow) else ():
            if wlow is not None:  # the regexes run only when a word they need is there
                if neg is not None and _any_in(neg_keys, wlow) and neg.search(window):
                    quals[q] = "0"
                elif _any_in(pos_keys, wlow) and pos.search(window):
                    quals[q] = "1"
            elif neg is not None and neg.search(window):
                quals[q] = "0"
            elif pos.search(window):
                quals[q] = "1"
        if concept in _SIDED_DX:
            n0, n1 = max(0, a["start"] - 25), a["end"] + 25
            near = text[n0:n1]
            before = text[n0 : a["start"]]
            tokens = list(_SIDE_TOKEN_LOW.finditer(before.lower()) if exact else _SIDE_TOKEN.finditer(before))
            if tokens:
                quals["side"] = side_of(tokens[-1].group(0)) or ""
            else:
                am = _search(_DX_SIDE, ("left", "right"), near, low[n0:n1] if exact else None)
                if am:
                    quals["side"] = side_of(am.group(1) or am.group(2)) or ""
        if concept == "cerebral_palsy":
            seg_text = note.seg_text(a["ctx"]["segment"])
            seg_low = seg_text.lower() if exact else None
            for name, rx, keys in _CP_TYPE_RX:
                if _search(rx, keys, seg_text, seg_low):
                    quals["cp"] = name
                    break
        if concept == "multiple_sclerosis":
            for name, rx, keys in _MS_TYPE_RX:
                if _search(rx, keys, window, wlow):
                    quals["ms"] = name
                    break
        if concept == "hyperhidrosis":
            for name, rx, keys in _HH_SITE_RX:
                if _search(rx, keys, window, wlow):
                    quals.setdefault("sites", "")
                    quals["sites"] += ("|" if quals["sites"] else "") + name
        if concept == "stroke":
            if _search(_SAH, _SAH_KEYS, window, wlow):
                quals["stroke"] = "sah"
            elif _search(_BLEED, _BLEED_KEYS, window, wlow):
                quals["stroke"] = "hemorrhage"
            else:
                quals["stroke"] = "infarction"
        section = a["ctx"]["section"]
        f.diagnoses.append(
            _diagnosis(concept, tuple(sorted(quals.items())) if quals else (), _ev(text, a), section in _DX_SECTIONS, section)
        )
    if in_dx:
        keep = {d.concept for d in f.diagnoses if d.in_dx_section}
        f.diagnoses = [d for d in f.diagnoses if d.in_dx_section or d.concept not in keep]
    hh_regions = {_REGION_HH[i.region] for i in f.injections if i.region in _REGION_HH}
    if hh_regions:
        out = []
        for d in f.diagnoses:
            if d.concept == "hyperhidrosis" and not dict(d.qualifiers).get("sites"):
                d = replace(d, qualifiers=tuple(sorted({**dict(d.qualifiers), "sites": "|".join(sorted(hh_regions))}.items())))
            out.append(d)
        f.diagnoses = out
    migraine = any(d.concept == "chronic_migraine" for d in f.diagnoses)
    regions = {i.region for i in f.injections}
    f.migraine_protocol = bool(
        migraine
        and regions
        and regions <= {"facial", "trigeminal", "neck", "trunk"}
        and len(regions & {"facial", "trigeminal"}) > 0
    )


_COSMETIC = re.compile(
    r"(?<!non-)(?<!non )(?<!not )\b(?:glabellar (?:lines?|rhytids?|rhytides|furrows?|frown lines?)|frown lines?|crow'?s[- ]feet|"
    r"forehead (?:lines?|wrinkles?|rhytids?)|lateral canthal lines?|rhytids|rhytides|wrinkles|cosmetic|aesthetic|self[- ]pay)\b",
    re.IGNORECASE,
)
_THERAPEUTIC = {
    "cervical_dystonia",
    "blepharospasm",
    "hemifacial_spasm",
    "oromandibular_dystonia",
    "chronic_migraine",
    "hyperhidrosis",
    "spasmodic_dysphonia",
    "sialorrhea",
    "stroke",
    "hemiplegia",
    "cerebral_palsy",
    "multiple_sclerosis",
    "spasticity",
    "overactive_bladder",
    "neurogenic_bladder",
    "achalasia",
    "anal_fissure",
    "strabismus",
    "esotropia",
    "exotropia",
    "focal_dystonia",
    "writers_cramp",
    "torsion_dystonia",
    "dystonia",
}


def _cosmetic(note: _Note, f: Facts) -> None:
    """Cosmetic use (glabellar lines, crow's feet …) with no therapeutic indication, or a cosmetic-only product."""
    therapeutic = any(d.concept in _THERAPEUTIC for d in f.diagnoses)
    named_cosmetic = f.product is not None and lexicons.products()[f.product]["cosmetic_only"] == "1"
    if therapeutic:
        return
    if named_cosmetic or (f.injections and _COSMETIC.search(note.text)):
        f.cosmetic = True


def _listed_codes(note: _Note, f: Facts) -> None:
    text = note.text
    for a in note.labels("CODE"):
        units = 1
        if a.get("units_text"):
            units = int(to_number(a["units_text"]) or 1)
        else:
            tail = re.match(r"\s*(?:x|×|times|\*)\s*(\w+)", text[a["end"] : a["end"] + 14], re.I)
            if tail and to_number(tail.group(1)):
                units = int(to_number(tail.group(1)) or 1)
        kind = a["kind"]
        if kind == "procedure":
            code = a["code"]
            if not (code[0].isalpha() or code.startswith(("6", "9", "4", "5", "2", "3", "7"))):
                continue
            # a bare 5-digit number is a code only in a codes section or next to other codes/"CPT"
            ctx_text = text[max(0, a["start"] - 40) : a["start"]]
            if a["ctx"]["section"] != "codes" and not re.search(r"cpt|code|hcpcs|billing|charge", ctx_text, re.I):
                continue
        elif a["ctx"]["section"] not in ("diagnosis", "assessment_plan", "codes") and not re.search(
            r"icd|dx|diagnos", text[max(0, a["start"] - 60) : a["start"]], re.I
        ):
            continue
        f.listed_codes.append(ListedCode(a["code"], kind, a.get("modifier"), units, _ev(text, a)))


def _date(note: _Note, f: Facts) -> None:
    for a in note.labels("DATE"):
        d = _parse_date(a["value"])
        if d is not None and 1990 <= d.year <= 2100:
            f.date_of_service = d
            f.date_evidence = _ev(note.text, a)
            return
