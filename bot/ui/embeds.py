"""Embeds for progress, results and job parameters. Pure functions of the data they show, fitted
to Discord's limits by construction (`bot.ui.fit`)."""

from __future__ import annotations

from collections.abc import Sequence

import discord

from bot.ui.fit import FittedEmbed, fit_content
from bot.ui.notes import kind_label
from bot.ui.progress import Phase, ProgressState, status_line
from bot.ui.text import plain
from generation.jobs import JobRecord
from generation.request import GenerationRequest

PREVIEW_FILENAME = "preview.png"
_COLOURS = {
    Phase.QUEUED: discord.Colour.light_grey(),
    Phase.LOADING: discord.Colour.blurple(),
    Phase.RUNNING: discord.Colour.blurple(),
    Phase.FINISHED: discord.Colour.green(),
    Phase.FAILED: discord.Colour.red(),
    Phase.CANCELLED: discord.Colour.dark_grey(),
}
_PROMPT_SHOWN = 300


def progress_embed(
    state: ProgressState,
    request: GenerationRequest | None,
    *,
    show_preview: bool = False,
    notes: Sequence[str] = (),
) -> discord.Embed:
    """The progress message: job id, prompt, status line, `notes` on how the job will be made
    (a cut prompt, a cropped init image) and the preview once one is attached."""
    embed = FittedEmbed(
        title=f"Job {state.job_id}",
        description=status_line(state),
        colour=_COLOURS[state.phase],
    )
    if request is not None:
        embed.add_field(name="Prompt", value=plain(request.prompt, _PROMPT_SHOWN), inline=False)
        embed.add_field(name="Model", value=request.model)
        embed.add_field(name="Images", value=str(request.count))
    for note in notes:
        embed.add_field(name="Note", value=note, inline=False)
    if show_preview:
        embed.set_image(url=f"attachment://{PREVIEW_FILENAME}")
    return embed


def result_content(record: JobRecord, notes: Sequence[str] = ()) -> str:
    """The text above the images: what, with which seeds, and the job id (short for mobiles)."""
    request = record.request
    seeds = ", ".join(str(seed) for seed in request.seeds)
    loras = "".join(f" · LoRA `{use}`" for use in request.loras)
    # an API model sized by aspect ratio is shown so; steps only where the model takes them
    w, h = request.width, request.height
    size = f"aspect {request.aspect_ratio}" if request.aspect_ratio else f"{w}x{h}"
    steps = f"{request.steps} steps · " if request.steps else ""
    lines = [
        f"**{plain(request.prompt, _PROMPT_SHOWN)}**",
        f"`{request.model}`{loras} · {size} · {steps}seeds {seeds} · job `{record.id}`",
        *notes,
    ]
    return fit_content("\n".join(lines))


def parameters_embed(record: JobRecord) -> discord.Embed:
    """Every parameter needed to reproduce the job, for ℹ️ and ✉️."""
    request = record.request
    embed = FittedEmbed(
        title=f"Job {record.id} — parameters",
        colour=discord.Colour.blurple(),
        footer=f"Requested by user {record.owner.user_id}",
    )
    embed.add_field(name="Prompt", value=plain(request.prompt, 1000), inline=False)
    if request.negative_prompt:
        embed.add_field(
            name="Negative prompt", value=plain(request.negative_prompt, 1000), inline=False
        )
    fields = {
        "Model": request.model,
        "Size": f"{request.width}x{request.height}",
        "Steps": str(request.steps),
        "Guidance": f"{request.guidance:g}",
        "Scheduler": request.scheduler,
        "Seeds": ", ".join(str(seed) for seed in request.seeds),
        "Kind": kind_label(request),
        "Status": record.status.value,
    }
    if request.strength is not None:
        fields["Strength"] = f"{request.strength:g}"
    if request.loras:
        fields["LoRAs"] = ", ".join(str(use) for use in request.loras)
    fields["Prompt encoder"] = request.prompt_encoder
    if request.parent_job is not None:
        fields["Parent job"] = str(request.parent_job)
    if request.parent_image is not None:  # an edit: which image it changed, as `job/image`
        fields["Edited image"] = f"{request.parent_job}/{request.parent_image + 1}"
    if request.final is not None:  # a draft: the model ✅ Final makes the job on
        fields["Final model"] = request.final.model
    if record.worker:
        fields["GPU"] = record.worker
    if record.gpu_seconds is not None:
        fields["GPU time"] = f"{record.gpu_seconds:.1f} s"
    for name, value in fields.items():
        embed.add_field(name=name, value=value)
    return embed


def failure_content(record: JobRecord, state: ProgressState) -> str:
    """The text of a job that ended without images."""
    prompt = plain(record.request.prompt, 80)
    return fit_content(f"Job `{record.id}` ({prompt}): {status_line(state)}")
