"""How much of a prompt a model reads: its text encoder takes a fixed number of tokens and drops
the rest. Needs no torch (transformers' tokenizers only), so the bot can tell a person at once
where their prompt will be cut, and the worker records it with the same code.

- Playground (SDXL): two CLIP encoders, 77 tokens each (start and end tokens included), same
  tokenizer vocabulary; both drop the same end.
- FLUX.1: the T5 encoder carries the prompt, `max_sequence_length` tokens (512 for [dev], 256 for
  [schnell]). Its CLIP encoder's 77 tokens only make a pooled summary: not a cut. FLUX.1
  Kontext likewise.
- FLUX.2 [klein]: one Qwen3 encoder reads `max_sequence_length` tokens (512) of the prompt
  wrapped in Qwen's chat template (a dozen tokens of it), so the cut found here is that many
  tokens late at most.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.models import Family, ModelSpec

_FLUX_DEFAULT_TOKENS = 512  # FluxPipeline's (and Flux2KleinPipeline's) default max_sequence_length
_T5_FAMILIES = (Family.FLUX, Family.FLUX_KONTEXT)  # the prompt goes to T5 (`text_encoder_2`)
_SEQUENCE_FAMILIES = (*_T5_FAMILIES, Family.FLUX2_KLEIN)  # `max_sequence_length` tokens

# Prompt encoders (`GenerationRequest.prompt_encoder`): "plain" is the diffusers pipeline's own
# (every job made before compel was used); "compel" reads long and weighted prompts on Playground
# (`generation.pipelines.prompt_encoding`).
PLAIN = "plain"
COMPEL = "compel"
PROMPT_ENCODERS = (PLAIN, COMPEL)

# compel's parser (pyparsing) takes time exponential in bracket depth: depth 3 reads in 0.3 s,
# depth 4 in 1.4 s, depth 5 in 4.3 s, depth 7 in 68 s (measured on this project's CPU, compel
# 2.5.1), and a parse cannot be cancelled. So the depth and count are checked before parsing.
MAX_BRACKET_DEPTH = 3
MAX_BRACKETS = 32  # opening brackets in all; 30 flat groups read in 0.2 s


def bracket_problem(prompt: str) -> str | None:
    """Why compel's parser must not read `prompt` (a sentence), None where it may: brackets
    (`(` or `[`, a backslash-escaped one excepted) nested deeper than `MAX_BRACKET_DEPTH` or more
    than `MAX_BRACKETS` of them. Linear in the prompt's length; needs no torch."""
    depth = deepest = opened = 0
    escaped = False
    for char in prompt:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "([":
            depth += 1
            opened += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth = max(depth - 1, 0)
    if deepest > MAX_BRACKET_DEPTH:
        return (
            f"The prompt nests brackets {deepest} deep; at most {MAX_BRACKET_DEPTH} are read "
            "(write `(red)1.5` rather than `((((red))))`)."
        )
    if opened > MAX_BRACKETS:
        return f"The prompt has {opened} brackets; at most {MAX_BRACKETS} are read."
    return None


# compel's weighting (https://github.com/damian0815/compel/blob/main/doc/syntax.md): a group in
# brackets, `(red fox)1.3` or `[red]`, or a word with `+`/`-` runs after it, `fox++`
_WEIGHTING = re.compile(r"[()\[\]]|\w[+-]+(?=[\s,.;:!?]|$)")


def has_weighting(prompt: str) -> bool:
    """Whether `prompt` uses compel's weighting syntax, which a plain encoder reads literally."""
    return _WEIGHTING.search(prompt) is not None


@dataclass(frozen=True, slots=True)
class PromptCut:
    """Where an encoder stopped reading: `at` is the character of the prompt where the first
    word it did not read whole begins; `limit` says the encoder's limit ("77 CLIP tokens")."""

    at: int
    limit: str


def prompt_tokenizer(spec: ModelSpec) -> str:
    """The pipeline component (and folder) holding the tokenizer of the encoder that carries
    the prompt."""
    return "tokenizer_2" if spec.family in _T5_FAMILIES else "tokenizer"


def sequence_length(spec: ModelSpec) -> int:
    """FLUX's T5 (klein's Qwen3) prompt length for `spec` (the pipeline's
    `max_sequence_length`)."""
    return spec.max_sequence_length or _FLUX_DEFAULT_TOKENS


def default_encoder(spec: ModelSpec) -> str:
    """The prompt encoder new jobs for `spec` use: compel for Playground, plain for FLUX."""
    return COMPEL if spec.family is Family.PLAYGROUND else PLAIN


