"""Cleaning what a person typed (prompts, negative prompts, instructions, filters) before any
check reads it: one rule for every text, so a prompt, an instruction and a history filter are
empty, long or blocked alike."""

from __future__ import annotations

import re
import unicodedata


def clean_text(text: str) -> str:
    """Remove what is harmful in a prompt and keep everything writing systems and emoji need.

    Removed: control characters (C0, DEL, C1; line breaks and tabs become spaces, as do U+2028 and
    U+2029), lone surrogates (not encodable as UTF-8), and the bidirectional embedding, override
    and isolate controls U+202A-U+202E and U+2066-U+2069, which can make a prompt display in a
    different order than it is read (CVE-2021-42574, "Trojan Source"). Kept: every other format
    character, such as the zero-width non-joiner of Persian (U+200C), the zero-width joiner of
    emoji sequences (U+200D), the implicit marks U+200E/U+200F and emoji tag characters.
    Runs of spaces become one; surrounding white space is dropped. A text of invisible
    characters only (`_invisible`: zero-width spaces and joiners, word joiners, blank filler
    letters, ...) becomes empty, so it is refused as empty wherever an empty text is.
    """
    text = _LINE_BREAKS.sub(" ", text)
    kept = (ch for ch in text if not _harmful(ch))
    cleaned = re.sub(r" {2,}", " ", "".join(kept)).strip()
    return "" if all(_invisible(ch) for ch in cleaned) else cleaned


_LINE_BREAKS = re.compile(r"\r\n|[\n\r\t\v\f\x85\u2028\u2029]")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _harmful(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS


# Letters and symbols that show nothing: the Hangul fillers (U+115F, U+1160, U+3164, U+FFA0),
# the blank Braille pattern U+2800 and the combining grapheme joiner U+034F, which people use to
# send an empty-looking message (format characters, spaces and variation selectors show nothing
# either: `_invisible`).
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800\u034f")


def _invisible(ch: str) -> bool:
    """Whether `ch` shows nothing on its own (a format character such as U+200B ZERO WIDTH
    SPACE, U+200D ZERO WIDTH JOINER or U+2060 WORD JOINER, white space, a variation selector, a
    blank letter)."""
    return (
        ch.isspace()
        or unicodedata.category(ch) == "Cf"
        or ch in _BLANK_LETTERS
        or "\ufe00" <= ch <= "\ufe0f"
        or "\U000e0100" <= ch <= "\U000e01ef"
    )
