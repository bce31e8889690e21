"""Autocomplete for the options several commands share: models, aspect ratios, GPU workers.

The callbacks are free functions (discord.py passes them the interaction and what was typed),
attached with `app_commands.autocomplete(model=autocomplete_model, ...)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import discord
from discord import app_commands

from bot.ui.fit import MAX_NAME_CHARS, clip
from generation.loras import LoraCatalogue, LoraError, format_weight, parse_lora
from generation.models import Catalogue, Family

if TYPE_CHECKING:
    from bot.app import AtelierBot

# docs/interactions/application-commands.mdx, "Application Command Option Choice Structure"
# and receiving-and-responding.mdx, "Autocomplete": up to 25 choices, names 1-100 characters.
MAX_CHOICES = 25
MAX_CHOICE_NAME = 100
ASPECTS = {
    "1:1": "square",
    "4:3": "landscape",
    "3:2": "photo",
    "16:9": "widescreen",
    "21:9": "cinema",
    "3:4": "portrait",
    "2:3": "portrait photo",
    "9:16": "phone",
}

Choices = list[app_commands.Choice[str]]


def model_choices(catalogue: Catalogue, current: str) -> Choices:
    """The catalogue's models whose name or title contains what was typed."""
    current = current.casefold()
    return [
        app_commands.Choice(
            name=clip(f"{spec.name} — {spec.title}", MAX_CHOICE_NAME), value=spec.name
        )
        for spec in catalogue.values()
        if (current in spec.name.casefold() or current in spec.title.casefold())
        and len(spec.name) <= MAX_NAME_CHARS
    ][:MAX_CHOICES]


def aspect_choices(current: str) -> Choices:
    """The common aspect ratios starting with what was typed, or whose label contains it."""
    return [
        app_commands.Choice(name=f"{ratio} {label}", value=ratio)
        for ratio, label in ASPECTS.items()
        if ratio.startswith(current.strip()) or current.casefold() in label
    ][:MAX_CHOICES]


def named_choices(names: list[str], current: str) -> Choices:
    """Each name containing what was typed, as itself (a name nobody could type is left out)."""
    return [
        app_commands.Choice(name=n, value=n)
        for n in names
        if current in n and 0 < len(n) <= MAX_NAME_CHARS
    ][:MAX_CHOICES]


def lora_choices(
    loras: LoraCatalogue, families: set[Family], disabled: frozenset[str], current: str
) -> Choices:
    """The enabled LoRAs of `families` whose name, notes or trigger words contain what was
    typed, labelled with the trigger words, then the notes; a weight typed after a colon
    (`detail:0.6`) is kept in the value."""
    try:
        typed, weight = parse_lora(current)
    except LoraError:  # "name:nan": offer the names, without that weight
        typed, weight = current.partition(":")[0], None
    typed = typed.casefold()
    choices = []
    for family in sorted(families):
        for spec in loras.offered(family, disabled):
            searched = " ".join([spec.name, spec.notes, *spec.triggers]).casefold()
            if typed not in searched:
                continue
            value = spec.name if weight is None else f"{spec.name}:{format_weight(weight)}"
            # The trigger words first: they are what a person must write, and may be clipped last.
            triggers = f"say {', '.join(spec.triggers)}" if spec.triggers else ""
            about = " — ".join(filter(None, [triggers, spec.notes]))
            label = f"{spec.name} (weight {format_weight(spec.weight)})" + (
                f" — {about}" if about else ""
            )
            choices.append(app_commands.Choice(name=clip(label, MAX_CHOICE_NAME), value=value))
    return choices[:MAX_CHOICES]


async def autocomplete_model(interaction: discord.Interaction, current: str) -> Choices:
    return model_choices(_bot(interaction).settings.catalogue, current)


async def autocomplete_aspect(interaction: discord.Interaction, current: str) -> Choices:
    return aspect_choices(current)


async def autocomplete_gpu(interaction: discord.Interaction, current: str) -> Choices:
    workers = _bot(interaction).pool.snapshot(waiting_limit=0).workers
    return named_choices([worker.id for worker in workers], current)


def _bot(interaction: discord.Interaction) -> AtelierBot:
    return cast("AtelierBot", interaction.client)
