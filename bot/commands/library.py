"""Your own jobs: `/show`, `/rerun`, `/vary`, `/history` (paged with buttons), `/queue`, `/cancel`.

Every command here works on the caller's own jobs only; an unknown, deleted or someone else's
job id gets a short ephemeral answer and changes nothing. New jobs (`/rerun`, `/vary`) go through
`Studio.submit`, like `/imagine` and the result buttons, so bans, limits, allowed channels and the
blocklist apply to them the same way.

History pages are ephemeral; their ◀ ▶ buttons are `DynamicItem`s that carry the page cursor and
a 16-character key of the filters (saved in the database) in their custom_id
(`atelier:history:o:123:KEY`), so any filter fits Discord's 100 characters, the buttons keep
working after a restart, and the person clicking is always the person whose history it is (only
they see it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import discord
from discord import app_commands
from discord.ext import commands

from bot import derived
from bot.cancelling import answer_cancel
from bot.errors import NotFound, NotYours, UserError, report_error
from bot.permissions import admit
from bot.targets import InteractionTarget
from bot.ui.choices import autocomplete_model
from bot.ui.embeds import parameters_embed
from bot.ui.fit import FittedEmbed, Name
from bot.ui.listings import user_queue_embed
from bot.ui.progress import Phase, ProgressState, status_line
from bot.ui.text import plain
from generation.jobs import JobRecord, JobStatus
from generation.request import MAX_COUNT, GenerationRequest
from generation.text import clean_text

if TYPE_CHECKING:
    from bot.app import AtelierBot

HISTORY_PAGE_SIZE = 10
QUEUE_SHOWN = 20  # of a person's waiting jobs, looked up and listed by /queue
MAX_FILTER_CHARS = 40
_STATUS_ICONS = {
    JobStatus.QUEUED: "⏳",
    JobStatus.RUNNING: "🎨",
    JobStatus.DONE: "✅",
    JobStatus.FAILED: "⚠️",
    JobStatus.CANCELLED: "🚫",
}
_HISTORY_PREFIX = "atelier:history"


async def own_job(
    bot: AtelierBot, user: discord.abc.User, job_id: int, *, init_image: bool = False
) -> JobRecord:
    """The caller's job `job_id` (its init image's bytes only with `init_image`); `NotFound`
    (unknown or deleted) or `NotYours`."""
    record = await bot.studio.job(job_id, init_image=init_image)
    if record.owner.user_id != user.id:
        raise NotYours(f"Job `{job_id}` is someone else's; these commands work on your own jobs.")
    return record


async def not_cancelled(bot: AtelierBot, job_id: int) -> str:
    """Why `/cancel` did not cancel a job: someone else's cancel came first, or it ended."""
    record = await bot.studio.job(job_id, init_image=False)
    if record.status is JobStatus.CANCELLED:
        return f"Job `{job_id}` was already cancelled."
    return f"Job `{job_id}` ended ({record.status.value}) before it could be cancelled."


def image_index(record: JobRecord, image: int) -> int:
    """The 0-based index of image `image` (1-based, as people count) of a job."""
    if not 1 <= image <= record.request.count:
        made = record.request.count
        raise NotFound(
            f"Job `{record.id}` made {made} image{'s' if made != 1 else ''}, not {image}."
        )
    return image - 1


def unfinished_status(bot: AtelierBot, record: JobRecord) -> str:
    """The status line of a queued or running job, as the pool has it now (place and ETA, or
    its GPU and step); what storage says when it has just ended."""
    live = bot.pool.job(record.id)
    if live is not None:
        return status_line(ProgressState.of(live))
    phase = Phase.RUNNING if record.status is JobStatus.RUNNING else Phase.QUEUED
    return status_line(ProgressState(record.id, phase=phase, worker=record.worker))


# ---- history pages ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryFilters:
    """What `/history` was narrowed to: one model, and/or prompts containing `text`."""

    model: str | None = None
    text: str | None = None

    def describe(self) -> str:
        parts = []
        if self.model:
            parts.append(f"model {plain(self.model, 100)}")
        if self.text:
            parts.append(f'prompts containing "{plain(self.text, 100)}"')
        return ", ".join(parts)


def history_line(record: JobRecord) -> str:
    """One job in a history page: id, status, when, model, images and the prompt."""
    request = record.request
    images = f"{request.count} image{'s' if request.count != 1 else ''}"
    return (
        f"`{record.id}` {_STATUS_ICONS[record.status]} <t:{int(record.queued_at)}:R> · "
        f"{request.model} · {images} — {plain(request.prompt, 80)}"
    )


