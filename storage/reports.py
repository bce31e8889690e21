"""Read-only views for admins and the owner: the queue now, and usage over a period."""

from __future__ import annotations

from storage.records import QueueSnapshot, Stats, Usage
from storage.store import UNFINISHED, Store


class Reports(Store):
    async def queue_snapshot(self, limit: int = 10) -> QueueSnapshot:
        """Running jobs, the first `limit` queued ones (queue order), and queued counts."""
        running = await self._jobs(f"WHERE {UNFINISHED} AND j.status = 'running' ORDER BY j.id")
        next_up = await self._jobs(
            f"WHERE {UNFINISHED} AND j.status = 'queued' ORDER BY j.id LIMIT ?", (limit,)
        )
        rows = await self._fetchall(
            f"SELECT j.user_id, count(*) FROM jobs AS j WHERE {UNFINISHED}"
            " AND j.status = 'queued' GROUP BY j.user_id"
        )
        by_user = {row[0]: row[1] for row in rows}
        return QueueSnapshot(running, next_up, sum(by_user.values()), by_user)

    async def stats(self, since: float, until: float) -> Stats:
        """Jobs, images, GPU-seconds and mean wait per user and per model, for jobs queued in
        [since, until) (Unix times), busiest first."""
        return Stats(
            since,
            until,
            await self._usage("user_id", since, until),
            await self._usage("model", since, until),
        )

    async def user_usage(self, user_id: int, since: float, until: float) -> Usage | None:
        """One user's jobs, images, GPU-seconds and mean wait for jobs queued in [since, until)
        (Unix times); None when they queued none. Reads only that user's jobs."""
        found = await self._usage("user_id", since, until, "AND j.user_id = ?", (user_id,))
        return found[0] if found else None

    async def _usage(
        self,
        column: str,
        since: float,
        until: float,
        narrow: str = "",
        params: tuple[int, ...] = (),
    ) -> list[Usage]:
        rows = await self._fetchall(
            f"""SELECT key, count(*) AS jobs, sum(images) AS images, total(gpu_seconds) AS gpu,
                       avg(wait) AS wait
                FROM (SELECT j.{column} AS key, j.gpu_seconds,
                             j.started_at - j.queued_at AS wait,
                             (SELECT count(*) FROM images AS i WHERE i.job_id = j.id) AS images
                      FROM jobs AS j WHERE j.queued_at >= ? AND j.queued_at < ? {narrow})
                GROUP BY key ORDER BY gpu DESC, jobs DESC, key""",
            (since, until, *params),
        )
        return [Usage(row[0], row[1], row[2], row[3], row[4]) for row in rows]
