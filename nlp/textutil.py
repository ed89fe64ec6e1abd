"""Small text helpers shared by the components: numbers, sides, segment lookup."""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

NUMBER_WORDS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
    "twenty": 20,
    "twenty-five": 25,
    "thirty": 30,
    "thirty-five": 35,
    "forty": 40,
    "forty-five": 45,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "seventy-five": 75,
    "eighty": 80,
    "ninety": 90,
    "hundred": 100,
    "one hundred": 100,
    "a hundred": 100,
    "two hundred": 200,
    "three hundred": 300,
    "four hundred": 400,
    "five hundred": 500,
    "one hundred fifty": 150,
    "one hundred and fifty": 150,
    "one hundred fifty-five": 155,
    "a single": 1,
    "single": 1,
    "a": 1,
    "an": 1,
    "both": 2,
    "twice": 2,
    "once": 1,
}

# a number written with digits (1,000 / 2.5 / .5) or as words
NUM = (
    r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+|"
    r"(?:one|two|three|four|five|six|seven|eight|nine) hundred(?: and)?(?: (?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:-(?:one|two|three|four|five|six|seven|eight|nine))?| (?:ten|fifteen|five))?|"
    r"twenty-five|thirty-five|forty-five|seventy-five|"
    r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|"
    r"sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred)"
)


_UNITS_WORDS = {w: v for w, v in NUMBER_WORDS.items() if " " not in w and w not in ("a", "an", "single", "both", "twice", "once")}


def to_number(text: str) -> float | None:
    """Parse a number written as digits or words ("2.5", "1,000", "two hundred fifty-five")."""
    t = text.strip().lower().replace(",", "")
    if not t:
        return None
    try:
        return float(t)
    except ValueError:
        pass
    t = re.sub(r"\s+", " ", t)
    if t in NUMBER_WORDS:
        return float(NUMBER_WORDS[t])
    total = current = 0
    seen = False
    for word in t.replace(" and ", " ").replace("-", " ").split():
        if word == "hundred":
            current = (current or 1) * 100
        elif word == "thousand":
            total += (current or 1) * 1000
            current = 0
        elif word in _UNITS_WORDS:
            current += _UNITS_WORDS[word]
        else:
            return None
        seen = True
    return float(total + current) if seen else None


SIDE_WORDS = {
    "left": "L",
    "lt": "L",
    "l": "L",
    "lft": "L",
    "left-sided": "L",
    "left sided": "L",
    "lue": "L",
    "lle": "L",
    "right": "R",
    "rt": "R",
    "r": "R",
    "rght": "R",
    "right-sided": "R",
    "right sided": "R",
    "rue": "R",
    "rle": "R",
    "bilateral": "B",
    "bilaterally": "B",
    "bilat": "B",
    "bil": "B",
    "b/l": "B",
    "both": "B",
    "b": "B",
    "each": "B",
    "bilat.": "B",
    "bilateral-": "B",
    "both sides": "B",
    "each side": "B",
    "either side": "B",
}


def side_of(word: str) -> str | None:
    """Map a side word (left, R, bilat, both …) to L, R or B."""
    return SIDE_WORDS.get(word.strip().lower().rstrip(".:"))


def merge_sides(a: str | None, b: str | None) -> str | None:
    """Union of two sides (L + R → B)."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    return "B"


class Segments:
    """Sorted, non-overlapping (start, end) character ranges with fast lookup by offset."""

    def __init__(self, ranges: Sequence[tuple[int, int]]):
        self.ranges = list(ranges)
        self.starts = [s for s, _ in self.ranges]

    def index(self, offset: int) -> int:
        """Index of the range containing ``offset`` (or the one before it); -1 when none."""
        return bisect.bisect_right(self.starts, offset) - 1

    def get(self, offset: int) -> tuple[int, int] | None:
        i = self.index(offset)
        if i < 0:
            return None
        return self.ranges[i]

    def __len__(self) -> int:
        return len(self.ranges)


# digits only: the amount patterns run on a "shadow" copy of the note whose number words are written
# as digits in place (same length, padded with spaces), so every pattern can start on a digit and the
# regex engine skips all other positions at once
NUMD = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"

_WORD_NUM: re.Pattern[str] | None = None


def _word_num_regex() -> re.Pattern[str]:
    global _WORD_NUM
    if _WORD_NUM is None:
        from nlp.lexicons import trie_regex

        phrases = [k for k in NUMBER_WORDS if k not in ("a", "an", "single", "a single", "both", "twice", "once")]
        tens = [
            t + u
            for t in ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
            for u in ("", "-one", "-two", "-three", "-four", "-five", "-six", "-seven", "-eight", "-nine")
        ]
        combos = [
            f"{h} hundred{a}{t}"
            for h in ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
            for a in ("", " and")
            for t in ("", " ten", " fifteen", " five", *(" " + x for x in tens))
        ] + tens
        _WORD_NUM = re.compile(
            r"(?<![A-Za-z0-9])" + trie_regex(sorted(set(phrases + combos))) + r"(?![A-Za-z0-9])", re.IGNORECASE
        )
    return _WORD_NUM


def shadow_numbers(text: str) -> str:
    """``text`` with number words replaced in place by digits padded to the same length."""
    parts = []
    last = 0
    for m in _word_num_regex().finditer(text):
        value = to_number(m.group(0))
        if value is None:
            continue
        digits = str(int(value)) if value == int(value) else str(value)
        if len(digits) > len(m.group(0)):
            continue
        parts.append(text[last : m.start()])
        parts.append(digits.ljust(len(m.group(0))))
        last = m.end()
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


class Taken:
    """Character ranges already claimed by a match, with a fast "does [s, e) overlap any?" check."""

    MAX_LEN = 400  # no claimed range is longer than this, which bounds the backward scan

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def add(self, start: int, end: int) -> None:
        i = bisect.bisect_left(self.starts, start)
        self.starts.insert(i, start)
        self.ends.insert(i, end)

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self.starts, end) - 1
        while i >= 0 and self.starts[i] > start - self.MAX_LEN:
            if self.ends[i] > start:
                return True
            i -= 1
        return False
