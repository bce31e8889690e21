"""The job lifecycle (`generation.jobs.JobStore`): queued → running → done | failed | cancelled.

Every method commits before it returns. A final state is final: nothing leaves done, failed or
cancelled. `requeue` is the one way back (running → queued), for a job whose worker died.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

import aiosqlite

from generation.jobs import GeneratedImage, JobOwner, JobRecord, JobStatus
from generation.request import GenerationRequest
from storage.errors import InvalidTransition, InvalidValue, StorageUnavailable, UnknownJob
from storage.images import sha256_of
from storage.store import UNFINISHED, Store

# target status → the statuses it may be reached from
_ALLOWED_FROM: dict[JobStatus, tuple[JobStatus, ...]] = {
    JobStatus.RUNNING: (JobStatus.QUEUED,),
    JobStatus.QUEUED: (JobStatus.RUNNING,),
    JobStatus.DONE: (JobStatus.RUNNING,),
    JobStatus.FAILED: (JobStatus.QUEUED, JobStatus.RUNNING),
    JobStatus.CANCELLED: (JobStatus.QUEUED, JobStatus.RUNNING),
}

_INSERT_JOB = """
INSERT INTO jobs (user_id, guild_id, channel_id, priority, weight, max_queued, max_running,
                  model, kind, parent_job, request, init_image, status, queued_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)
"""


class JobLifecycle(Store):
    async def create_job(self, request: GenerationRequest, owner: JobOwner) -> int:
        """Queue a job; its id once it is durable."""
        if request.init_image is None and not request.input_images:  # one statement: fast
            with _parent_must_exist():
                rows = await self._write_one(
                    f"{_INSERT_JOB} RETURNING id", _job_row(request, owner, None, self._clock())
                )
            return rows[0][0]
        (job_id,) = await self.create_jobs([(request, owner)])
        return job_id

    async def create_jobs(self, jobs: Sequence[tuple[GenerationRequest, JobOwner]]) -> list[int]:
        """Queue several jobs in one transaction (one disk flush); their ids, in order."""
        now = self._clock()
        init_images: dict[str, bytes] = {}  # every input image, once: init images and references
        rows = []
        references = []  # per job: its references' hashes, in order
        for request, owner in jobs:
            init_sha = None
            if request.init_image is not None:
                init_sha = sha256_of(request.init_image)
                init_images[init_sha] = request.init_image
            hashes = [sha256_of(image) for image in request.input_images]
            init_images |= zip(hashes, request.input_images, strict=True)
            references.append(hashes)
            rows.append(_job_row(request, owner, init_sha, now))
        if not rows:
            return []
        with _parent_must_exist():
            return await self._insert_jobs(rows, init_images, references)

    async def _insert_jobs(
        self,
        rows: list[tuple[object, ...]],
        init_images: dict[str, bytes],
        references: list[list[str]],
    ) -> list[int]:
        async with self._transaction() as conn:
            await conn.executemany(
                "INSERT OR IGNORE INTO init_images (sha256, data) VALUES (?, ?)",
                init_images.items(),
            )
            await conn.executemany(_INSERT_JOB, rows)
            (last,) = (await conn.execute_fetchall("SELECT last_insert_rowid()"))[0]
            # One transaction holding the write lock: AUTOINCREMENT ids are consecutive.
            ids = list(range(last - len(rows) + 1, last + 1))
            await conn.executemany(
                "INSERT INTO job_references (job_id, position, sha256) VALUES (?, ?, ?)",
                [
                    (job_id, position, sha)
                    for job_id, hashes in zip(ids, references, strict=True)
                    for position, sha in enumerate(hashes)
                ],
            )
        return ids

    async def mark_running(self, job_id: int, worker: str) -> None:
        await self._change_status(
            job_id, JobStatus.RUNNING, "started_at = ?, worker = ?", (self._clock(), worker)
        )

    async def mark_done(
        self,
        job_id: int,
        images: Sequence[GeneratedImage],
        gpu_seconds: float,
        missing: str | None = None,
    ) -> None:
        """running → done. The image files are complete on disk before their rows commit.
        `missing`: for a job that made fewer images than it asked for (an API job with some
        blocked by moderation), why; kept as the job's `error`. Each image keeps its `index`."""
        indices = [image.index for image in images]
        if not images or len(set(indices)) != len(indices) or min(indices) < 0:
            raise InvalidValue(f"Job #{job_id} needs one or more images with distinct indices.")
        hashes = await asyncio.to_thread(self._write_files, images)  # StorageUnavailable
        now = self._clock()
        async with self._transaction() as conn:
            facts = images[0].facts
            await _transition(
                conn,
                job_id,
                JobStatus.DONE,
                "finished_at = ?, gpu_seconds = ?, run_facts = ?, memory_profile = ?, error = ?",
                (
                    now,
                    gpu_seconds,
                    json.dumps(facts.to_dict()) if facts else None,
                    facts.profile if facts else "full",
                    missing,
                ),
            )
            # Under the write lock: a shared file released meanwhile is written again.
            await asyncio.to_thread(self._write_files, images, hashes)
            await conn.executemany(
                "INSERT INTO images (job_id, idx, seed, sha256, width, height, bytes, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (job_id, im.index, im.seed, sha, im.width, im.height, len(im.png), now)
                    for im, sha in zip(images, hashes, strict=True)
                ],
            )

    async def mark_failed(self, job_id: int, error: str) -> None:
        await self._change_status(
            job_id, JobStatus.FAILED, "finished_at = ?, error = ?", (self._clock(), error)
        )

    async def mark_cancelled(self, job_id: int) -> None:
        await self._change_status(job_id, JobStatus.CANCELLED, "finished_at = ?", (self._clock(),))

    async def requeue(self, job_id: int) -> None:
        """running → queued, for a job whose worker died or that shutdown interrupted."""
        await self._change_status(job_id, JobStatus.QUEUED, "started_at = NULL, worker = NULL")

    async def unfinished_jobs(self) -> list[JobRecord]:
        """Jobs left queued or running, in their original (queued) order, with their init
        images (the pool runs them)."""
        return await self._jobs(f"WHERE {UNFINISHED} ORDER BY j.id", init_images=True)

    async def _change_status(
        self, job_id: int, target: JobStatus, assignments: str, params: tuple[object, ...] = ()
    ) -> None:
        sql, sql_params = _transition_sql(job_id, target, assignments, params)
        if not await self._write_one(f"{sql} RETURNING id", sql_params):
            async with self._lock:
                await _refuse(self._conn, job_id, target)

    def _write_files(
        self, images: Sequence[GeneratedImage], hashes: Sequence[str] | None = None
    ) -> list[str]:
        """Write the images' files; `StorageUnavailable` when the image folder cannot be written
        (read-only, full, gone)."""
        hashes = list(hashes) if hashes is not None else [sha256_of(im.png) for im in images]
        try:
            for image, sha in zip(images, hashes, strict=True):
                self._images.ensure(image.png, sha)
        except OSError as error:
            raise StorageUnavailable(
                f"The image folder cannot be written right now ({error.strerror or error})."
            ) from error
        return hashes


