"""Where a text encoder stops reading a prompt (issue 12 review F7), with the tiny models' real
tokenizers: prompts with few or no spaces are cut at the character where the first dropped token
begins, not at character 0 or at the last space."""

from __future__ import annotations

import pytest

from generation.models import Catalogue
from generation.prompts import PromptReader, find_cut, token_limit

PROMPTS = {
    "chinese": "一只红色的狐狸在雪地里奔跑" * 20,
    "emoji": "🦊" * 200,
    "tags": ",".join(["red"] * 200),
    "words": " ".join(["red fox"] * 60) + " ENDWORD",
    "hyphenated": "a fox " + "-".join(["snow"] * 100),
    "negative": " ".join(f"blur{n}" for n in range(80)),  # Playground's negative: 77 CLIP
}


@pytest.mark.parametrize("model", ["playground-v2.5", "flux-dev"])
@pytest.mark.parametrize("kind", PROMPTS)
def test_the_cut_is_where_the_encoder_stops(
    tiny_catalogue: Catalogue, model: str, kind: str
) -> None:
    spec = tiny_catalogue[model]
    tokenizer = PromptReader()._tokenizer(spec)
    prompt = PROMPTS[kind]
    max_tokens, _ = token_limit(spec, tokenizer)

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids)

    cut = find_cut(prompt, spec, tokenizer)
    if tokens(prompt) + tokenizer.num_special_tokens_to_add() <= max_tokens:
        assert cut is None
        return
    assert cut is not None
    read = max_tokens - tokenizer.num_special_tokens_to_add()
    # The text before the cut is what the encoder reads, the next character is more than it.
    assert 0 < cut.at < len(prompt)
    assert tokens(prompt[: cut.at]) <= read < tokens(prompt[: cut.at + 1])
