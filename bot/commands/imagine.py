"""`/imagine`: a prompt and options in, a queued job (id, position, ETA) out within 3 seconds."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.downloads import accepted_summary, read_init_image
from bot.errors import UserError
from bot.references import gather_references, parse_refs, refs_choices
from bot.targets import InteractionTarget
from bot.ui.choices import (
    Choices,
    autocomplete_aspect,
    autocomplete_model,
    lora_choices,
    named_choices,
)
from bot.ui.fit import MAX_OPTION_CHARS, Name
from generation.drafts import check_draft, draft_request
from generation.loras import MAX_WEIGHT, MIN_WEIGHT, LoraError, parse_lora
from generation.models import Catalogue
from generation.request import MAX_COUNT, build_request, check_reference_count

if TYPE_CHECKING:
    from bot.app import AtelierBot

Text = app_commands.Range[str, 1, MAX_OPTION_CHARS]  # the models' own limit is checked later


class Imagine(commands.Cog):
    """The `/imagine` command."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Make images from a prompt.")
    @app_commands.describe(
        prompt="What to draw.",
        model="Which model draws it (default: yours from /settings, or the server's).",
        aspect="Aspect ratio such as 16:9 (or give width and height).",
        width="Width in pixels (with height, instead of an aspect ratio).",
        height="Height in pixels (with width).",
        negative="What to keep out of the image (Playground only).",
        steps="Denoising steps (more: slower, often finer).",
        guidance="How closely to follow the prompt.",
        seed="Seed of the first image, to reproduce a result.",
        count=f"How many images (1-{MAX_COUNT}).",
        scheduler="The sampler (the model's default is usually best); `raw` for FLUX1.1 [pro] "
        "Ultra's raw mode.",
        image=f"Start from this image (img2img): {accepted_summary()}.",
        strength="How much to change the starting image (0-1, default 0.6).",
        lora1=f"A LoRA (style or subject) to add, as name or name:weight ({MIN_WEIGHT:g} to "
        f"{MAX_WEIGHT:g}).",
        lora2="A second LoRA, as name or name:weight.",
        lora3="A third LoRA, as name or name:weight.",
        ref1="A reference image (FLUX.2 [klein]: up to 4; Kontext: 1): keep this subject, "
        "style or logo.",
        ref2="A second reference image.",
        ref3="A third reference image.",
        ref4="A fourth reference image.",
        refs="Your past images as references, as job/image: `42/2 57/1` (after ref1-ref4).",
        draft="First a quick 4-step FLUX.2 [klein] draft; its ✅ Final button makes this job.",
    )
    @app_commands.autocomplete(model=autocomplete_model, aspect=autocomplete_aspect)
    async def imagine(
        self,
        interaction: discord.Interaction,
        prompt: Text,
        model: Name | None = None,
        aspect: Name | None = None,
        width: int | None = None,
        height: int | None = None,
        negative: Text | None = None,
        steps: int | None = None,
        guidance: float | None = None,
        seed: int | None = None,
        count: int | None = None,
        scheduler: Name | None = None,
        image: discord.Attachment | None = None,
        strength: float | None = None,
        lora1: Name | None = None,
        lora2: Name | None = None,
        lora3: Name | None = None,
        ref1: discord.Attachment | None = None,
        ref2: discord.Attachment | None = None,
        ref3: discord.Attachment | None = None,
        ref4: discord.Attachment | None = None,
        refs: Name | None = None,
        draft: bool | None = None,
    ) -> None:
        # No min/max for Discord to enforce on numbers: limits depend on the model, and
        # `build_request` explains a value out of range better than Discord's client does.
        # Texts are capped (`Name`, `Text`) so that no reply can echo more than a name.
        studio = self.bot.studio
        settings = self.bot.settings
        standing = await studio.database.get_user(interaction.user.id)  # admitted by the tree
        owner = standing.owner(interaction.guild_id, interaction.channel_id)
        catalogue = settings.catalogue
        model = model or standing.default_model or settings.defaults.model or catalogue.default.name
        takes_negative = model in catalogue and catalogue[model].limits.negative_prompt
        if negative is None and takes_negative:
            negative = standing.default_negative_prompt or settings.defaults.negative_prompt
        if aspect is None and width is None and height is None and image is None:
            # With an image and no size, the job takes the image's aspect (build_request).
            aspect = standing.default_aspect or settings.defaults.aspect
        try:
            asked = [parse_lora(text) for text in (lora1, lora2, lora3) if text]
        except LoraError as error:
            raise UserError(str(error)) from None
        disabled = await studio.database.disabled_loras() if asked else frozenset()
        uploads = [ref for ref in (ref1, ref2, ref3, ref4) if ref is not None]
        past = parse_refs(refs)
        scheduler, raw = raw_mode(catalogue, model, scheduler)
        _check_reference_count(catalogue, model, len(uploads) + len(past))
        if draft:
            check_draft(
                catalogue,
                model,
                studio.pool.may_run,
                prompt=prompt,
                with_image=image is not None,
                references=len(uploads) + len(past),
            )
        init_image, references = None, ()
        if image is not None or uploads or past:  # what costs nothing is checked first
            await studio.precheck(owner, model, prompt, negative)
            await interaction.response.defer()  # downloading may take a moment
        if image is not None:
            init_image = await read_init_image(image, settings.download_timeout_s, studio.decodes)
        if uploads or past:
            references = await gather_references(self.bot, interaction.user, uploads, past)
        request = build_request(
            settings.catalogue,
            prompt=prompt,
            model=model,
            negative_prompt=negative,
            width=width,
            height=height,
            aspect=aspect,
            steps=steps,
            guidance=guidance,
            scheduler=scheduler,
            raw=raw,
            seed=seed,
            count=count or settings.defaults.count,
            init_image=init_image,
            strength=strength,
            input_images=references,
            loras=asked,
            lora_catalogue=settings.loras,
            disabled_loras=disabled,
        )
        if draft:
            # off the event loop: it reads LoRA and model headers to see which LoRAs fit the
            # draft model; the pool's state is read here, on the loop
            runnable = frozenset(name for name in catalogue if studio.pool.may_run(name))
            request = await asyncio.to_thread(
                draft_request, catalogue, request, runnable.__contains__, settings.loras
            )
        await studio.submit(request, owner, InteractionTarget(self.bot, interaction))

    @imagine.autocomplete("refs")
    async def _refs(self, interaction: discord.Interaction, current: str) -> Choices:
        return await refs_choices(self.bot, interaction.user.id, current)

    @imagine.autocomplete("scheduler")
    async def _schedulers(self, interaction: discord.Interaction, current: str) -> Choices:
        catalogue = self.bot.settings.catalogue
        chosen = getattr(interaction.namespace, "model", None)
        hosted = catalogue.hosted.get(chosen) if isinstance(chosen, str) else None
        if hosted is not None:  # an API model takes no scheduler; `raw` where it has that mode
            return named_choices([RAW] if hosted.raw else [], current)
        specs = [catalogue[chosen]] if chosen in catalogue else list(catalogue.values())
        names = dict.fromkeys(name for spec in specs for name in spec.schedulers)
        if chosen not in catalogue and _any_raw(catalogue):
            names[RAW] = None
        return named_choices(list(names), current)

    @imagine.autocomplete("lora1")
    @imagine.autocomplete("lora2")
    @imagine.autocomplete("lora3")
    async def _loras(self, interaction: discord.Interaction, current: str) -> Choices:
        """The enabled LoRAs that fit the chosen model (every model's when none is chosen)."""
        catalogue = self.bot.settings.catalogue
        chosen = getattr(interaction.namespace, "model", None)
        specs = [catalogue[chosen]] if chosen in catalogue else list(catalogue.values())
        disabled = await self.bot.studio.database.disabled_loras()
        families = {spec.family for spec in specs}
        return lora_choices(self.bot.settings.loras, families, disabled, current)


RAW = "raw"  # the `scheduler` value that asks for an API model's raw mode (adds no option)


def _any_raw(catalogue: Catalogue) -> bool:
    return any(model.raw for model in catalogue.hosted.values())


def raw_mode(catalogue: Catalogue, model: str, scheduler: str | None) -> tuple[str | None, bool]:
    """(scheduler, raw): `scheduler:raw` asks an API model with a raw mode (FLUX1.1 [pro]
    Ultra) for it, as /imagine has no option left for it (Discord allows 25; README)."""
    hosted = catalogue.hosted.get(model)
    if hosted is not None and hosted.raw and (scheduler or "").strip().lower() == RAW:
        return None, True
    return scheduler, False


def _check_reference_count(catalogue: Catalogue, model: str, count: int) -> None:
    """Refuse more references than the model takes before anything is downloaded (the same
    sentence `build_request` would give afterwards)."""
    if count and model in catalogue:
        check_reference_count(model, catalogue[model].limits.max_references, count)


async def setup(bot: AtelierBot) -> None:
    await bot.add_cog(Imagine(bot))