@contextmanager
def _parent_must_exist() -> Iterator[None]:
    try:
        yield
    except sqlite3.IntegrityError:
        raise InvalidValue("The job this request derives from does not exist.") from None


def _job_row(
    request: GenerationRequest, owner: JobOwner, init_sha: str | None, now: float
) -> tuple[object, ...]:
    return (
        owner.user_id,
        owner.guild_id,
        owner.channel_id,
        owner.priority.value,
        owner.weight,
        owner.max_queued,
        owner.max_running,
        request.model,
        request.kind.value,
        request.parent_job,
        replace(request, init_image=None, input_images=()).to_json(),
        init_sha,
        now,
    )


def _transition_sql(
    job_id: int, target: JobStatus, assignments: str, params: tuple[object, ...]
) -> tuple[str, tuple[object, ...]]:
    """The UPDATE that makes the change only where the current status allows it."""
    allowed = _ALLOWED_FROM[target]
    marks = ", ".join("?" * len(allowed))
    sql = f"UPDATE jobs SET status = ?, {assignments} WHERE id = ? AND status IN ({marks})"
    return sql, (target.value, *params, job_id, *allowed)


async def _transition(
    conn: aiosqlite.Connection,
    job_id: int,
    target: JobStatus,
    assignments: str,
    params: tuple[object, ...] = (),
) -> None:
    cursor = await conn.execute(*_transition_sql(job_id, target, assignments, params))
    if cursor.rowcount != 1:
        await _refuse(conn, job_id, target)


async def _refuse(conn: aiosqlite.Connection, job_id: int, target: JobStatus) -> None:
    """Raise the error that explains why the job could not become `target`."""
    rows = await conn.execute_fetchall("SELECT status FROM jobs WHERE id = ?", (job_id,))
    if not rows:
        raise UnknownJob(job_id)
    raise InvalidTransition(job_id, rows[0]["status"], target.value)
