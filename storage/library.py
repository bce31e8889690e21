"""What people see of past jobs: a job and its images, its Discord messages, a user's history,
lineage, deletion by its owner, and the delivery of results."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time

import aiosqlite

from generation.jobs import JobRecord, JobStatus
from storage.errors import InvalidTransition, InvalidValue, UnknownJob
from storage.records import HistoryPage, JobMessage, Lineage, StoredImage, StoredJob
from storage.store import (
    FINAL_STATUSES,
    JOB_SELECT,
    JOB_SELECT_WITH_INIT_IMAGE,
    Store,
    job_from_row,
)

MAX_PAGE = 100
_MAX_LINEAGE_DEPTH = 1000


class Library(Store):
    async def get_job(self, job_id: int, *, init_image: bool = True) -> StoredJob | None:
        """The job, deleted ones included (see `StoredJob.deleted`); None for an unknown id.
        With `init_image=False` its init image's bytes (up to 24 MiB) are not loaded:
        `request.init_image` is None, `request.strength` still says it had one."""
        select = JOB_SELECT_WITH_INIT_IMAGE if init_image else JOB_SELECT
        row = await self._fetchone(f"{select} WHERE j.id = ?", (job_id,))
        if row is None:
            return None
        return StoredJob(job_from_row(row), row["deleted_at"], row["delivered_at"])

    async def images_of(self, job_id: int) -> list[StoredImage]:
        """The job's images by index (none for a deleted job)."""
        rows = await self._fetchall("SELECT * FROM images WHERE job_id = ? ORDER BY idx", (job_id,))
        return [self._image_from_row(row) for row in rows]

    async def read_image(self, job_id: int, index: int) -> bytes | None:
        """The PNG bytes of one image; None when unknown, pruned, or its job deleted."""
        row = await self._fetchone(
            "SELECT i.sha256 FROM images AS i JOIN jobs AS j ON j.id = i.job_id"
            " WHERE i.job_id = ? AND i.idx = ? AND i.pruned_at IS NULL AND j.deleted_at IS NULL",
            (job_id, index),
        )
        if row is None:
            return None
        return await asyncio.to_thread(self._images.read, row["sha256"])

    async def record_message(self, job_id: int, message_id: int, channel_id: int | None) -> None:
        """Remember that a Discord message shows this job (a reaction on it finds the job)."""
        async with self._transaction() as conn:
            await _record_message(conn, job_id, message_id, channel_id, self._clock())

    async def job_for_message(self, message_id: int) -> int | None:
        """The id of the job a Discord message shows, if any."""
        row = await self._fetchone(
            "SELECT job_id FROM job_messages WHERE message_id = ?", (message_id,)
        )
        return None if row is None else row["job_id"]

    async def messages_of(self, job_id: int) -> list[JobMessage]:
        """The Discord messages recorded as showing this job, oldest first."""
        rows = await self._fetchall(
            "SELECT message_id, channel_id, created_at FROM job_messages WHERE job_id = ?"
            " ORDER BY created_at, message_id",
            (job_id,),
        )
        return [JobMessage(row["message_id"], row["channel_id"], row["created_at"]) for row in rows]

    async def set_image_attachment(
        self, job_id: int, index: int, message_id: int, attachment_id: int
    ) -> None:
        """Record the Discord attachment showing an image (and its message, as `record_message`)."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE images SET message_id = ?, attachment_id = ? WHERE job_id = ? AND idx = ?",
                (message_id, attachment_id, job_id, index),
            )
            if cursor.rowcount == 0:
                raise InvalidValue(f"Job #{job_id} has no image {index}.")
            await _record_message(conn, job_id, message_id, None, self._clock())

    async def delete_job(self, job_id: int) -> bool:
        """Delete a job for its owner: images gone, hidden from history and lineage, a tombstone
        left so the id still says "deleted". False when it was deleted already."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "UPDATE jobs SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
                (self._clock(), job_id),
            )
            if cursor.rowcount == 0:
                if not await conn.execute_fetchall("SELECT 1 FROM jobs WHERE id = ?", (job_id,)):
                    raise UnknownJob(job_id)
                return False
            rows = await conn.execute_fetchall(
                "DELETE FROM images WHERE job_id = ? RETURNING sha256", (job_id,)
            )
            await detach_init_images(conn, "id = ?", (job_id,))
        await self._release_files(row["sha256"] for row in rows)
        return True

    async def history(
        self,
        user_id: int,
        *,
        limit: int = 10,
        before: int | None = None,
        after: int | None = None,
        model: str | None = None,
        text: str | None = None,
    ) -> HistoryPage:
        """A page of the user's jobs, newest first, optionally only one model or prompts
        containing `text` (case-insensitive). Keyset pagination: `before`/`after` a job id."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidValue(f"A history page holds 1 to {MAX_PAGE} jobs.")
        if before is not None and after is not None:
            raise InvalidValue("Give `before` or `after`, not both.")
        where, params = ["j.user_id = ?", "j.deleted_at IS NULL"], [user_id]
        if model is not None:
            where.append("j.model = ?")
            params.append(model)
        if text:
            where.append("json_extract(j.request, '$.prompt') LIKE ? ESCAPE '\\'")
            params.append(f"%{_escape_like(text)}%")
        if before is not None:
            where.append("j.id < ?")
            params.append(before)
        if after is not None:
            where.append("j.id > ?")
            params.append(after)
        order = "ASC" if after is not None else "DESC"
        found = await self._jobs(
            f"WHERE {' AND '.join(where)} ORDER BY j.id {order} LIMIT ?", (*params, limit + 1)
        )
        more, jobs = len(found) > limit, found[:limit]
        if after is not None:
            jobs.reverse()
        if not jobs:
            return HistoryPage([], None, None)
        older = jobs[-1].id if (more if after is None else True) else None
        newer = jobs[0].id if (more if after is not None else before is not None) else None
        return HistoryPage(jobs, older, newer)

    async def save_history_filter(self, model: str | None, text: str | None) -> str:
        """A 16-character key for the /history filters (model, text), stored so that the key
        alone finds them again (the same filters always get the same key)."""
        key = hashlib.sha256(json.dumps([model, text]).encode()).hexdigest()[:16]
        async with self._transaction() as conn:
            await conn.execute(
                "INSERT OR IGNORE INTO history_filters (key, model, text, created_at)"
                " VALUES (?, ?, ?, ?)",
                (key, model, text, time.time()),
            )
        return key

    async def history_filter(self, key: str) -> tuple[str | None, str | None] | None:
        """The (model, text) saved under `key` by `save_history_filter`; None if unknown."""
        row = await self._fetchone("SELECT model, text FROM history_filters WHERE key = ?", (key,))
        return None if row is None else (row[0], row[1])

    async def lineage(self, job_id: int) -> Lineage:
        """The job's ancestors (root first) and children, leaving out deleted jobs."""
        if await self._fetchone("SELECT 1 FROM jobs WHERE id = ?", (job_id,)) is None:
            raise UnknownJob(job_id)
        ancestors = await self._jobs(
            f"""JOIN (
                  WITH RECURSIVE chain (id, depth) AS (
                    SELECT parent_job, 1 FROM jobs WHERE id = ?
                    UNION ALL
                    SELECT p.parent_job, c.depth + 1 FROM chain AS c JOIN jobs AS p ON p.id = c.id
                    WHERE c.depth < {_MAX_LINEAGE_DEPTH}
                  ) SELECT id, depth FROM chain WHERE id IS NOT NULL
                ) AS chain ON chain.id = j.id
                WHERE j.deleted_at IS NULL ORDER BY chain.depth DESC""",
            (job_id,),
        )
        children = await self._jobs(
            "WHERE j.parent_job = ? AND j.deleted_at IS NULL ORDER BY j.id", (job_id,)
        )
        return Lineage(ancestors, children)

    async def mark_delivered(self, job_id: int) -> None:
        """The job's final result reached Discord (idempotent). Only final jobs are delivered."""
        async with self._transaction() as conn:
            rows = await conn.execute_fetchall("SELECT status FROM jobs WHERE id = ?", (job_id,))
            if not rows:
                raise UnknownJob(job_id)
            if not JobStatus(rows[0]["status"]).is_final:
                raise InvalidTransition(job_id, rows[0]["status"], "delivered")
            await conn.execute(
                "UPDATE jobs SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL",
                (self._clock(), job_id),
            )

    async def undelivered_jobs(self, limit: int = 1000) -> list[JobRecord]:
        """Final jobs whose result was not delivered yet (and not deleted), oldest first."""
        return await self._jobs(
            f"WHERE j.delivered_at IS NULL AND j.status IN {FINAL_STATUSES}"
            " AND j.deleted_at IS NULL ORDER BY j.id LIMIT ?",
            (limit,),
        )

    def _image_from_row(self, row: aiosqlite.Row) -> StoredImage:
        return StoredImage(
            job_id=row["job_id"],
            index=row["idx"],
            seed=row["seed"],
            sha256=row["sha256"],
            path=self._images.path_for(row["sha256"]),
            width=row["width"],
            height=row["height"],
            bytes=row["bytes"],
            created_at=row["created_at"],
            message_id=row["message_id"],
            attachment_id=row["attachment_id"],
            pruned=row["pruned_at"] is not None,
        )


