"""`HostedBackend`: one job on Black Forest Labs' API, end to end, resumable after a restart.

For each image (one task per seed, at most `slots` active at BFL at once): store that its submit
is under way, submit (waiting out 429 "too many active tasks" and retrying 5xx with backoff),
store the task (`id`, `polling_url`, `cost`) through the `TaskStore` before waiting, poll the
returned `polling_url` with backoff, download the sample at once on Ready and turn it into a PNG
with Atelier's metadata. A job whose tasks are stored resumes polling them instead of submitting
again. A submit whose reply was lost (the connection broke after sending, or the process stopped
while it was under way) is never sent again: BFL may have made and charged it, so the image
ends UNCONFIRMED at its estimated cost. The interface the pool drives::

    result = await backend.run(job_id, request, on_progress, slots=4)   # -> HostedResult
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from generation.hosted.catalogue import HOSTED_MODELS, HostedModel
from generation.hosted.client import ApiError, BflClient, SampleGone
from generation.hosted.credits import CreditGate
from generation.hosted.outcomes import (
    FOR_ADMINS,
    SENTENCES,
    Outcome,
    for_http_status,
    for_status,
    missing_note,
)
from generation.hosted.payload import request_body
from generation.hosted.samples import stored_image
from generation.hosted.settings import URL_VARIABLE, ApiSettings
from generation.hosted.tasks import HostedTask, TaskStore
from generation.input_images import UnusableImage
from generation.jobs import GeneratedImage
from generation.request import GenerationRequest

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HostedProgress:
    """`state`: "waiting" (for a free task slot), "retrying" (the API did not answer: `detail`
    says why and for how long), "submitted", "pending" (with `progress` 0-1 where the API
    gives it) or "downloading"."""

    index: int
    state: str
    progress: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class HostedResult:
    """`outcome` is READY when any image was made, `images` holding those (their `index` is
    their place in the request) and `reason`, where some were not made, the sentence saying
    which and why (`outcomes.missing_note`); otherwise the first image's outcome, with `reason`
    for the person (the missing note where the images ended differently). `cost`: the credits
    charged (the replies' `cost`, moderated tasks included: BFL charges a task once it accepts
    it); `admin_note` one line per kind of end the admins must act on, from any image."""

    outcome: Outcome
    images: tuple[GeneratedImage, ...]
    cost: float
    reason: str | None = None
    admin_note: str | None = None


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds. Polls start at `poll_first` and grow by `growth` to `poll_max` (BFL's client
    polls every 0.5 s; many concurrent jobs call for 1-2 s). Retries of 429/5xx start at
    `retry_first` and grow to `retry_max`; 5xx and lost connections are retried for `patience`
    in all, 429 for as long as it takes (a slot always frees). A task still Pending
    `max_pending` after it was submitted (by the stored `submitted_at`, so across restarts) ends
    TIMED_OUT: BFL's tasks finish within a minute or two, so one pending for half an hour is
    stuck."""

    poll_first: float = 0.5
    poll_max: float = 2.0
    retry_first: float = 1.0
    retry_max: float = 30.0
    growth: float = 1.5
    patience: float = 900.0
    max_pending: float = 1800.0


ProgressCallback = Callable[[HostedProgress], Awaitable[None] | None]
_ImageEnd = tuple["_Ended", GeneratedImage | None, float]  # an image's end, image, credits


class _Ended(Exception):
    """A task's end; `maybe_charged`: BFL may have made (and charged) it though Atelier has no
    usable reply (it counts at its estimate)."""

    def __init__(self, outcome: Outcome, detail: str = "", *, maybe_charged: bool = False) -> None:
        self.outcome = outcome
        self.detail = detail
        self.maybe_charged = maybe_charged


