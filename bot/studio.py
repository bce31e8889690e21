"""The service between Discord and the engine: accept jobs, follow them, deliver their results.

`Studio.submit` checks who asks and where, hands the request to the worker pool (which makes it
durable) and posts the job's one progress message. A single task consumes the pool's events and
feeds one `_Tracker` per job, which edits that message at most every `edit_interval_s` (a preview
at most every `preview_interval_s`) and finally turns it into the result. A result that cannot be
posted (Discord 5xx, 429 past discord.py's own retries) stays undelivered in storage and is
retried with backoff, and again on the next start-up. Storage records each progress message, so
a job taken back after a restart (even a SIGKILL) edits its old message on instead of leaving it
stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot import derived
from bot.actions import Action
from bot.attachments import Upload, fit_upload, limit_note
from bot.blocklist import first_blocked_term
from bot.config import Settings
from bot.errors import Blocked, NotAllowedHere, NotFound, NotYours, UserError
from bot.permissions import admit, may_manage_server, require_place
from bot.targets import ChannelTarget, Message, Target
from bot.ui.embeds import PREVIEW_FILENAME, failure_content, parameters_embed, progress_embed
from bot.ui.notes import request_notes, result_notes
from bot.ui.progress import Phase, ProgressState
from bot.ui.results import result_messages
from generation.jobs import JobEvent, JobOwner, JobQueued, JobRecord, JobStatus
from generation.prompts import PromptReader
from generation.request import GenerationRequest
from storage import Database, StorageError

if TYPE_CHECKING:
    from generation.pool import WorkerPool

log = logging.getLogger(__name__)

REDELIVERY_DELAYS_S = (2.0, 10.0, 30.0, 120.0, 600.0)  # then every 600 s
MAX_CONCURRENT_DECODES = 2  # uploaded images decoded at once (each up to ~0.45 GB: input_images)
REFRESHED_POSITIONS = 20  # beyond this place, a moving queue would cost too many edits
Posted = Sequence[discord.Message]  # the messages of a result posted so far


@dataclass(eq=False)
class _Tracker:
    """One job being followed: its latest state and where its messages go."""

    job_id: int
    state: ProgressState
    request: GenerationRequest | None = None
    target: Target | None = None
    claimed: bool = False  # a submit in this process will attach the target
    recorded_message: int | None = None  # the progress message storage knows of
    notes: tuple[str, ...] = ()  # how the job will be made, for the progress message
    target_ready: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    final: asyncio.Event = field(default_factory=asyncio.Event)

    def update(self, event: JobEvent) -> None:
        self.state = self.state.advance(event)
        self.changed.set()
        if self.state.phase.is_final:
            self.final.set()

    def attach(self, target: Target) -> None:
        self.target = target
        self.target_ready.set()


class Studio:
    """Accepts jobs from Discord, follows them through the pool, and delivers the results."""

    def __init__(
        self,
        client: discord.Client,
        settings: Settings,
        database: Database,
        pool: WorkerPool,
    ) -> None:
        self.client = client
        self.settings = settings
        self.database = database
        self.pool = pool
        self._trackers: dict[int, _Tracker] = {}
        self._prompts = PromptReader()
        self._delivering: set[int] = set()
        self._submitting = 0
        self._no_submits = asyncio.Event()
        self._no_submits.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._events = pool.subscribe()  # before the pool starts: no event is missed
        self._consumer: asyncio.Task[None] | None = None
        self.decodes = asyncio.Semaphore(MAX_CONCURRENT_DECODES)

    # ---- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the pool's events, and deliver what a previous run left undelivered."""
        self._consumer = asyncio.create_task(self._consume(), name="studio-events")
        self._spawn(self._deliver_leftovers(), "studio-leftovers")

    async def stop(self) -> None:
        self._events.close()
        tasks = [*self._tasks, *([self._consumer] if self._consumer else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- accepting work --------------------------------------------------------------------

    async def submit(
        self, request: GenerationRequest, owner: JobOwner, target: Target
    ) -> JobQueued:
        """Queue `request` and post its progress message through `target`.

        Raises `NotAllowedHere`, `Blocked` or `generation.scheduler.QueueFull` before anything
        is queued. Once the
        pool has accepted the job it is never lost: if the first reply fails, the job continues
        in the channel.
        """
        await self._check_place(owner)
        await self._check_prompt(owner.guild_id, request)
        self._submitting += 1
        self._no_submits.clear()
        try:
            queued = await self.pool.submit(request, owner)  # QueueFull: told as it is
        finally:
            self._submitting -= 1
            if not self._submitting:
                self._no_submits.set()
        tracker = self._tracker(queued.job_id)
        tracker.claimed = True
        tracker.request = request
        tracker.update(queued)
        try:
            await target.open(self._progress_message(tracker, show_preview=False))
        except discord.HTTPException:
            log.warning("Job %s: first reply failed; continuing in the channel", queued.job_id)
            target = self._channel_target(owner, target.user_id)
        tracker.attach(target)
        # Not before the reply: Discord wants one within 3 s, and the first use of a model loads
        # its tokenizer. The progress message shows the notes with its next edit.
        self._spawn(self._add_notes(tracker, request), f"job-{queued.job_id}-notes")
        return queued

    async def _add_notes(self, tracker: _Tracker, request: GenerationRequest) -> None:
        """Where the prompt will be cut, what is done to the init image (found off the event
        loop), for the progress message."""
        cut = negative_cut = None
        if request.model in self.settings.catalogue:
            spec = self.settings.catalogue[request.model]
            cut = await asyncio.to_thread(
                self._prompts.cut, spec, request.prompt, request.prompt_encoder
            )
            if request.negative_prompt:
                negative = request.negative_prompt
                negative_cut = await asyncio.to_thread(
                    self._prompts.cut, spec, negative, request.prompt_encoder
                )
        notes = tuple(request_notes(request, cut, negative_cut))
        if notes:
            tracker.notes = notes
            tracker.changed.set()

    async def precheck(self, owner: JobOwner, *texts: str | None) -> None:
        """The checks of `submit` that need no request, for work done before it (downloading and
        decoding an attachment): `NotAllowedHere`, `Blocked` for `texts`, `QueueFull`."""
        await self._check_place(owner)
        await self.check_text(owner.guild_id, *(text for text in texts if text))
        self.pool.check_admission(owner)

    async def job(self, job_id: int, *, init_image: bool = True) -> JobRecord:
        """The job with this id (its init image's bytes only with `init_image`); `NotFound`
        when it does not exist or was deleted."""
        stored = await self.database.get_job(job_id, init_image=init_image)
        if stored is None or stored.deleted:
            raise NotFound(f"There is no job `{job_id}` (it may have been deleted).")
        return stored.record

    async def image(self, record: JobRecord, index: int) -> bytes:
        """The PNG of image `index` (0-based) of a finished job."""
        if record.status is not JobStatus.DONE:
            raise NotFound(f"Job `{record.id}` has no images (it is {record.status.value}).")
        if not 0 <= index < record.request.count:
            raise NotFound(f"Job `{record.id}` has no image {index + 1}.")
        png = await self.database.read_image(record.id, index)
        if png is None:
            raise NotFound(
                f"Image {index + 1} of job `{record.id}` is no longer stored; "
                "🔁 rerun can make it again."
            )
        return png

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
        # only a rerun or a reroll starts from the job's own init image
        record = await self.job(job_id, init_image=action in (Action.RERUN, Action.REROLL))
        if action in (Action.INFO, Action.SEND_DM):
            await target.reply_private(Message(embed=parameters_embed(record)))
            return
        if action is Action.DELETE:
            await self.delete(record, actor, message)
            await target.reply_private(Message(content=f"🗑️ Deleted job `{job_id}`."))
            return
        request = await self._derive(action, record, index)
        await self.submit(request, standing.owner(guild_id, channel_id), target)

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
        if action in derived.IMAGE_ACTIONS:
            image = await self.image(record, index)
        return derived.derive(
            self.settings.catalogue, action, record.request, record.id, image, index
        )

    async def allowed_channels(self, guild_id: int | None) -> set[int]:
        """The channels that take jobs: the configuration's and those admins allowed in this
        server (`/admin channels`); empty means every channel."""
        allowed = set(self.settings.allowed_channel_ids)
        if guild_id is not None:
            allowed |= set(await self.database.allowed_channels(guild_id))
        return allowed

    async def _check_place(self, owner: JobOwner) -> None:
        channel = owner.channel_id
        if channel is None:
            return
        if owner.guild_id is None:
            require_place(self.settings, None)  # a DM: no server's channels apply
            return
        allowed = await self.allowed_channels(owner.guild_id)
        if allowed and channel not in allowed:
            places = ", ".join(f"<#{c}>" for c in sorted(allowed))
            raise NotAllowedHere(f"I only make images in {places}.")

    async def _check_prompt(self, guild_id: int | None, request: GenerationRequest) -> None:
        await self.check_text(guild_id, request.prompt, request.negative_prompt)

    async def check_text(
        self, guild_id: int | None, *texts: str, what: str = "Your prompt"
    ) -> None:
        """Raise `Blocked` when one of `texts` (a prompt, a negative prompt, a personal default)
        contains a blocked term: the server's, or in a DM (`guild_id` None) the installation's
        `dm_blocklist`."""
        if guild_id is None:
            terms, whose = list(self.settings.dm_blocklist), "this bot"
        else:
            terms, whose = await self.database.blocklist(guild_id), "this server"
        if first_blocked_term(terms, *texts):
            raise Blocked(f"{what} contains a term {whose} has blocked.")

    # ---- following jobs --------------------------------------------------------------------

    async def _consume(self) -> None:
        async for event in self._events:
            tracker = self._trackers.get(event.job_id) or self._adopt(event.job_id)
            tracker.update(event)

    def _tracker(self, job_id: int) -> _Tracker:
        tracker = self._trackers.get(job_id)
        if tracker is None:
            tracker = self._trackers[job_id] = _Tracker(job_id, ProgressState(job_id))
            self._spawn(self._follow(tracker), f"job-{job_id}")
        return tracker

    def _adopt(self, job_id: int) -> _Tracker:
        """A job this process did not submit (yet): unless a submit claims it, use its channel."""
        tracker = self._tracker(job_id)
        self._spawn(self._resolve_orphan(tracker), f"job-{job_id}-orphan")
        return tracker

    async def _resolve_orphan(self, tracker: _Tracker) -> None:
        await self._no_submits.wait()
        if tracker.claimed:
            return
        tracker.claimed = True
        stored = await self.database.get_job(tracker.job_id, init_image=False)
        if stored is None or stored.record.owner.channel_id is None:
            self._trackers.pop(tracker.job_id, None)
            return  # not a Discord job (say, the CLI's): nothing to show
        tracker.request = stored.record.request
        tracker.attach(await self._resumed_target(stored.record))

    async def _follow(self, tracker: _Tracker) -> None:
        interval = self.settings.progress.edit_interval_s
        preview_interval = self.settings.progress.preview_interval_s
        await tracker.target_ready.wait()
        target = tracker.target
        assert target is not None
        await self._remember_progress(tracker, target)
        last_edit = last_preview = float("-inf")
        shown = tracker.state
        shown_notes: tuple[str, ...] = ()  # the first reply goes out before the notes are known
        preview_shown = False
        while not tracker.final.is_set():
            await self._next_change(tracker)
            delay = last_edit + interval - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(tracker.final.wait(), delay)
            if tracker.final.is_set():
                break
            tracker.changed.clear()
            state = tracker.state
            if state == shown and tracker.notes == shown_notes:
                continue
            new_preview = (
                state.preview is not None
                and state.preview is not shown.preview
                and time.monotonic() - last_preview >= preview_interval
            )
            message = self._progress_message(
                tracker, show_preview=preview_shown or new_preview, attach_preview=new_preview
            )
            try:
                await target.edit(message)
            except discord.HTTPException as error:
                log.warning("Job %s: progress edit failed (%s)", tracker.job_id, error)
            await self._remember_progress(tracker, target)
            last_edit = time.monotonic()
            shown, shown_notes = state, tracker.notes
            if new_preview:
                preview_shown, last_preview = True, last_edit
        self._trackers.pop(tracker.job_id, None)
        await self._deliver(tracker.job_id, target)

    async def _remember_progress(self, tracker: _Tracker, target: Target) -> None:
        """Record the job's progress message (each new one once): after a restart, the job
        picks it up again instead of leaving it stale (see `_resumed_target`)."""
        message_id = target.progress_message_id
        if message_id is None or message_id == tracker.recorded_message:
            return
        tracker.recorded_message = message_id
        try:
            await self.database.record_message(tracker.job_id, message_id, target.channel_id)
        except StorageError as error:
            log.warning("Job %s: progress message not recorded (%s)", tracker.job_id, error)

    async def _next_change(self, tracker: _Tracker) -> None:
        """Wait for the job's next event; while it waits near the front of the queue, look its
        position up every `queue_refresh_s` (the pool announces a position only once)."""
        refresh = self.settings.progress.queue_refresh_s
        while True:
            waiting = tracker.state.phase is Phase.QUEUED
            try:
                await asyncio.wait_for(tracker.changed.wait(), refresh if waiting else None)
                return
            except TimeoutError:
                position = self.pool.position(tracker.job_id) or tracker.state.position
                if position != tracker.state.position and position <= REFRESHED_POSITIONS:
                    eta = self.pool.eta(tracker.job_id) or 0.0
                    tracker.update(JobQueued(tracker.job_id, position, eta))

    def _progress_message(
        self, tracker: _Tracker, *, show_preview: bool, attach_preview: bool = False
    ) -> Message:
        state = tracker.state
        uploads = None
        if attach_preview and state.preview is not None:
            uploads = (Upload(PREVIEW_FILENAME, state.preview),)
        return Message(
            embed=progress_embed(
                state, tracker.request, show_preview=show_preview, notes=tracker.notes
            ),
            uploads=uploads,
        )

    # ---- delivering results ----------------------------------------------------------------

    async def _deliver(
        self, job_id: int, target: Target, attempt: int = 0, sent: Posted = ()
    ) -> None:
        """Post the result (or failure); on a Discord error, retry later past the parts `sent`."""
        if job_id in self._delivering and attempt == 0:
            return
        self._delivering.add(job_id)
        stored = await self.database.get_job(job_id)  # the init image's shape is in the notes
        if stored is None or stored.deleted or stored.delivered_at is not None:
            self._delivering.discard(job_id)
            return
        try:
            messages = await self.result_messages(stored.record, target.upload_limit)
            for message in messages[len(sent) :]:
                post = target.deliver_more if sent else target.deliver
                sent = (*sent, await post(message))
        except discord.HTTPException as error:
            if 400 <= error.status < 500 and error.status != 429:
                log.error(
                    "Job %s: Discord refused the result (%s); it stays undelivered until the "
                    "next start",
                    job_id,
                    error,
                )
                self._delivering.discard(job_id)
                return
            delay = REDELIVERY_DELAYS_S[min(attempt, len(REDELIVERY_DELAYS_S) - 1)]
            log.warning("Job %s: delivery failed (%s); retrying in %.0f s", job_id, error, delay)
            retry = self._redeliver(job_id, target, attempt + 1, delay, sent)
            self._spawn(retry, f"redeliver-{job_id}")
            return
        await self.record_result(stored.record, sent, stored.record.owner.channel_id)
        await self.database.mark_delivered(job_id)
        self._delivering.discard(job_id)

    async def _redeliver(
        self, job_id: int, target: Target, attempt: int, delay: float, sent: Posted
    ) -> None:
        await asyncio.sleep(delay)
        await self._deliver(job_id, target, attempt, sent)

    async def result_messages(self, record: JobRecord, limit: int) -> list[Message]:
        """What shows a finished job: its images (each under `limit` bytes, in as many messages
        as 25 MiB per request needs) with the result buttons, or why it failed or was cancelled."""
        if record.status is not JobStatus.DONE:
            phase = Phase.FAILED if record.status is JobStatus.FAILED else Phase.CANCELLED
            state = ProgressState(record.id, phase=phase, reason=record.error)
            return [Message(content=failure_content(record, state), uploads=())]
        uploads = []
        for index in range(record.request.count):
            png = await self.image(record, index)
            uploads.append(fit_upload(f"atelier-{record.id}-{index + 1}", png, limit))
        note = limit_note(uploads, limit)
        parent = None
        if record.request.parent_job is not None:
            stored = await self.database.get_job(record.request.parent_job, init_image=False)
            parent = stored.record if stored is not None else None
        notes = [*result_notes(record, parent), *([note] if note else [])]
        actions = derived.offered_actions(
            self.settings.catalogue, record.request, self.pool.may_run
        )
        return result_messages(record, uploads, notes, actions)

    async def record_result(self, record: JobRecord, sent: Posted, channel_id: int | None) -> None:
        """Record the messages showing `record` (for reactions) and which holds which image."""
        index = 0
        for message in sent:
            await self.database.record_message(record.id, message.id, channel_id)
            for attachment in message.attachments:
                await self.database.set_image_attachment(
                    record.id, index, message.id, attachment.id
                )
                index += 1

    async def _deliver_leftovers(self) -> None:
        """Results a previous run finished but could not post (or was killed before posting)."""
        await self.client.wait_until_ready()
        for record in await self.database.undelivered_jobs():
            if record.status.is_final and record.owner.channel_id is not None:
                await self._deliver(record.id, await self._resumed_target(record))

    async def _resumed_target(self, record: JobRecord) -> ChannelTarget:
        """Where a job of an earlier run goes on: its channel, with the last message recorded
        for it (the progress message left behind) edited as the job moves and removed once
        the result is posted, so no stale "running 3/4" stays in the channel."""
        messages = await self.database.messages_of(record.id)
        last = messages[-1].message_id if messages else None
        return self._channel_target(record.owner, progress_message_id=last)

    def _channel_target(
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

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Studio task %s failed", task.get_name(), exc_info=task.exception())