async def detach_init_images(
    conn: aiosqlite.Connection, jobs_where: str, params: tuple[object, ...]
) -> None:
    """Detach the init images and reference images of the jobs matching `jobs_where`; delete
    those no job uses."""
    jobs = f"SELECT id FROM jobs WHERE {jobs_where}"
    rows = await conn.execute_fetchall(
        f"SELECT init_image FROM jobs WHERE {jobs_where} AND init_image IS NOT NULL UNION "
        f"SELECT sha256 FROM job_references WHERE job_id IN ({jobs})",
        params * 2,
    )
    await conn.execute(
        f"UPDATE jobs SET init_image = NULL WHERE {jobs_where} AND init_image IS NOT NULL", params
    )
    await conn.execute(f"DELETE FROM job_references WHERE job_id IN ({jobs})", params)
    await conn.executemany(
        "DELETE FROM init_images WHERE sha256 = ?1"
        " AND NOT EXISTS (SELECT 1 FROM jobs WHERE init_image = ?1)"
        " AND NOT EXISTS (SELECT 1 FROM job_references WHERE sha256 = ?1)",
        [(row[0],) for row in rows],
    )


async def _record_message(
    conn: aiosqlite.Connection, job_id: int, message_id: int, channel_id: int | None, now: float
) -> None:
    try:
        await conn.execute(
            "INSERT INTO job_messages (message_id, job_id, channel_id, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (message_id) DO UPDATE SET job_id = excluded.job_id,"
            " channel_id = coalesce(excluded.channel_id, channel_id)",
            (message_id, job_id, channel_id, now),
        )
    except sqlite3.IntegrityError:
        raise UnknownJob(job_id) from None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