def history_embed(jobs: list[JobRecord], filters: HistoryFilters) -> discord.Embed:
    narrowed = filters.describe()
    if jobs:
        description = "\n".join(history_line(record) for record in jobs)
    elif narrowed:
        description = "No job of yours matches these filters."
    else:
        description = "You have no jobs yet: try `/imagine`."
    footer = "Newest first · /show JOB shows one again with its buttons"
    return FittedEmbed(
        title="Your jobs",
        description=description,
        colour=discord.Colour.blurple(),
        footer=f"{narrowed} · {footer}" if narrowed else footer,
    )


def history_custom_id(direction: str, cursor: int, filter_key: str) -> str:
    """`atelier:history:o:123:KEY`: "o" pages to older jobs, "n" to newer ones; KEY (16
    characters, empty without filters) finds the filters in the database, so the custom_id stays
    within Discord's 100 characters whatever the filters are."""
    return f"{_HISTORY_PREFIX}:{direction}:{cursor}:{filter_key}"


class HistoryButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=_HISTORY_PREFIX + r":(?P<direction>[on]):(?P<cursor>\d{1,19}):(?P<key>[0-9a-f]{0,16})",
):
    """◀ Newer / Older ▶ on a history page; the custom_id holds the cursor and the filters' key."""

    def __init__(
        self, direction: str, cursor: int | None, filters: HistoryFilters, filter_key: str
    ) -> None:
        older = direction == "o"
        super().__init__(
            discord.ui.Button(
                label="Older ▶" if older else "◀ Newer",
                style=discord.ButtonStyle.secondary,
                custom_id=history_custom_id(direction, cursor or 0, filter_key),
                disabled=cursor is None,
            )
        )
        self.direction = direction
        self.cursor = cursor
        self.filters = filters

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Button[Any],
        match: re.Match[str],
        /,
    ) -> HistoryButton:
        bot = cast("AtelierBot", interaction.client)
        key = match["key"]
        saved = await bot.database.history_filter(key) if key else (None, None)
        # An unknown key (a database restored from before the page) pages without filters.
        filters = HistoryFilters(*saved) if saved else HistoryFilters()
        return cls(match["direction"], int(match["cursor"]), filters, key if saved else "")

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = cast("AtelierBot", interaction.client)
        try:
            await admit(bot.studio, interaction.user, interaction.guild_id)
            await interaction.response.defer()  # a text search reads the whole history
            key = "before" if self.direction == "o" else "after"
            embed, view = await history_page(
                bot, interaction.user.id, self.filters, **{key: self.cursor}
            )
            await interaction.edit_original_response(embed=embed, view=view)
        except Exception as error:
            await report_error(interaction, error)


async def history_page(
    bot: AtelierBot,
    user_id: int,
    filters: HistoryFilters,
    *,
    before: int | None = None,
    after: int | None = None,
) -> tuple[discord.Embed, discord.ui.View]:
    """One page of the user's history and its paging buttons."""
    page = await bot.database.history(
        user_id,
        limit=HISTORY_PAGE_SIZE,
        before=before,
        after=after,
        model=filters.model,
        text=filters.text,
    )
    filter_key = (
        await bot.database.save_history_filter(filters.model, filters.text)
        if filters.model or filters.text
        else ""
    )
    view = discord.ui.View(timeout=None)
    view.add_item(HistoryButton("n", page.newer, filters, filter_key))
    view.add_item(HistoryButton("o", page.older, filters, filter_key))
    return history_embed(page.jobs, filters), view


# ---- the commands -------------------------------------------------------------------------------


