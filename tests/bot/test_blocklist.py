"""The blocklist matches a term however it is written, and only whole words."""

from __future__ import annotations

import unicodedata

import pytest

from bot.blocklist import _look_alikes, first_blocked_term, normalise, term_matches

# Each a way of writing "gore" that a person reads as "gore".
DISGUISES = {
    "upper case": "GORE",
    "title case": "Gore",
    "full-width": "ｇｏｒｅ",
    "full-width capitals": "ＧＯＲＥ",
    "cyrillic о": "gоre",
    "cyrillic о and е": "gоrе",
    "greek ο": "gοre",
    "latin script ɡ": "ɡore",
    "cherokee-like Ꮐ (U+ABD0)": "ꮐore",
    "small capitals": "ɢᴏʀᴇ",
    "maths bold": "𝐠𝐨𝐫𝐞",
    "maths fraktur": "𝔤𝔬𝔯𝔢",
    "maths double-struck": "𝕘𝕠𝕣𝕖",
    "circled letters": "ⓖⓞⓡⓔ",
    "script g (ℊ)": "ℊore",
    "combining low line (no such letter)": "g\u0332ore",
    "combining diaeresis on every letter": "g\u0308o\u0308r\u0308e\u0308",
    "stacked marks": "go\u0301\u0301\u0301re",
    "greek capital epsilon": "GORΕ",
    "cyrillic komi capital sje (Ԍ)": "ԌORE",
    "cherokee capitals": "ᏀOᏒᎬ",
    "greek small epsilon (lower case of a look-alike)": "gorε",
    "regional indicators": "🇬🇴🇷🇪",
    "regional indicators with joiners": "🇬\u200b🇴\u200b🇷\u200b🇪",
    "negative squared letters": "🅶🅾🆁🅴",
    "negative circled letters": "🅖🅞🅡🅔",
    "squared letters": "🄶🄾🅁🄴",
    "parenthesised letters": "⒢⒪⒭⒠",
    "braille blank": "go\u2800re",
    "unassigned default-ignorable": "go\U000e0080re",
    "C1 control": "go\x80re",
    "zero-width space": "go\u200bre",
    "zero-width joiner": "g\u200dore",
    "zero-width non-joiner": "gor\u200ce",
    "word joiner": "g\u2060ore",
    "byte order mark": "go\ufeffre",
    "invisible times": "go\u2062re",
    "soft hyphen": "go\u00adre",
    "variation selector": "g\ufe0fore",
    "combining grapheme joiner": "go\u034fre",
    "left-to-right mark": "go\u200ere",
    "tag characters": "gore\U000e0067",
    "mixed": "Ｇ\u200bо\u0332ʀᴇ",
}

# Words near "gore" that must pass.
NEAR_MISSES = [
    "gorge",
    "gorgeous",
    "ogre",
    "gory",
    "gored",
    "gores",
    "gorey",
    "forego",
    "more",
    "ore",
    "go re",
    "g0re",  # ASCII digits are not letters' look-alikes here
    "ｇｏｒｇｅ",
    "gоrge",  # a disguise of a word that is not the term
]

# Words of real languages whose letters are letters of their own, not disguises: a letter with
# a diacritic that Unicode has as one character (`ö`, `ø`, `â`, `ß`) is never folded into another.
REAL_WORDS = {
    "gore": ["göre", "gøre", "góre", "goré", "ĝore", "ġöřë", "ǥøɍɇ"],
    "ass": ["aß", "ässe", "åss"],
    "rape": ["râpe", "rapé", "grape"],
    "nazi": ["Nazım", "nazì"],
    "cum": ["cúm", "Cumbria"],
}


@pytest.mark.parametrize("disguise", list(DISGUISES))
def test_every_disguise_of_a_term_is_found(disguise: str) -> None:
    text = f"a {DISGUISES[disguise]} scene"

    assert term_matches("gore", text)
    assert first_blocked_term(["cats", "gore"], "fine", text) == "gore"


@pytest.mark.parametrize("word", NEAR_MISSES)
def test_words_near_a_term_pass(word: str) -> None:
    assert not term_matches("gore", f"a {word} scene")


@pytest.mark.parametrize(
    ("term", "word"), [(term, word) for term, words in REAL_WORDS.items() for word in words]
)
def test_letters_of_real_languages_stay_distinct(term: str, word: str) -> None:
    assert not term_matches(term, f"a {word} scene")
    if len(word.upper()) == len(word):  # "aß".upper() is "ASS", as German writes it
        assert not term_matches(term, f"A {word.upper()} SCENE")


@pytest.mark.parametrize(
    ("term", "text"),
    [("hate", "ΗATE"), ("bomb", "ВOMВ"), ("bomb", "ΒOMΒ"), ("gore", "GOR\u0395")],
)
def test_capital_look_alikes_are_found(term: str, text: str) -> None:
    assert first_blocked_term([term], text) == term


def test_every_look_alike_in_the_confusables_data_reaches_its_ascii_letter() -> None:
    table = _look_alikes()
    assert len(table) > 1000
    lost = {
        chr(code): normalise(chr(code))
        for code in table
        if " " not in unicodedata.normalize("NFKC", chr(code))  # spacing marks, not letters
        and not (normalise(chr(code)).isascii() and normalise(chr(code)).isalnum())
    }
    assert lost == {}


@pytest.mark.parametrize("term", ["ＧＯＲＥ", "gоre", "Gore"])
def test_a_term_written_in_disguise_matches_the_plain_word(term: str) -> None:
    assert term_matches(term, "a gore scene")


def test_a_wildcard_term_matches_disguised_longer_words_only_from_its_start() -> None:
    assert term_matches("gore*", "a ｇｏｒｅｆｅｓｔ")
    assert term_matches("gore*", "gore")
    assert not term_matches("gore*", "ogrefest")


def test_terms_of_several_words_match_across_disguised_spaces() -> None:
    assert term_matches("blood bath", "a ｂｌｏｏｄ\u3000ｂａｔｈ")  # ideographic space folds
    assert not term_matches("blood bath", "bloodbath")


def test_text_in_other_scripts_is_left_alone() -> None:
    assert normalise("東京の夜") == "東京の夜"
    assert not term_matches("gore", "東京の夜 gorge")


@pytest.mark.parametrize(
    "texts",
    [("a cat", "gore"), ("gore", "sharp"), ("a cat", "", "gore"), ("a cat\ngore",), ("a\tgore",)],
)
def test_a_term_at_the_edge_of_a_text_or_after_a_line_break_is_found(
    texts: tuple[str, ...],
) -> None:
    """The texts checked together (prompt, negative prompt, a draft's final's negative prompt)
    are joined by line breaks, which are controls: dropped, they glued the prompt's last word
    to the negative prompt's first ("a catgore") and hid a blocked term there."""
    assert first_blocked_term(["gore"], *texts) == "gore"
