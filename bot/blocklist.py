"""Prompt blocklists: a server's terms (or, in DMs, the installation's), checked before a job is
queued, on the prompt, the negative prompt and personal defaults alike.

Matching happens on a normalised form of the term and of the text, so a term cannot be dodged
by writing it differently: Unicode compatibility forms folded (NFKC: full-width `ｇｏｒｅ`,
ligatures, styled maths letters), case folded, combining marks, variation selectors and
invisible format characters (zero-width spaces and joiners, soft hyphens) removed, and letters
of other scripts that look like Latin ones (Cyrillic `о`, Greek `ο`, ...) mapped to them with
Unicode's own confusables data (UTS #39 `confusables.txt`, as shipped by `confusable-homoglyphs`).
ASCII itself is left alone, so `g0re` is not `gore`. The normalised form serves only to match:
what the person wrote is stored and used unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

from confusable_homoglyphs.confusables import confusables_data

_INVISIBLE = re.compile(r"[\u034f\u115f\u1160\u3164\uffa0]")  # invisible letters not in Mn/Cf
_LATIN_LETTER = re.compile(
    r"LATIN (?:SMALL |CAPITAL )?LETTER (?:SMALL CAPITAL |SCRIPT )?([A-Z])(?: WITH .+)?"
)
_DROPPED_CATEGORIES = {"Mn", "Me", "Cf"}  # marks, variation selectors, format characters


def term_matches(term: str, text: str) -> bool:
    """Whether `term` occurs in `text` as whole words, both normalised (see the module); `*`
    stands for any letters, so `gore*` also blocks "gorefest" (but `gore` does not block
    "gorgeous")."""
    return _found(term, normalise(text))


def first_blocked_term(terms: Iterable[str], *texts: str) -> str | None:
    """The first term of the blocklist that one of `texts` contains, if any."""
    normal = normalise("\n".join(texts))
    return next((term for term in terms if _found(term, normal)), None)


def _found(term: str, normal: str) -> bool:
    start, pattern = _pattern(term)
    return start in normal and pattern.search(normal) is not None  # `in` is the fast filter


@lru_cache(maxsize=4096)
def _pattern(term: str) -> tuple[str, re.Pattern[str]]:
    """The term's normalised text before its first `*`, and its whole-word pattern."""
    parts = [normalise(part) for part in term.split("*")]
    words = r"\w*".join(re.escape(part) for part in parts)
    return parts[0], re.compile(rf"(?<!\w){words}(?!\w)")


def normalise(text: str) -> str:
    """The form of `text` used for matching: NFKC, case-folded, marks and invisible characters
    removed, look-alike letters of other scripts mapped to Latin ones."""
    text = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    text = "".join(ch for ch in text if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    text = _INVISIBLE.sub("", text).translate(_look_alikes())
    return unicodedata.normalize("NFC", text).casefold()


@cache
def _look_alikes() -> dict[int, str]:
    """Each non-ASCII character whose prototype in Unicode's confusables data is ASCII letters
    or digits, mapped to that prototype (`о` → `o`, `ɡ` → `g`); then the Latin letters that data
    leaves out (small capitals such as `ʀ`), mapped by their Unicode names."""
    table = {}
    for character, entries in confusables_data.items():
        if len(character) != 1 or character.isascii() or not entries:
            continue
        prototype = entries[0]["c"].strip("\u200e\u200f")
        if prototype.isascii() and prototype.isalnum():
            table[ord(character)] = prototype.casefold()
    for code in range(0x80, 0x1E000):
        named = _LATIN_LETTER.fullmatch(unicodedata.name(chr(code), ""))
        if named and code not in table:
            table[code] = named[1].casefold()
    return table