class Library(commands.Cog):
    """`/show`, `/rerun`, `/vary`, `/history`, `/queue` and `/cancel`."""

    def __init__(self, bot: AtelierBot) -> None:
        self.bot = bot

    @app_commands.command(name="show", description="Show one of your jobs again, with its buttons.")
    @app_commands.describe(
        job="The job id (every result message shows it).",
        private="Show it only to you (default: to the channel).",
    )
    async def show(
        self,
        interaction: discord.Interaction,
        job: app_commands.Range[int, 1],
        private: bool = False,
    ) -> None:
        record = await own_job(self.bot, interaction.user, job)
        if not record.status.is_final:
            await interaction.response.send_message(
                unfinished_status(self.bot, record), embed=parameters_embed(record), ephemeral=True
            )
            return
        await interaction.response.defer(ephemeral=private, thinking=True)  # files take a moment
        studio = self.bot.studio
        first, *more = await studio.courier.result_messages(record, interaction.filesize_limit)
        sent = [await interaction.edit_original_response(**first.edit_kwargs())]
        for message in more:
            kwargs = message.send_kwargs()
            sent.append(await interaction.followup.send(ephemeral=private, wait=True, **kwargs))  # type: ignore[arg-type]
        if not private:  # reactions on the new messages act on the job too
            await studio.courier.record_result(record, sent, interaction.channel_id)

    @app_commands.command(
        name="rerun",
        description="Make one of your jobs again with the same seeds (API models: a seeded rerun).",
    )
    @app_commands.describe(
        job="The job id.", image=f"Only this image (1-{MAX_COUNT}); default: all of them."
    )
    async def rerun(
        self,
        interaction: discord.Interaction,
        job: app_commands.Range[int, 1],
        image: app_commands.Range[int, 1, MAX_COUNT] | None = None,
    ) -> None:
        record = await own_job(self.bot, interaction.user, job, init_image=True)
        index = None if image is None else image_index(record, image)
        await self._submit(
            interaction,
            derived.rerun(
                self.bot.settings.catalogue, record.request, record.id, index, record.profile
            ),
        )

    @app_commands.command(name="vary", description="Variations of one image of your job.")
    @app_commands.describe(
        job="The job id.",
        image=f"Which image to vary (1-{MAX_COUNT}).",
        strength=(
            f"How much to change it: 0.05 (barely) to 1 (freely); "
            f"default {derived.VARY_STRENGTH[False]:g}."
        ),
    )
    async def vary(
        self,
        interaction: discord.Interaction,
        job: app_commands.Range[int, 1],
        image: app_commands.Range[int, 1, MAX_COUNT],
        strength: app_commands.Range[float, 0.05, 1.0] | None = None,
    ) -> None:
        record = await own_job(self.bot, interaction.user, job, init_image=True)
        png = await self.bot.studio.image(record, image_index(record, image))
        request = derived.vary(
            self.bot.settings.catalogue, record.request, record.id, png, strength=strength
        )
        await self._submit(interaction, request)

    @app_commands.command(
        name="history", description="Your past jobs, newest first (only you see it)."
    )
    @app_commands.describe(
        model="Only jobs of this model.", contains="Only prompts containing this."
    )
    @app_commands.autocomplete(model=autocomplete_model)
    async def history(
        self,
        interaction: discord.Interaction,
        model: Name | None = None,
        contains: app_commands.Range[str, 1, MAX_FILTER_CHARS] | None = None,
    ) -> None:
        if model is not None:
            self.bot.settings.catalogue[model]  # UnknownModel: told with the models there are
        filters = HistoryFilters(model, clean_text(contains or "") or None)
        # A text search reads every job of the person's history: answer within 3 s first.
        await interaction.response.defer(ephemeral=True, thinking=True)
        embed, view = await history_page(self.bot, interaction.user.id, filters)
        await interaction.followup.send(embed=embed, view=view, ephemeral=True)

    @app_commands.command(name="queue", description="Your waiting and running jobs, with ETAs.")
    async def queue(self, interaction: discord.Interaction) -> None:
        user_id = interaction.user.id
        pool = self.bot.pool
        # each listed job is read from the database: answer first
        await interaction.response.defer(ephemeral=True, thinking=True)
        snapshot = pool.snapshot(waiting_limit=0)  # counts and GPUs; their own jobs below
        records = []
        running = [worker.job_id for worker in snapshot.workers if worker.job_id]
        for job_id in running + pool.hosted_running():
            stored = await self.bot.database.get_job(job_id, init_image=False)
            if stored is not None and stored.record.owner.user_id == user_id:
                records.append(stored.record)
        waiting = pool.waiting_of(user_id, QUEUE_SHOWN)
        for listed in waiting:
            stored = await self.bot.database.get_job(listed.job_id, init_image=False)
            if stored is not None:
                records.append(stored.record)
        lines = [
            f"`{record.id}` {plain(record.request.prompt, 60)}\n"
            f"  {unfinished_status(self.bot, record)}"
            for record in records
        ]
        hidden = pool.user_counts(user_id)[0] - len(waiting)
        embed = user_queue_embed(lines, hidden, snapshot)
        await interaction.followup.send(embed=embed, ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your jobs, waiting or running.")
    @app_commands.describe(job="The job id.")
    async def cancel(
        self, interaction: discord.Interaction, job: app_commands.Range[int, 1]
    ) -> None:
        record = await own_job(self.bot, interaction.user, job)
        if record.status.is_final:
            raise UserError(f"Job `{job}` is already {record.status.value}; nothing to cancel.")
        await interaction.response.defer(ephemeral=True, thinking=True)  # a GPU step may finish

        async def cancelled() -> str:
            if await self.bot.pool.cancel(record.id):
                return f"🚫 Cancelled job `{job}`."
            return await not_cancelled(self.bot, job)

        stalled = self.bot.studio.cancel_stalled(job_id=job)
        await answer_cancel(interaction, f"job `{job}`", stalled, cancelled())

    async def _submit(self, interaction: discord.Interaction, request: GenerationRequest) -> None:
        studio = self.bot.studio
        standing = await studio.database.get_user(interaction.user.id)  # admitted by the tree
        owner = standing.owner(interaction.guild_id, interaction.channel_id)
        await studio.submit(request, owner, InteractionTarget(self.bot, interaction))


async def setup(bot: AtelierBot) -> None:
    bot.add_dynamic_items(HistoryButton)
    await bot.add_cog(Library(bot))
