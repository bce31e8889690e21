"""Prompt blocklists: a server's terms (or, in DMs, the installation's), checked before a job is
queued, on the prompt, the negative prompt and personal defaults alike.

Matching happens on a normalised form of the term and of the text (`normalise`), so a term
cannot be dodged by writing it differently, while words of real languages that merely resemble
a term stay distinct:
- compatibility forms are folded (NFKC: full-width `ｇｏｒｅ`, ligatures, styled maths letters,
  circled letters), and enclosed letters NFKC leaves alone (regional indicators `🇬🇴🇷🇪`,
  squared and negative circled or squared letters `🅶🅾🆁🅴`, `🅖🅞🅡🅔`, parenthesised `⒢`)
  become their letters;
- invisible characters (format characters such as zero-width spaces and joiners, soft hyphens,
  variation selectors, tag characters, fillers) are removed;
- letters of other scripts that look like Latin ones (Cyrillic `о`, Greek `Ε`, Armenian `օ`,
  small capitals `ᴏ`) are mapped to them with Unicode's own confusables data (UTS #39
  `confusables.txt`, as shipped by `confusable-homoglyphs`), in either case, and then lower-cased;
- a letter with a diacritic that exists as one character (`ö`, `â`, `ø`, `ß`, `ı`) is a letter
  of its own in real languages (Turkish `göre`, French `râpe`, Danish `gøre`, German `aß`), so it
  is kept as it is, as UTS #39's skeletons keep it; marks that form no such letter (`g̈`, stacked
  marks) are disguises, and a word holding one loses all its marks.
ASCII itself is left alone, so `g0re` is not `gore`. The normalised form serves only to match:
what the person wrote is stored and used unchanged.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import cache, lru_cache

from confusable_homoglyphs.confusables import confusables_data

# Invisible characters that are not format characters (Cf) or variation selectors: the
# combining grapheme joiner, Hangul fillers, the Braille blank, Khmer inherent vowels and the
# default-ignorable code points Unicode has not assigned yet (DerivedCoreProperties.txt).
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0\u2065\ufff0-\ufff8"
    "\U000e0000-\U000e0fff\ufe00-\ufe0f\U0001d159\U0001d173-\U0001d17a]"
)
_DROPPED_CATEGORIES = {"Cf", "Cc"}  # format characters (ZWSP, joiners, bidi marks), controls
_MARKS = {"Mn", "Me"}
_LATIN_LETTER = re.compile(r"LATIN (?:SMALL |CAPITAL )?LETTER (?:SMALL CAPITAL |SCRIPT )?([A-Z])")
_ENCLOSED_LETTER = re.compile(
    r"(?:REGIONAL INDICATOR SYMBOL|(?:(?:NEGATIVE )?(?:SQUARED|CIRCLED)|PARENTHESIZED) LATIN"
    r"(?: SMALL| CAPITAL)?) LETTER ([A-Z])"
)
_WORD = re.compile(r"\S+")


def term_matches(term: str, text: str) -> bool:
    """Whether `term` occurs in `text` as whole words, both normalised (see the module); `*`
    stands for any letters, so `gore*` also blocks "gorefest" (but `gore` does not block
    "gorgeous")."""
    return _found(term, normalise(text))


def term_problem(term: str) -> str | None:
    """Why `term` cannot be a blocked term (a sentence), None where it can: one with nothing
    visible to match (only spaces, `*` and invisible characters) would refuse prompts that
    contain none of it."""
    if not normalise(term.replace("*", " ")).strip():
        return "A blocked term needs at least one visible letter, digit or sign."
    return None


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
    """The form of `text` used for matching (see the module): compatibility forms and enclosed
    letters folded, invisible characters removed, look-alike letters mapped to Latin ones in
    either case, lower case, marks removed from words where they form no letter of their own."""
    table = _look_alikes()
    text = unicodedata.normalize("NFKC", text.translate(_enclosed()))
    text = _INVISIBLE.sub("", text)
    # line breaks and tabs (controls) still part words: "a cat\ngore" is not "a catgore"
    text = "".join(
        ch for ch in text if ch.isspace() or unicodedata.category(ch) not in _DROPPED_CATEGORIES
    )
    text = text.translate(table).lower().translate(table)  # `Ε` → `E` → `e`; `ε` → `e`
    return _WORD.sub(_without_stray_marks, unicodedata.normalize("NFC", text))


def _without_stray_marks(word: re.Match[str]) -> str:
    """The word as it is if every mark in it is part of a precomposed letter; otherwise the
    word with all its marks removed."""
    text = word[0]
    if not any(unicodedata.category(ch) in _MARKS for ch in text):
        return text
    bare = unicodedata.normalize("NFD", text)
    return "".join(ch for ch in bare if unicodedata.category(ch) not in _MARKS)


@cache
def _enclosed() -> dict[int, str]:
    """Regional indicators and enclosed letters that NFKC does not fold, to their letters."""
    table = {}
    for code in (*range(0x2460, 0x2500), *range(0x1F100, 0x1F200)):
        named = _ENCLOSED_LETTER.fullmatch(unicodedata.name(chr(code), ""))
        if named:
            table[code] = named[1].lower()
    return table


@cache
def _look_alikes() -> dict[int, str]:
    """Each non-ASCII character that Unicode's confusables data makes a look-alike of one ASCII
    letter or digit (a letter preferred), in either case, mapped to it lower-cased (`о` → `o`,
    `Ε` → `e`, `ɡ` → `g`); the lower case and the NFKC form of such a character too (`ε`, the
    lower case of `Ε`), so that every one reaches its ASCII letter; then Latin small capitals
    and script letters, which that data links only to other scripts' letters, by their Unicode
    names (`ʀ` → `r`)."""
    table: dict[int, str] = {}
    for character, entries in confusables_data.items():
        if len(character) != 1 or character.isascii():
            continue
        found = [e["c"].strip("\u200e\u200f") for e in entries]
        ascii_alnum = [c for c in found if len(c) == 1 and c.isascii() and c.isalnum()]
        letters = [c for c in ascii_alnum if c.isalpha()]
        if letters or ascii_alnum:
            table[ord(character)] = (letters or ascii_alnum)[0].lower()
    for code in range(0x80, 0x1E000):
        named = _LATIN_LETTER.fullmatch(unicodedata.name(chr(code), ""))
        if named and code not in table:
            table[code] = named[1].lower()
    for code, ascii_letter in list(table.items()):  # `ε` as `Ε`; `ς` (NFKC of `ϲ`) as `ϲ`
        for other in (chr(code).lower(), unicodedata.normalize("NFKC", chr(code))):
            if len(other) == 1 and not other.isascii() and ord(other) not in table:
                table[ord(other)] = ascii_letter
    return table