def encoder_settings(spec: ModelSpec) -> str:
    """The text-encoding arguments besides the request that change pixels, recorded with every
    job (`RunFacts.settings`): FLUX's `max_sequence_length` (the T5 embedding's length changes
    the image even for a short prompt); nothing for Playground."""
    if spec.family not in _SEQUENCE_FAMILIES:
        return ""
    return f"max_sequence_length={sequence_length(spec)}"


def token_limit(spec: ModelSpec, tokenizer: Any) -> tuple[int, str]:
    """The tokens that encoder reads, and that limit in words."""
    if spec.family in _SEQUENCE_FAMILIES:
        limit = sequence_length(spec)
        encoder = "Qwen3" if spec.family is Family.FLUX2_KLEIN else "T5"
        return limit, f"{limit} {encoder} tokens"
    limit = tokenizer.model_max_length
    return limit, f"{limit} CLIP tokens"


def find_cut(prompt: str, spec: ModelSpec, tokenizer: Any) -> PromptCut | None:
    """Where `spec`'s encoder stops reading `prompt` (None: it reads all of it): the character
    `at` where the text before it takes the tokens the encoder reads and one character more
    takes more. Found by bisection over characters with the pipeline's own tokenizer (slow or
    fast: a slow tokenizer has no offsets, and converting it may count differently), so a
    prompt without spaces (Chinese, emoji, `red,red,…`) is cut where it really is."""
    max_tokens, limit = token_limit(spec, tokenizer)
    read = max_tokens - tokenizer.num_special_tokens_to_add()

    def tokens(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False, truncation=False).input_ids)

    # Counting a long prompt without truncation is the point here, not a mistake to warn about.
    quiet = logging.getLogger("transformers.tokenization_utils_base")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        if tokens(prompt) <= read:
            return None
        fits, too_long = 0, len(prompt)  # tokens(prompt[:fits]) <= read < tokens(prompt[:too_long])
        while too_long - fits > 1:
            middle = (fits + too_long) // 2
            if tokens(prompt[:middle]) <= read:
                fits = middle
            else:
                too_long = middle
        # Inside a word, a prefix can tokenize otherwise than the whole prompt ("b" alone is a
        # token that "blur14" does not start with): step back to where the prefix's tokens
        # are the prompt's first tokens.
        whole = tokenizer.tokenize(prompt)
        while fits > 0 and not _starts(whole, tokenizer.tokenize(prompt[:fits])):
            fits -= 1
        return PromptCut(fits, limit)
    finally:
        quiet.setLevel(level)


def _starts(whole: list[str], head: list[str]) -> bool:
    """Whether the tokens `head` begin `whole`; the last may lack CLIP's end-of-word mark, which
    a prefix cut inside a run of letters puts on it."""
    if len(head) > len(whole) or head[:-1] != whole[: len(head) - 1]:
        return False
    return not head or head[-1].removesuffix("</w>") == whole[len(head) - 1].removesuffix("</w>")


class PromptReader:
    """Loads each model's prompt tokenizer from its folder once (the local folder, or the Hub
    snapshot already downloaded: never the network) and finds cuts with it."""

    def __init__(self) -> None:
        self._tokenizers: dict[str, Any] = {}

    def cut(self, spec: ModelSpec, prompt: str, encoder: str = PLAIN) -> PromptCut | None:
        """Where `spec` will stop reading `prompt` with `encoder`; None when it reads it all
        (compel reads a whole prompt, in chunks), or when the model's tokenizer is not on this
        machine (the worker still records the cut)."""
        if encoder == COMPEL:
            return None
        tokenizer = self._tokenizer(spec)
        return None if tokenizer is None else find_cut(prompt, spec, tokenizer)

    def _tokenizer(self, spec: ModelSpec) -> Any:
        if spec.name not in self._tokenizers:
            self._tokenizers[spec.name] = _load_tokenizer(spec)
        return self._tokenizers[spec.name]


def _load_tokenizer(spec: ModelSpec) -> Any:
    """The tokenizer class `model_index.json` names for the component, as diffusers loads it."""
    import transformers

    from generation.download import MODEL_INDEX, cached_snapshot

    folder = Path(spec.source).expanduser() if spec.is_local else cached_snapshot(spec)
    component = prompt_tokenizer(spec)
    try:
        if folder is None:
            return None
        index = json.loads((folder / MODEL_INDEX).read_text(encoding="utf-8"))
        library, class_name = index[component]
        if library != "transformers":
            return None
        tokenizer_class = getattr(transformers, class_name)
        return tokenizer_class.from_pretrained(folder / component, local_files_only=True)
    except Exception:  # a broken folder must not stop a job: the worker records the cut anyway
        logging.getLogger(__name__).warning(
            "Could not read the tokenizer of %s", spec.name, exc_info=True
        )
        return None