class HostedBackend:
    """Runs API jobs with one key. Owns the HTTP session and the key's `CreditGate`."""

    def __init__(
        self,
        settings: ApiSettings,
        store: TaskStore,
        *,
        timing: Timing | None = None,
        models: tuple[HostedModel, ...] = HOSTED_MODELS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._store = store
        self._timing = timing or Timing()
        self._models = {model.name: model for model in models}
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        self.gate = CreditGate()

    def _client(self) -> BflClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))
        return BflClient(self._settings, self._session)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def probe(self) -> bool:
        """Ask the API for the credits left; resume API jobs when they pay for the cheapest
        image any model makes. True when API jobs may run."""
        try:
            left = await self._client().credits()
        except ApiError as error:
            log.info("credit probe: no answer (HTTP %s)", error.status)
            return not self.gate.paused
        cheapest = min(m.price.per_image or m.price.first_mp for m in self._models.values())
        if left >= cheapest:
            self.gate.resume()
        return not self.gate.paused

    async def run(
        self,
        job_id: int,
        request: GenerationRequest,
        on_progress: ProgressCallback | None = None,
        tasks: TaskStore | None = None,
        *,
        slots: int | None = None,
    ) -> HostedResult:
        """Make every image of `request`, with at most `slots` (default: all) of its tasks
        active at BFL at once; tasks already stored for `job_id` are polled again, not
        resubmitted. `tasks`: where the job's tasks are read and stored (default: the
        backend's `TaskStore`; the pool passes one that retries while the store is
        unavailable). Never raises for anything the API does; a store error is raised."""
        model = self._models[request.model]
        store = self._store if tasks is None else tasks
        active = asyncio.Semaphore(slots or request.count)
        stored = {task.index: task for task in await store.hosted_tasks(job_id)}
        if self.gate.paused and len(stored) < request.count:
            return HostedResult(Outcome.NO_CREDITS, (), 0.0, SENTENCES[Outcome.NO_CREDITS])

        async def report(progress: HostedProgress) -> None:
            if on_progress is not None:
                done = on_progress(progress)
                if done is not None:
                    await done

        ends = await _all_to_the_end(
            [
                self._image(job_id, model, request, index, stored.get(index), report, store, active)
                for index in range(request.count)
            ]
        )
        images = tuple(image for _, image, _ in ends if image is not None)
        cost = sum(cost for _, _, cost in ends)
        failed = {
            i: end.outcome for i, (end, _, _) in enumerate(ends) if end.outcome is not Outcome.READY
        }
        if not failed:
            return HostedResult(Outcome.READY, images, cost)
        first = next(iter(failed.values()))
        admin_note = self._admin_notes(job_id, [end for end, _, _ in ends])
        if images or len(set(failed.values())) > 1:  # what became of each image, by kind
            outcome = Outcome.READY if images else first
            reason = missing_note(failed, request.count)
            return HostedResult(outcome, images, cost, reason, admin_note)
        return HostedResult(first, images, cost, SENTENCES[first], admin_note)

    def _admin_notes(self, job_id: int, ends: list[_Ended]) -> str | None:
        """One sentence per kind of end the admins must hear of, whichever images had them
        (a job's images may end differently: one moderated, the next refused for credits)."""
        notes = []
        for outcome in dict.fromkeys(end.outcome for end in ends if end.outcome in FOR_ADMINS):
            detail = next((end.detail for end in ends if end.outcome is outcome and end.detail), "")
            note = self._admin_note(outcome, job_id, detail)
            if note:
                notes.append(note)
        return "\n".join(notes) or None

    def _admin_note(self, outcome: Outcome, job_id: int, detail: str) -> str | None:
        log.warning("BFL API job %s ended %s: %s", job_id, outcome.value, detail)
        if outcome is Outcome.NO_CREDITS:
            return detail or None  # set once, by the task that paused the gate
        if outcome is Outcome.KEY_REFUSED:
            return "Black Forest Labs' API refused the key (BFL_API_KEY): check it."
        return f"Job {job_id} on the BFL API ended with {outcome.value}: {detail}"

    async def _image(
        self,
        job_id: int,
        model: HostedModel,
        request: GenerationRequest,
        index: int,
        task: HostedTask | None,
        report: Callable[[HostedProgress], Awaitable[None]],
        store: TaskStore,
        active: asyncio.Semaphore,
    ) -> _ImageEnd:
        cost = 0.0
        estimate = model.estimate(request) / request.count
        try:
            async with active:  # the task is active at BFL from its submit until it ends
                if task is not None and task.sending:  # stopped while it was being sent
                    cost = estimate
                    raise _Ended(Outcome.UNCONFIRMED, f"image {index + 1}: stopped while sent")
                if task is None:
                    try:
                        task = await self._submit(job_id, model, request, index, report, store)
                    except _Ended as end:
                        cost = estimate if end.maybe_charged else 0.0
                        raise
                cost = model.charged(request, task.cost)
                sample = await self._until_ready(task, report)
            await report(HostedProgress(index, "downloading"))
            try:
                data = await self._retrying(lambda: self._client().download(sample), index, report)
            except SampleGone:
                raise _Ended(Outcome.EXPIRED) from None
            try:
                image = await asyncio.to_thread(
                    stored_image, data, request, index, exact_size=not model.sized_by_aspect
                )
            except UnusableImage as error:
                raise _Ended(Outcome.BAD_REPLY, f"sample: {error.message}") from None
        except _Ended as end:
            return end, None, cost
        return _Ended(Outcome.READY), image, cost

    async def _submit(
        self,
        job_id: int,
        model: HostedModel,
        request: GenerationRequest,
        index: int,
        report: Callable[[HostedProgress], Awaitable[None]],
        store: TaskStore,
    ) -> HostedTask:
        if self.gate.paused:
            raise _Ended(Outcome.NO_CREDITS)
        body = request_body(model, request, index)

        async def send_and_keep() -> HostedTask:
            await _announce(store, job_id, HostedTask.being_sent(index, self._clock()))
            # BFL charges a task once it accepts it: a cancel (or a shutdown) while a submit is
            # on its way waits for the reply and stores it, so the task is charged (and polled
            # after a restart), never lost.
            return await _to_the_end(post_and_keep())

        async def post_and_keep() -> HostedTask:
            try:
                reply = await self._client().submit(model.name, body)
            except ApiError as error:  # the record stays where the task may have been made
                if error.status == 0 and error.sent:  # the reply was lost: never resent
                    detail = f"submit: {error.detail}"
                    raise _Ended(Outcome.UNCONFIRMED, detail, maybe_charged=True) from None
                if error.status == 200:  # accepted, but the reply is unusable
                    detail = f"submit: {error.detail}"
                    raise _Ended(Outcome.BAD_REPLY, detail, maybe_charged=True) from None
                await store.forget_hosted_task(job_id, index)  # an error: no task made
                raise
            task = HostedTask(
                index=index,
                task_id=reply.id,
                polling_url=reply.polling_url,
                cost=reply.cost,
                input_mp=reply.input_mp,
                output_mp=reply.output_mp,
                submitted_at=self._clock(),
            )
            await store.save_hosted_task(job_id, task)
            return task

        try:
            task = await self._retrying(send_and_keep, index, report)
        except _Ended as end:
            if end.outcome is Outcome.NOT_FOUND:  # no such endpoint: a fault here
                detail = f"{end.detail} (no such endpoint: check {URL_VARIABLE})"
                raise _Ended(Outcome.REFUSED, detail) from None
            raise
        await report(HostedProgress(index, "submitted"))
        return task

    async def _until_ready(
        self, task: HostedTask, report: Callable[[HostedProgress], Awaitable[None]]
    ) -> str:
        """The sample URL once the task is Ready; raises `_Ended` for any other end."""
        delay = self._timing.poll_first
        while True:
            polled = await self._retrying(
                lambda: self._client().poll(task.polling_url), task.index, report
            )
            if polled.status == "Ready":
                if polled.sample is None:
                    raise _Ended(Outcome.BAD_REPLY, "Ready without result.sample")
                return polled.sample
            ended = for_status(polled.status)
            if ended is not None:
                raise _Ended(ended, polled.status)
            if self._clock() - task.submitted_at > self._timing.max_pending:
                raise _Ended(Outcome.TIMED_OUT, f"task {task.task_id} still Pending")
            await report(HostedProgress(task.index, "pending", polled.progress))
            await asyncio.sleep(delay)
            delay = min(delay * self._timing.growth, self._timing.poll_max)

    def _out_of_credits(self) -> str:
        """Pause the gate; the admins' sentence from the first task that paused it, else ""."""
        if not self.gate.pause():
            return ""
        return (
            "Black Forest Labs' account is out of credits (HTTP 402): API jobs are refused "
            "until an admin resumes them or a probe finds credits."
        )

    async def _retrying(
        self,
        call: Callable[[], Awaitable[Any]],
        index: int,
        report: Callable[[HostedProgress], Awaitable[None]],
    ) -> Any:
        """`call()`, waiting out 429 and retrying 5xx / no connection with backoff (5xx for
        `patience` seconds at most); any other error ends the task with its outcome."""
        timing = self._timing
        delay, waited_on_faults = timing.retry_first, 0.0
        while True:
            try:
                return await call()
            except ApiError as error:
                outcome = for_http_status(error.status) if error.status else None
                if outcome is Outcome.NO_CREDITS:  # on submit or poll alike
                    raise _Ended(outcome, self._out_of_credits()) from None
                if outcome is not None:
                    raise _Ended(outcome, f"HTTP {error.status}: {error.detail}") from None
                if error.status == 429:
                    await report(HostedProgress(index, "waiting"))
                else:
                    if waited_on_faults >= timing.patience:
                        raise _Ended(Outcome.UNAVAILABLE, error.detail) from None
                    left = (timing.patience - waited_on_faults) / 60
                    waited_on_faults += delay
                    why = f"HTTP {error.status}" if error.status else error.detail
                    detail = f"no answer from the API ({why}); trying again for {left:.0f} min"
                    await report(HostedProgress(index, "retrying", detail=detail))
                await asyncio.sleep(delay)
                delay = min(delay * timing.growth * 2, timing.retry_max)


