"""The courier: posts each finished job's result (or why it failed), whatever Discord answers.

A result is delivered once and never dropped. What each refusal leads to (README, "When Discord
or the disk fails"):

- 5xx, 429 past discord.py's own retries, a dropped connection, or no way to reach the person
  at all: the result stays undelivered in storage and is tried again after
  `REDELIVERY_DELAYS_S` (and on the next start);
- 413 (Discord's upload limit is lower than the bot knew, say a server lost its boosts): the
  images are fitted again under half the largest file Discord refused, at once;
- 403, or 404 Unknown Channel (the bot may no longer post there, or the channel is gone): the
  result goes to the person's DMs, with a sentence saying why it is there, and the progress
  message left in the channel (where Discord still lets the bot edit it) says where it went;
- 404 Unknown Message (someone deleted the reply the result was to replace): the channel is fine,
  so a new message there, mentioning the person, takes its place (`bot.targets`);
- anything failing before the post (the stored images cannot be read): tried again after
  `REDELIVERY_DELAYS_S`, and the progress message says so;
- the store refusing to record a posted result: the records (not the post) are written again
  after `REDELIVERY_DELAYS_S` until they succeed, so the result is posted once; a next start
  finds a result the last run posted but could not record in the reply it replaced, and
  records it instead of posting it again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import discord

from bot import derived
from bot.actions import Action
from bot.attachments import fit_upload, limit_note
from bot.config import Settings
from bot.editing import edit_offered, editing_model
from bot.targets import UNREACHABLE, ChannelTarget, Message, Target, is_channel_refusal
from bot.ui.embeds import failure_content
from bot.ui.notes import result_notes
from bot.ui.progress import Phase, ProgressState
from bot.ui.results import result_messages
from generation.jobs import JobOwner, JobRecord, JobStatus
from storage import Database, StorageError

log = logging.getLogger(__name__)

REDELIVERY_DELAYS_S = (2.0, 10.0, 30.0, 120.0, 600.0)  # then every 600 s
MIN_FITTED_LIMIT = 1024  # bytes: below this a 413 is not answered by shrinking further
Posted = Sequence[discord.Message]  # the messages of a result posted so far
ImageReader = Callable[[JobRecord, int], Awaitable[bytes]]
Spawn = Callable[[Coroutine[Any, Any, None], str], None]


class Courier:
    """Delivers results; `deliver` may be called for a job any number of times (it posts once)."""

    def __init__(
        self,
        client: discord.Client,
        settings: Settings,
        database: Database,
        may_run: Callable[[str], bool],
        read_image: ImageReader,
        spawn: Spawn,
    ) -> None:
        """`may_run(model)`: whether a model may run here (for the result's buttons);
        `read_image(record, index)`: a stored PNG; `spawn(coroutine, name)`: runs a retry."""
        self.client = client
        self.settings = settings
        self.database = database
        self._may_run = may_run
        self._read_image = read_image
        self._spawn = spawn
        self._delivering: set[int] = set()

    async def deliver(
        self,
        job_id: int,
        target: Target,
        attempt: int = 0,
        sent: Posted = (),
        limit: int | None = None,
    ) -> None:
        """Post the result (or failure) through `target`; on a refusal, see the module
        docstring. `sent`: the parts already posted; `limit`: the upload limit to fit under."""
        if job_id in self._delivering and attempt == 0:
            return
        self._delivering.add(job_id)
        try:
            stored = await self.database.get_job(job_id)  # the init image's shape is in the notes
        except StorageError as error:  # the database cannot be read right now
            log.warning("Job %s: its record could not be read (%s)", job_id, error)
            await self._retry_later(job_id, target, attempt, sent, error)
            return
        if stored is None or stored.deleted or stored.delivered_at is not None:
            self._delivering.discard(job_id)
            return
        record = stored.record
        limit = target.upload_limit if limit is None else limit
        posting: Message | None = None
        try:
            messages = await self.result_messages(record, limit)
        except Exception as error:  # the store cannot be read (or anything else before posting)
            log.warning("Job %s: its result could not be prepared (%s)", job_id, error)
            await self._retry_later(job_id, target, attempt, sent, error)
            return
        try:
            for posting in messages[len(sent) :]:
                post = target.deliver_more if sent else target.deliver
                sent = (*sent, await post(posting))
        except discord.HTTPException as error:
            await self._refused(record, target, attempt, sent, limit, posting, error)
            return
        except UNREACHABLE as error:  # as a 5xx: tried again later
            self._retry(job_id, target, attempt, sent, error)
            return
        await self._book(record, sent, target.channel_id)
        self._delivering.discard(job_id)

    async def _book(self, record: JobRecord, sent: Posted, channel_id: int | None) -> None:
        """Record a posted result, retrying after `REDELIVERY_DELAYS_S` until the store takes
        it: the post is never repeated, so a next start does not post the result again."""
        for attempt in itertools.count():
            try:
                await self.record_result(record, sent, channel_id)
                await self.database.mark_delivered(record.id)
                return
            except Exception as error:
                if await self._gone(record.id):
                    log.info("Job %s: deleted or erased once posted; nothing to record", record.id)
                    return
                delay = REDELIVERY_DELAYS_S[min(attempt, len(REDELIVERY_DELAYS_S) - 1)]
                log.warning(
                    "Job %s: posted, but not recorded (%s); retrying in %.0f s",
                    record.id,
                    error,
                    delay,
                )
                await asyncio.sleep(delay)

    async def _gone(self, job_id: int) -> bool:
        """Whether the job was deleted, or its owner erased (False while that cannot be read)."""
        try:
            stored = await self.database.get_job(job_id, init_image=False)
        except StorageError:
            return False
        return stored is None or stored.deleted

    async def _retry_later(
        self, job_id: int, target: Target, attempt: int, sent: Posted, error: Exception
    ) -> None:
        """Try the delivery again after the courier's backoff, saying so where nothing is
        posted yet (the progress message)."""
        delay = REDELIVERY_DELAYS_S[min(attempt, len(REDELIVERY_DELAYS_S) - 1)]
        if not sent and target.progress_message_id is not None:
            note = (
                f"⚠️ Job `{job_id}` is finished, but its result could not be read ({error}). "
                f"Your job is kept. Trying again in {delay:.0f} s."
            )
            try:
                await target.edit(Message(content=note[:2000], uploads=()))
            except (discord.HTTPException, *UNREACHABLE) as edit_error:
                log.info(
                    "Job %s: the progress message could not be edited (%s)", job_id, edit_error
                )
        self._spawn(
            self._redeliver(job_id, target, attempt + 1, delay, sent), f"redeliver-{job_id}"
        )

    async def _refused(
        self,
        record: JobRecord,
        target: Target,
        attempt: int,
        sent: Posted,
        limit: int,
        posting: Message | None,
        error: discord.HTTPException,
    ) -> None:
        job_id = record.id
        largest = max((len(u.data) for u in (posting.uploads or ())), default=0) if posting else 0
        if error.status == 413 and largest // 2 >= MIN_FITTED_LIMIT:
            log.warning("Job %s: Discord refused %d bytes; fitting under less", job_id, largest)
            await self.deliver(job_id, target, attempt + 1, sent, min(limit, largest // 2))
            return
        if is_channel_refusal(error) and not sent and not _is_dm(target):
            log.warning("Job %s: cannot post in its channel (%s); sending it by DM", job_id, error)
            if await self._deliver_by_dm(record, target, error):
                return
        self._retry(job_id, target, attempt, sent, error)

    def _retry(
        self, job_id: int, target: Target, attempt: int, sent: Posted, error: Exception
    ) -> None:
        """Post the rest of the result after the courier's backoff."""
        delay = REDELIVERY_DELAYS_S[min(attempt, len(REDELIVERY_DELAYS_S) - 1)]
        log.warning("Job %s: delivery failed (%r); retrying in %.0f s", job_id, error, delay)
        self._spawn(
            self._redeliver(job_id, target, attempt + 1, delay, sent), f"redeliver-{job_id}"
        )

    async def _deliver_by_dm(
        self, record: JobRecord, target: Target, error: discord.HTTPException
    ) -> bool:
        """Post the result in the person's DMs, saying why; False when the DM fails too."""
        try:
            user = self.client.get_user(record.owner.user_id) or await self.client.fetch_user(
                record.owner.user_id
            )
            channel = await user.create_dm()
            why = "may no longer post there" if error.status == 403 else "cannot find it"
            await channel.send(
                f"I could not post the result of job `{record.id}` in <#{target.channel_id}> "
                f"(I {why}), so here it is."
            )
        except (discord.HTTPException, *UNREACHABLE) as dm_error:
            log.warning("Job %s: the DM failed as well (%s)", record.id, dm_error)
            return False
        dm = ChannelTarget(self.client, channel.id, record.owner.user_id)
        self._delivering.discard(record.id)
        await self.deliver(record.id, dm, attempt=1)
        await self._point_to_dm(record, target)
        return True

    async def _point_to_dm(self, record: JobRecord, target: Target) -> None:
        """Turn the job's progress message, if any, into a note of where the result went."""
        if target.progress_message_id is None:
            return  # no message to edit: nothing new is posted where posting was refused
        note = f"📬 The result of job `{record.id}` was sent to <@{record.owner.user_id}> by DM."
        try:
            await target.edit(Message(content=note, uploads=()))
        except (discord.HTTPException, *UNREACHABLE) as error:
            log.info("Job %s: the progress message could not be edited (%s)", record.id, error)

    async def _redeliver(
        self, job_id: int, target: Target, attempt: int, delay: float, sent: Posted
    ) -> None:
        await asyncio.sleep(delay)
        await self.deliver(job_id, target, attempt, sent)

    async def result_messages(self, record: JobRecord, limit: int) -> list[Message]:
        """What shows a finished job: its images (each under `limit` bytes, in as many messages
        as 25 MiB per request needs) with the result buttons, or why it failed or was cancelled."""
        if record.status is not JobStatus.DONE:
            phase = Phase.FAILED if record.status is JobStatus.FAILED else Phase.CANCELLED
            state = ProgressState(record.id, phase=phase, reason=record.error)
            return [Message(content=failure_content(record, state), uploads=())]
        uploads = []
        indexes = await self.image_indexes(record)
        for index in indexes:
            png = await self._read_image(record, index)
            uploads.append(fit_upload(f"{_upload_stem(record.id)}{index + 1}", png, limit))
        note = limit_note(uploads, limit)
        parent = None
        if record.request.parent_job is not None:
            stored = await self.database.get_job(record.request.parent_job, init_image=False)
            parent = stored.record if stored is not None else None
        notes = [*result_notes(record, parent), *([note] if note else [])]
        catalogue = self.settings.catalogue
        actions = derived.offered_actions(catalogue, record.request, self._may_run)
        model = editing_model(self.settings.edit.model, catalogue, self._may_run)
        if edit_offered(catalogue, model, record):
            actions = (*actions, Action.EDIT)
        return result_messages(record, uploads, notes, actions, indexes)

    async def image_indexes(self, record: JobRecord) -> list[int]:
        """The 0-based images a finished job has, in order: all it asked for, or, where some
        were not made (an API job's moderated images: `record.error` says which), the others."""
        if record.error is None:
            return list(range(record.request.count))
        return [image.index for image in await self.database.images_of(record.id)]

    async def record_result(self, record: JobRecord, sent: Posted, channel_id: int | None) -> None:
        """Record the messages showing `record` (for reactions) and which holds which image."""
        indexes = iter(await self.image_indexes(record) if record.status is JobStatus.DONE else ())
        for message in sent:
            await self.database.record_message(record.id, message.id, channel_id)
            for attachment, index in zip(message.attachments, indexes, strict=False):
                await self.database.set_image_attachment(
                    record.id, index, message.id, attachment.id
                )

    async def deliver_leftovers(self) -> None:
        """Results a previous run finished but could not post (or was killed before posting)."""
        await self.client.wait_until_ready()
        for record in await self.database.undelivered_jobs():
            if record.status.is_final and record.owner.channel_id is not None:
                target = await self.resumed_target(record)
                posted = await self._posted_before(record, target)
                if posted is None:
                    await self.deliver(record.id, target)
                else:  # posted, but the store refused to record it before the stop
                    book = self._book(record, (posted,), target.channel_id)
                    self._spawn(book, f"book-{record.id}")

    async def _posted_before(
        self, record: JobRecord, target: ChannelTarget
    ) -> discord.Message | None:
        """The result of `record` an earlier run posted (its reply, turned into the result)
        but could not record; None where its last recorded message does not show its images."""
        if record.status is not JobStatus.DONE or target.progress_message_id is None:
            return None
        try:
            message = await target.channel.fetch_message(target.progress_message_id)
        except (discord.HTTPException, *UNREACHABLE):
            return None
        stem = _upload_stem(record.id)
        return message if any(a.filename.startswith(stem) for a in message.attachments) else None

    async def resumed_target(self, record: JobRecord) -> ChannelTarget:
        """Where a job of an earlier run goes on: its channel, with the last message recorded
        for it (the progress message left behind) edited as the job moves and removed once
        the result is posted, so no stale "running 3/4" stays in the channel."""
        messages = await self.database.messages_of(record.id)
        last = messages[-1].message_id if messages else None
        return self.channel_target(record.owner, progress_message_id=last)

    def channel_target(
        self,
        owner: JobOwner,
        user_id: int | None = None,
        *,
        progress_message_id: int | None = None,
    ) -> ChannelTarget:
        return ChannelTarget(
            self.client,
            owner.channel_id or 0,
            owner.user_id if user_id is None else user_id,
            guild_id=owner.guild_id,
            progress_message_id=progress_message_id,
        )


def _upload_stem(job_id: int) -> str:
    """How the names of a job's uploaded images begin (then the image's number)."""
    return f"atelier-{job_id}-"


def _is_dm(target: Target) -> bool:
    return isinstance(target, ChannelTarget) and target.guild_id is None
