"""The blocklist matches a term however it is written, and only whole words."""

from __future__ import annotations

import pytest

from bot.blocklist import first_blocked_term, normalise, term_matches

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
    "combining acute": "go\u0301re",
    "combining diaeresis on every letter": "g\u0308o\u0308r\u0308e\u0308",
    "precomposed accents": "ġöřë",
    "stroke letters": "ǥøɍɇ",
    "zero-width space": "go\u200bre",
    "zero-width joiner": "g\u200dore",
    "zero-width non-joiner": "gor\u200ce",
    "word joiner": "g\u2060ore",
    "soft hyphen": "go\u00adre",
    "variation selector": "g\ufe0fore",
    "combining grapheme joiner": "go\u034fre",
    "left-to-right mark": "go\u200ere",
    "tag characters": "gore\U000e0067",
    "mixed": "Ｇ\u200bо\u0301ʀᴇ",
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


@pytest.mark.parametrize("disguise", list(DISGUISES))
def test_every_disguise_of_a_term_is_found(disguise: str) -> None:
    text = f"a {DISGUISES[disguise]} scene"

    assert term_matches("gore", text)
    assert first_blocked_term(["cats", "gore"], "fine", text) == "gore"


@pytest.mark.parametrize("word", NEAR_MISSES)
def test_words_near_a_term_pass(word: str) -> None:
    assert not term_matches("gore", f"a {word} scene")


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
