"""The benchmark corpus: the training notes plus the ten MTSamples notes, cycled with light,
deterministic variation until there are ``n`` of them.

Copy 0 of every source note is verbatim. Later copies are varied with a seeded RNG so that no two
texts are identical (which would flatter any cache keyed on text): two adjacent paragraphs after the
first may swap, paragraph separators and trailing spaces change, and a short id line is added at the
top or bottom. The clinical content is unchanged, so the engine does the same kind of work on every
copy. Each record carries an id and, for some copies, a date of service, as ``btxcode batch`` input.
"""

from __future__ import annotations

import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_PARA = re.compile(r"\n[ \t]*\n")
_DATES = (None, "2008-06-01", "2013-06-01", "2025-02-03")


@dataclass(frozen=True)
class Source:
    name: str
    origin: str  # "training" or "mtsamples"
    text: str


def find_mtsamples() -> Path | None:
    """``$BTXCODE_SHARED`` (the shared folder, or its realworld/ or mtsamples/ folder), else the first
    ``shared/realworld/mtsamples`` found walking up from the repository."""
    env = os.environ.get("BTXCODE_SHARED")
    if env:
        base = Path(env)
        for cand in (base / "realworld" / "mtsamples", base / "mtsamples", base):
            if cand.is_dir() and any(cand.glob("*.txt")):
                return cand
    for parent in (ROOT, *ROOT.parents):
        cand = parent / "shared" / "realworld" / "mtsamples"
        if cand.is_dir():
            return cand
    return None


def load_sources() -> tuple[list[Source], dict[str, str | int | None]]:
    """The source notes, sorted by name within each origin, and where they came from."""
    notes_dir = ROOT / "training_data" / "notes"
    sources = [Source(p.stem, "training", p.read_text(encoding="utf-8")) for p in sorted(notes_dir.glob("*.txt"))]
    mts = find_mtsamples()
    mts_files = sorted(mts.glob("*.txt")) if mts else []
    sources += [Source(p.stem, "mtsamples", p.read_text(encoding="utf-8")) for p in mts_files]
    info = {"training_dir": str(notes_dir.relative_to(ROOT)), "training_notes": len(sources) - len(mts_files),
            "mtsamples_dir": str(mts) if mts else None, "mtsamples_notes": len(mts_files)}
    if not sources:
        raise SystemExit("bench: no source notes found under training_data/notes")
    return sources, info


def vary(text: str, rng: random.Random, tag: str) -> str:
    """A lightly varied copy of ``text`` (same content, different layout and an id line)."""
    paras = _PARA.split(text.strip("\n"))
    if len(paras) >= 3 and rng.random() < 0.5:
        i = rng.randrange(1, len(paras) - 1)
        paras[i], paras[i + 1] = paras[i + 1], paras[i]
    sep = rng.choice(("\n\n", "\n\n\n", "\n \n"))
    if rng.random() < 0.3:
        paras = ["\n".join(line + " " if line and rng.random() < 0.2 else line for line in p.split("\n"))
                 for p in paras]
    body = sep.join(paras)
    idline = rng.choice((f"Note ID: {tag}", f"Ref #{tag}", f"Document {tag}"))
    return f"{idline}\n\n{body}\n" if rng.random() < 0.5 else f"{body}\n\n{idline}\n"


def build_corpus(n: int, seed: int = 13) -> tuple[list[dict], dict]:
    """``n`` batch records ``{"id", "text", "date_of_service"}`` and a description of the corpus."""
    sources, info = load_sources()
    records: list[dict] = []
    cycle = 0
    while len(records) < n:
        order = list(range(len(sources)))
        if cycle:
            random.Random(seed * 7919 + cycle).shuffle(order)
        for i in order:
            if len(records) >= n:
                break
            src = sources[i]
            if cycle == 0:
                text = src.text
                dos = "2008-06-01" if src.origin == "mtsamples" else None
            else:
                rng = random.Random(f"{seed}:{cycle}:{src.name}")
                text = vary(src.text, rng, f"B{cycle:03d}-{i:04d}")
                dos = rng.choice(_DATES)
            records.append({"id": f"{src.origin}/{src.name}#{cycle}", "text": text, "date_of_service": dos})
        cycle += 1
    chars = [len(r["text"]) for r in records]
    info.update(notes=len(records), distinct_texts=len({r["text"] for r in records}), cycles=cycle, seed=seed,
                chars_total=sum(chars), chars_mean=round(sum(chars) / len(chars), 1), chars_max=max(chars))
    return records, info
