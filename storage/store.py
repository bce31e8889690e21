"""The connection every part of `Database` shares: one lock, transactions, row conversion."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiosqlite

from generation.jobs import JobOwner, JobRecord, JobStatus, Priority, RunFacts
from generation.request import GenerationRequest
from storage.errors import unavailable_as_storage_error
from storage.images import ImageStore

# Every query that returns jobs selects these, so one function turns rows into records. Lists
# (history, lineage, the queue, redelivery) leave the input image bytes out: up to 25 MiB each.
# The references come as "position:hex,..." (SQLite 3.40's group_concat has no ORDER BY).
JOB_SELECT = "SELECT j.* FROM jobs AS j"
JOB_SELECT_WITH_INIT_IMAGE = (
    "SELECT j.*, ii.data AS init_data, "
    "(SELECT group_concat(jr.position || ':' || hex(ri.data)) FROM job_references AS jr "
    "JOIN init_images AS ri ON ri.sha256 = jr.sha256 WHERE jr.job_id = j.id) AS references_data "
    "FROM jobs AS j LEFT JOIN init_images AS ii ON ii.sha256 = j.init_image"
)
FINAL_STATUSES = "('done', 'failed', 'cancelled')"
UNFINISHED = "j.status IN ('queued', 'running')"  # matches the partial index jobs_unfinished


class Store:
    """Holds the connection. All statements of one coroutine's transaction run under `_lock`,
    so two coroutines never interleave statements on the shared connection."""

    def __init__(
        self, conn: aiosqlite.Connection, images: ImageStore, clock: Callable[[], float]
    ) -> None:
        self._conn = conn
        self._images = images
        self._clock = clock
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction, committed (durably) when the block ends, rolled back on error."""
        async with self._lock, _mapped():
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read transaction: several queries that see one consistent state."""
        async with self._lock, _mapped():
            await self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                await self._conn.execute("ROLLBACK")

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._lock, _mapped():
            return list(await self._conn.execute_fetchall(sql, params))

    async def _write_one(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        """One statement that commits by itself (autocommit): the cheapest durable write, one
        round trip to SQLite's thread. Use `RETURNING` to learn what it changed."""
        return await self._fetchall(sql, params)

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        rows = await self._fetchall(sql, params)
        return rows[0] if rows else None

    async def _jobs(
        self, where: str, params: Sequence[Any] = (), *, init_images: bool = False
    ) -> list[JobRecord]:
        """Job records matching `where` (which may end with ORDER BY / LIMIT); their requests'
        `init_image` is None unless `init_images` (see `job_from_row`)."""
        select = JOB_SELECT_WITH_INIT_IMAGE if init_images else JOB_SELECT
        return [job_from_row(row) for row in await self._fetchall(f"{select} {where}", params)]

    async def _release_files(self, hashes: Iterable[str]) -> tuple[int, int]:
        """Remove the files that no live image row needs any more; (files, bytes) freed.

        Call it after the rows that used them were committed. It runs in a write transaction,
        and `mark_done` re-checks its files inside its own, so a file another job has just
        started to share is never taken from under it.
        """
        removed = freed = 0
        async with self._transaction() as conn:
            for sha in sorted(set(hashes)):
                used = await conn.execute_fetchall(
                    "SELECT 1 FROM images WHERE sha256 = ? AND pruned_at IS NULL LIMIT 1", (sha,)
                )
                if not used:
                    size = await asyncio.to_thread(self._images.remove, sha)
                    removed += size > 0
                    freed += size
        return removed, freed


def _references(packed: str) -> tuple[bytes, ...]:
    """`JOB_SELECT_WITH_INIT_IMAGE`'s "position:hex,..." as the images in order."""
    pairs = (part.split(":", 1) for part in packed.split(","))
    return tuple(bytes.fromhex(data) for _, data in sorted((int(p), d) for p, d in pairs))


@asynccontextmanager
async def _mapped() -> AsyncIterator[None]:
    with unavailable_as_storage_error():
        yield


def job_from_row(row: aiosqlite.Row) -> JobRecord:
    """The record of a jobs row. Its request has its init image and reference images only when
    the row was selected with `JOB_SELECT_WITH_INIT_IMAGE`; otherwise `init_image` is None
    (`strength` still shows that the job has one) and `input_images` empty (for jobs stored
    since references are kept apart): never make a new job from such a record."""
    request = GenerationRequest.from_json(row["request"])
    columns = row.keys()
    if "init_data" in columns and row["init_data"] is not None:
        request = replace(request, init_image=bytes(row["init_data"]))
    if "references_data" in columns and row["references_data"]:
        request = replace(request, input_images=_references(row["references_data"]))
    return JobRecord(
        id=row["id"],
        owner=JobOwner(
            user_id=row["user_id"],
            guild_id=row["guild_id"],
            channel_id=row["channel_id"],
            priority=Priority(row["priority"]),
            weight=row["weight"],
            max_queued=row["max_queued"],
            max_running=row["max_running"],
        ),
        request=request,
        status=JobStatus(row["status"]),
        queued_at=row["queued_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        worker=row["worker"],
        gpu_seconds=row["gpu_seconds"],
        error=row["error"],
        facts=RunFacts.from_dict(json.loads(row["run_facts"])) if row["run_facts"] else None,
        profile=row["memory_profile"],
    )
