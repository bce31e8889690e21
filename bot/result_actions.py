"""What a finished job's buttons, reactions and `/edit` ask of it: a derived job (rerun, reroll,
variation, upscale, a draft's final, an edit), its parameters, or its deletion. A part of
`bot.studio.Studio` (which gives it `submit`, `precheck` and the image readers)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord

from bot import derived
from bot.actions import Action
from bot.config import Settings
from bot.editing import NO_EDITING_MODEL, edit_problem, edit_request, editing_model
from bot.errors import NotYours, UserError
from bot.finals import Finals
from bot.permissions import admit, may_manage_server
from bot.targets import Message, Target
from bot.ui.embeds import parameters_embed
from generation.jobs import JobRecord
from generation.request import GenerationRequest, JobKind
from storage import Database

if TYPE_CHECKING:
    from generation.pool import WorkerPool


class ResultActions:
    """Derived jobs and deletions of finished jobs, checked server-side (`bot.permissions`).
    `Studio` provides `submit`, `precheck`, `job`, `check_image`, `image` and `reference_image`."""

    settings: Settings
    database: Database
    pool: WorkerPool
    finals: Finals

    def editing_model(self) -> str | None:
        """The model edits use now (`bot.editing.editing_model`), None where none may run."""
        return editing_model(self.settings.edit.model, self.settings.catalogue, self.pool.may_run)

    async def edit(
        self,
        record: JobRecord,
        index: int,
        instruction: str,
        actor: discord.abc.User,
        target: Target,
        *,
        guild_id: int | None,
        channel_id: int | None,
        answer_first: Callable[[], Awaitable[object]],
    ) -> None:
        """Queue an edit of image `index` (0-based) of `record` (read complete) by `instruction`
        (`/edit`, the Edit button's modal). What costs little is checked first: who and where,
        the blocklist, the queue, the image, the instruction; then `answer_first` (Discord's
        "thinking…", due within 3 s) before the image is read and re-encoded. `UserError` (and
        its kinds) says why nothing was queued."""
        standing = await admit(self, actor, guild_id)
        model = self.editing_model()
        if model is None:
            raise UserError(NO_EDITING_MODEL)
        owner = standing.owner(guild_id, channel_id)
        await self.precheck(owner, model, instruction, what="Your instruction")
        self.check_image(record, index)
        edit_problem(self.settings.catalogue, model, record, instruction)
        await answer_first()
        image = await self.reference_image(record, index)
        request = edit_request(self.settings.catalogue, model, record, index, image, instruction)
        await self.submit(request, owner, target)

    async def act(
        self,
        action: Action,
        job_id: int,
        index: int,
        actor: discord.abc.User,
        target: Target,
        *,
        guild_id: int | None,
        channel_id: int | None,
        message: discord.PartialMessage | discord.Message | None = None,
    ) -> None:
        """Do what a result button or reaction asks of job `job_id` (image `index`).

        Whoever may not act (`bot.permissions.admit`: a bot, a banned person, a DM where DMs
        are off) is refused before anything else happens."""
        standing = await admit(self, actor, guild_id)
        # an action that makes a job starts from the complete record (its images read)
        record = await self.job(job_id, init_image=action in derived.MAKES_JOB)
        if action in (Action.INFO, Action.SEND_DM):
            await target.reply_private(Message(embed=parameters_embed(record)))
            return
        if action is Action.DELETE:
            await self.delete(record, actor, message)
            await target.reply_private(Message(content=f"🗑️ Deleted job `{job_id}`."))
            return
        owner = standing.owner(guild_id, channel_id)
        if action is Action.FINAL:  # one final per draft (`bot.finals`)
            async with self.finals.making(job_id):
                await self.submit(await self._derive(action, record, index), owner, target)
            return
        request = await self._derive(action, record, index)
        await self.submit(request, owner, target)

    async def delete(
        self,
        record: JobRecord,
        actor: discord.abc.User,
        message: discord.PartialMessage | discord.Message | None = None,
    ) -> None:
        """Delete a finished job (its author or an admin only) and the result message, if given."""
        if actor.id != record.owner.user_id and not may_manage_server(
            self.settings, actor, record.owner.guild_id
        ):
            raise NotYours("Only the person who made this job (or an admin) can delete it.")
        if not record.status.is_final:
            raise UserError(
                f"Job `{record.id}` is still {record.status.value}; cancel it first (`/cancel`)."
            )
        await self.database.delete_job(record.id)
        if message is not None:
            with contextlib.suppress(discord.HTTPException):
                await message.delete()

    async def _derive(self, action: Action, record: JobRecord, index: int) -> GenerationRequest:
        image = b""
        origin = None
        if action in derived.IMAGE_ACTIONS:
            image = await self.image(record, index)
            origin = await self._origin(record.request)
        return derived.derive(
            self.settings.catalogue,
            action,
            record.request,
            record.id,
            image,
            index,
            record.profile,
            origin,
        )

    async def _origin(self, request: GenerationRequest) -> JobKind:
        """The kind of the job `request` repeats: a rerun's or reroll's parent's, followed back
        (deleted parents included; an unknown one ends the walk)."""
        kind, parent = request.kind, request.parent_job
        seen: set[int] = set()
        while kind in (JobKind.RERUN, JobKind.REROLL) and parent is not None:
            stored = await self.database.get_job(parent, init_image=False)
            if stored is None or parent in seen:
                break
            seen.add(parent)
            kind, parent = stored.record.request.kind, stored.record.request.parent_job
        return kind
