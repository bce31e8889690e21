"""Long and weighted prompts with compel on Playground, through the real engine and tiny model:
the end of a long prompt matters, weights matter, plain (pre-compel) jobs keep the plain
encoder's pixels, and syntax compel cannot use fails the job with a sentence."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from generation.engine import Engine
from generation.errors import EngineError
from generation.models import Catalogue
from generation.request import RequestError, build_request
from tests.generation.helpers import pixels

WORDS = " ".join(["a quiet harbour town with boats and gulls"] * 13)[:700]  # 100+ words


@pytest.fixture(scope="module")
def engine(tiny_catalogue: Catalogue) -> Engine:
    return Engine(tiny_catalogue)


def _image(engine: Engine, prompt: str, **options: object) -> np.ndarray:
    request = build_request(
        engine.catalogue, prompt=prompt, model="playground-v2.5", seed=11, **options
    )
    (image,) = engine.generate(request)
    return pixels(image.png)


def test_two_long_prompts_that_differ_only_at_the_end_make_different_images(
    engine: Engine,
) -> None:
    assert len(WORDS.split()) >= 100
    red, blue = _image(engine, WORDS + " red fox"), _image(engine, WORDS + " blue whale")
    assert not np.array_equal(red, blue)
    # The plain encoder (jobs made before compel) stops at 77 tokens: the ends were never read.
    plain_red = _image(engine, WORDS + " red fox", prompt_encoder="plain")
    plain_blue = _image(engine, WORDS + " blue whale", prompt_encoder="plain")
    assert np.array_equal(plain_red, plain_blue)


def test_weights_change_the_image_and_a_plain_prompt_is_encoded_as_before(engine: Engine) -> None:
    plain = _image(engine, "a red fox in the snow", prompt_encoder="plain")
    assert np.array_equal(_image(engine, "a red fox in the snow"), plain)
    weighted = _image(engine, "a (red fox)1.4 in the snow")
    assert not np.array_equal(weighted, plain)
    assert not np.array_equal(_image(engine, "a red++ fox in the snow"), weighted)
    negative = _image(engine, "a red fox in the snow", negative_prompt="(blurry)1.5, dark")
    assert not np.array_equal(negative, plain)


def test_the_record_says_which_encoder_made_the_image(engine: Engine) -> None:
    request = build_request(engine.catalogue, prompt=WORDS, model="playground-v2.5", seed=1)
    (image,) = engine.generate(request)
    assert image.facts is not None
    assert image.facts.prompt_encoder is not None
    assert image.facts.prompt_encoder.startswith("compel 2.")
    assert image.facts.prompt_cut_at is None  # compel reads the whole prompt, in chunks
    plain = build_request(
        engine.catalogue, prompt=WORDS, model="playground-v2.5", seed=1, prompt_encoder="plain"
    )
    (image,) = engine.generate(plain)
    assert image.facts is not None
    assert image.facts.prompt_encoder == "plain"
    assert image.facts.prompt_cut_at is not None


@pytest.mark.parametrize(
    ("prompt", "said"),
    [
        ("()", "no words"),
        ("(fox)1000", "at most 10"),
        ("red" + "+" * 40 + " fox", "at most 10"),
        ('("a red fox", "a snowy forest").blend(30, 1)', "blend\\(\\)` or `.and\\(\\)` weight"),
        ('("a red fox", "a snowy forest").and(30, 1)', "at most 10"),
        ('("a red fox", "b").blend(0.7)', "one weight per prompt"),
    ],
)
def test_syntax_compel_cannot_use_fails_the_job_with_a_sentence(
    engine: Engine, prompt: str, said: str
) -> None:
    with pytest.raises(EngineError, match=said):
        _image(engine, prompt)


@pytest.mark.parametrize("prompt", ["(((fox", "fox)1.3(", "fox.and(", "[[fox", "fox\\", "(fox)-1"])
def test_unbalanced_syntax_still_makes_an_image(engine: Engine, prompt: str) -> None:
    assert _image(engine, prompt).shape == (64, 64, 3)


DEEP = "(" * 12 + "red" + ")" * 12  # compel's parser would take hours: exponential in depth


@pytest.mark.parametrize(
    ("options", "field", "said"),
    [
        ({"prompt": DEEP}, "prompt", "12 deep; at most 3"),
        ({"prompt": "a fox", "negative_prompt": "[[[[blur"}, "negative_prompt", "4 deep"),
        ({"prompt": " ".join(f"(w{i})1.1" for i in range(33))}, "prompt", "33 brackets"),
    ],
)
def test_deep_or_many_brackets_are_refused_when_asked(
    engine: Engine, options: dict, field: str, said: str
) -> None:
    with pytest.raises(RequestError, match=said) as refused:
        build_request(engine.catalogue, model="playground-v2.5", seed=1, **options)
    assert refused.value.field == field


def test_escaped_brackets_and_the_plain_encoder_are_not_counted(engine: Engine) -> None:
    escaped = "\\(" * 6 + "red" + "\\)" * 6
    assert build_request(engine.catalogue, prompt=escaped, model="playground-v2.5").prompt
    plain = build_request(
        engine.catalogue, prompt=DEEP, model="playground-v2.5", prompt_encoder="plain"
    )
    assert plain.prompt == DEEP


def test_the_worker_refuses_deep_brackets_before_parsing(engine: Engine) -> None:
    asked = build_request(engine.catalogue, prompt="red", model="playground-v2.5", seed=1)
    with pytest.raises(EngineError, match="12 deep"):  # parsing it would take hours
        engine.generate(replace(asked, prompt=DEEP))