async def _announce(store: TaskStore, job_id: int, sending: HostedTask) -> None:
    """Store that `sending`'s submit is under way. A cancel meanwhile (the store may be
    refusing writes and this call retrying) stops it before anything is sent: the record, where
    it was written, is dropped, so the image is neither sent, charged nor UNCONFIRMED."""
    try:
        await store.save_hosted_task(job_id, sending)
    except asyncio.CancelledError:
        await store.forget_hosted_task(job_id, sending.index)
        raise


async def _to_the_end(coroutine: Awaitable[HostedTask]) -> HostedTask:
    """Await `coroutine` even when cancelled meanwhile; then the cancel goes on (raised)."""
    running = asyncio.ensure_future(coroutine)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():
            try:
                await asyncio.shield(running)
            except asyncio.CancelledError:
                continue
            except Exception:  # the cancel is what the caller hears
                break
        raise


async def _all_to_the_end(images: list[Awaitable[_ImageEnd]]) -> list[_ImageEnd]:
    """Run a job's images together and return their ends in order. On a cancel (or one
    raising), the others are cancelled and every one is awaited before the cancel (or the
    error) goes on: an image whose submit is on its way stores BFL's reply first
    (`_to_the_end`), so no image BFL made and charged is lost to its job's sibling ending
    sooner (`asyncio.gather` would return at the first cancelled one)."""
    running = [asyncio.ensure_future(image) for image in images]
    try:
        return list(await asyncio.gather(*running))
    except BaseException:
        for task in running:
            task.cancel()
        while not all(task.done() for task in running):
            try:
                await asyncio.wait(running)  # a cancel of the wait leaves them running
            except asyncio.CancelledError:
                continue
        for task in running:  # retrieved, so none is logged as never retrieved
            if not task.cancelled():
                task.exception()
        raise
