"""The studio between Discord and the engine: the gatekeeper (who may ask for what, where) and
the courier (progress, then delivery by `bot.courier.Courier`).

`Studio.submit` checks who asks and where, hands the request to the worker pool (which makes it
durable) with its reply target, and posts the job's one progress message. A single task consumes
the pool's events and hands each event's job snapshot to one `_Tracker` per job (which keeps the
latest, rendered, and folds nothing), which edits that message at most every
`edit_interval_s` (a preview at most every `preview_interval_s`, a new place in the queue at most
every `queue_refresh_s`) and finally hands it to the courier. A job's first event carries its
submitter's target, so no job is guessed to be an orphan; a job taken back after a restart (even a
SIGKILL) is followed in its channel, editing the progress message storage recorded for it.
Live state is the pool's (`WorkerPool.job`); history is storage's. What a finished job's buttons,
reactions and `/edit` ask of it is `bot.result_actions.ResultActions`, a part of the studio.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import discord

from bot.attachments import Upload
from bot.blocklist import first_blocked_term
from bot.config import Settings
from bot.courier import REDELIVERY_DELAYS_S, Courier
from bot.errors import Blocked, NotAllowedHere, NotFound, UserError
from bot.finals import Finals
from bot.permissions import require_place
from bot.result_actions import ResultActions
from bot.targets import UNREACHABLE, Message, Target
from bot.ui.embeds import PREVIEW_FILENAME, progress_embed
from bot.ui.notes import request_notes
from bot.ui.progress import Phase, ProgressState
from generation.input_images import UnusableImage, canonical_png
from generation.jobs import JobEvent, JobOwner, JobQueued, JobRecord, JobStatus
from generation.loras import withdrawn_lora
from generation.prompts import PromptReader
from generation.request import GenerationRequest
from storage import Database, StorageError

if TYPE_CHECKING:
    from generation.pool import WorkerPool

log = logging.getLogger(__name__)

MAX_CONCURRENT_DECODES = 2  # uploaded images decoded at once (each up to ~0.45 GB: input_images)


@dataclass(eq=False)
class _Tracker:
    """One job being followed: its latest state and where its messages go."""

    job_id: int
    state: ProgressState
    request: GenerationRequest | None = None
    target: Target | None = None
    recorded_message: int | None = None  # the progress message storage knows of
    opened: ProgressState | None = None  # what the first message showed, when this run sent it
    notes: tuple[str, ...] = ()  # how the job will be made, for the progress message
    target_ready: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    final: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_stalled: asyncio.Event = field(default_factory=asyncio.Event)  # the store refuses it
    owner_id: int | None = None

    def update(self, event: JobEvent) -> None:
        self.state = ProgressState.of(event.job)  # the pool's snapshot, as is
        self.owner_id = event.job.owner.user_id
        self.changed.set()
        if self.state.cancelling and self.state.problem:
            self.cancel_stalled.set()
        if self.state.phase.is_final:
            self.final.set()

    def attach(self, target: Target) -> None:
        self.target = target
        self.target_ready.set()


class Studio(ResultActions):
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
        self.courier = Courier(client, settings, database, pool.may_run, self.image, self._spawn)
        self._tasks: set[asyncio.Task[None]] = set()
        self._events = pool.subscribe()  # before the pool starts: no event is missed
        self._consumer: asyncio.Task[None] | None = None
        self.decodes = asyncio.Semaphore(MAX_CONCURRENT_DECODES)
        self.finals = Finals(database)

    # ---- life ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the pool's events, and deliver what a previous run left undelivered."""
        self._consumer = asyncio.create_task(self._consume(), name="studio-events")
        self._spawn(self.courier.deliver_leftovers(), "studio-leftovers")

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

        Raises `NotAllowedHere`, `Blocked` or `generation.pool.QueueFull` before anything
        is queued. Once the
        pool has accepted the job it is never lost: if the first reply fails, the job continues
        in the channel.
        """
        await self._check_place(owner)
        await self._check_prompt(owner.guild_id, request)
        await self._check_loras(request)
        # `reply_to`: the job's events say it is this submit's, so nobody else adopts it
        queued = await self.pool.submit(request, owner, reply_to=target)  # QueueFull: as is
        tracker = self._tracker(queued.job_id)
        tracker.request = request
        tracker.update(queued)
        tracker.opened = tracker.state  # the queue may move while the reply is on its way
        try:
            await target.open(self._progress_message(tracker, show_preview=False))
        except discord.HTTPException:
            log.warning("Job %s: first reply failed; continuing in the channel", queued.job_id)
            target = self.courier.channel_target(owner, target.user_id)
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

    async def precheck(
        self, owner: JobOwner, model: str, *texts: str | None, what: str = "Your prompt"
    ) -> None:
        """The checks of `submit` that need no request, for work done before it (downloading and
        decoding an attachment): `NotAllowedHere`, `Blocked` for `texts` (`what` they are, for
        the sentence), `QueueFull` (on the queue `model`'s jobs wait in: the GPUs' or the API's)."""
        await self._check_place(owner)
        await self.check_text(owner.guild_id, *(text for text in texts if text), what=what)
        self.pool.check_admission(owner, model)

    async def job(self, job_id: int, *, init_image: bool = True) -> JobRecord:
        """The job with this id (its init image's bytes only with `init_image`); `NotFound`
        when it does not exist or was deleted."""
        stored = await self.database.get_job(job_id, init_image=init_image)
        if stored is None or stored.deleted:
            raise NotFound(f"There is no job `{job_id}` (it may have been deleted).")
        return stored.record

    @staticmethod
    def check_image(record: JobRecord, index: int) -> None:
        """Raise `NotFound` where a job has no image `index` (0-based): not finished, or fewer
        images (whether the image is still stored is known only by reading it)."""
        if record.status is not JobStatus.DONE:
            raise NotFound(f"Job `{record.id}` has no images (it is {record.status.value}).")
        if not 0 <= index < record.request.count:
            raise NotFound(f"Job `{record.id}` has no image {index + 1}.")

    async def image(self, record: JobRecord, index: int) -> bytes:
        """The PNG of image `index` (0-based) of a finished job."""
        self.check_image(record, index)
        png = await self.database.read_image(record.id, index)
        if png is None and record.error:  # some images not made (an API job's, moderated)
            made = {image.index for image in await self.database.images_of(record.id)}
            if index not in made:
                raise NotFound(
                    f"Image {index + 1} of job `{record.id}` was never made, so there is "
                    f"nothing to use. {record.error}"
                )
        if png is None:
            raise NotFound(
                f"Image {index + 1} of job `{record.id}` is no longer stored; "
                "🔁 rerun can make it again."
            )
        return png

    async def reference_image(self, record: JobRecord, index: int) -> bytes:
        """Image `index` of a finished job in the canonical form of a reference image."""
        png = await self.image(record, index)
        try:
            async with self.decodes:
                return await asyncio.to_thread(canonical_png, png)
        except UnusableImage as error:  # a stored result is always usable; said, not raised
            raise UserError(f"Image {record.id}/{index + 1}: {error.message}") from None

    async def allowed_channels(self, guild_id: int | None) -> set[int]:
        """The channels that take jobs: the configuration's and those admins allowed in this
        server (`/admin channels`); empty means every channel."""
        allowed = set(self.settings.allowed_channel_ids)
        if guild_id is not None:
            allowed |= set(await self.database.allowed_channels(guild_id))
        return allowed

    async def _check_loras(self, request: GenerationRequest) -> None:
        """Refuse LoRAs disabled or removed since: a rerun, reroll, variation or upscale carries
        its parent's LoRAs past `/imagine`'s own check (`generation.loras.choose_loras`)."""
        if not request.loras:
            return
        disabled = await self.database.disabled_loras()
        problem = withdrawn_lora(self.settings.loras, request.loras, disabled)
        if problem:
            raise UserError(problem)

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
        # a draft's final job too (its negative prompt): its ✅ Final would be refused
        final = () if request.final is None else (request.final.negative_prompt,)
        await self.check_text(guild_id, request.prompt, request.negative_prompt, *final)

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

    async def cancel_stalled(self, *, job_id: int | None = None, user_id: int | None = None) -> str:
        """Wait until the store refuses to record a cancel of job `job_id`, or of any job of
        `user_id` (its progress shows "🚫 Cancelling…" and why); that sentence. Waits for ever
        where this run follows no such job (the CLI's) or the cancel is recorded at once."""
        trackers = [
            tracker
            for tracker in self._trackers.values()
            if tracker.job_id == job_id or (user_id is not None and tracker.owner_id == user_id)
        ]
        waits = [asyncio.ensure_future(t.cancel_stalled.wait()) for t in trackers]
        try:
            if not waits:
                await asyncio.Event().wait()
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return next(t.state.problem or "" for t in trackers if t.cancel_stalled.is_set())

    # ---- following jobs --------------------------------------------------------------------

    async def _consume(self) -> None:
        async for event in self._events:
            tracker = self._trackers.get(event.job_id)
            if tracker is None:
                tracker = self._tracker(event.job_id)
                if not (isinstance(event, JobQueued) and event.reply_to is not None):
                    # not submitted by this run (taken back after a restart, or the CLI's)
                    self._spawn(self._resume(tracker), f"job-{event.job_id}-resume")
            tracker.update(event)

    def _tracker(self, job_id: int) -> _Tracker:
        tracker = self._trackers.get(job_id)
        if tracker is None:
            tracker = self._trackers[job_id] = _Tracker(job_id, ProgressState(job_id))
            self._spawn(self._follow(tracker), f"job-{job_id}")
        return tracker

    async def _resume(self, tracker: _Tracker) -> None:
        """Follow a job this run did not submit in its channel, from its stored record (read
        again after `REDELIVERY_DELAYS_S` while the store cannot be read)."""
        for attempt in itertools.count():
            try:
                stored = await self.database.get_job(tracker.job_id, init_image=False)
                if stored is None or stored.record.owner.channel_id is None:
                    self._trackers.pop(tracker.job_id, None)
                    return  # not a Discord job (say, the CLI's): nothing to show
                target = await self.courier.resumed_target(stored.record)
                break
            except StorageError as error:
                delay = REDELIVERY_DELAYS_S[min(attempt, len(REDELIVERY_DELAYS_S) - 1)]
                log.warning("Job %s: not read (%s); again in %.0f s", tracker.job_id, error, delay)
                await asyncio.sleep(delay)
        tracker.request = stored.record.request
        tracker.attach(target)

    async def _follow(self, tracker: _Tracker) -> None:
        preview_interval = self.settings.progress.preview_interval_s
        await tracker.target_ready.wait()
        target = tracker.target
        assert target is not None
        await self._remember_progress(tracker, target)
        last_edit = last_preview = float("-inf")
        shown = tracker.opened or tracker.state
        shown_notes: tuple[str, ...] = ()  # the first reply goes out before the notes are known
        preview_shown = False
        while not tracker.final.is_set():
            await tracker.changed.wait()
            await self._pace(tracker, shown, last_edit)
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
            except (discord.HTTPException, *UNREACHABLE) as error:
                log.warning("Job %s: progress edit failed (%r)", tracker.job_id, error)
            await self._remember_progress(tracker, target)
            last_edit = time.monotonic()
            shown, shown_notes = state, tracker.notes
            if new_preview:
                preview_shown, last_preview = True, last_edit
        self._trackers.pop(tracker.job_id, None)
        await self.courier.deliver(tracker.job_id, target)

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

    async def _pace(self, tracker: _Tracker, shown: ProgressState, last_edit: float) -> None:
        """Wait until the next edit is due: `edit_interval_s` after the last one, or
        `queue_refresh_s` while the job still waits (the pool pushes every move of the first
        places; one edit per waiting job per move would run into Discord's rate limits)."""
        progress = self.settings.progress
        while not tracker.final.is_set():
            waiting = tracker.state.phase is Phase.QUEUED and shown.phase is Phase.QUEUED
            interval = max(progress.edit_interval_s, progress.queue_refresh_s if waiting else 0)
            delay = last_edit + interval - time.monotonic()
            if delay <= 0:
                return
            tracker.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tracker.changed.wait(), delay)

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

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Studio task %s failed", task.get_name(), exc_info=task.exception())
