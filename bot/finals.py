"""One final job per draft: ✅ Final pressed again — by anyone, however quickly, after a
restart too — points to the final already queued, running or done instead of making it twice
(🔁 on that final makes it again on purpose). A final that failed, was cancelled or deleted
leaves the draft free to make another."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from bot.errors import UserError
from generation.jobs import JobStatus
from generation.request import JobKind
from storage import Database

_STANDING = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE)


class Finals:
    """The drafts whose final is being submitted now (this process's; the database has the
    rest)."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._making: set[int] = set()

    @contextlib.asynccontextmanager
    async def making(self, draft_id: int) -> AsyncIterator[None]:
        """Hold draft `draft_id` while its final is submitted. Raises `UserError` pointing to
        its final where one stands or is being submitted now."""
        if draft_id in self._making:  # checked and claimed with no await between: no race
            raise UserError(
                f"The final of draft `{draft_id}` is being made already; it appears here in a "
                "moment."
            )
        self._making.add(draft_id)
        try:
            children = (await self._database.lineage(draft_id)).children
            made = [
                job
                for job in children
                if job.request.kind is JobKind.FINAL and job.status in _STANDING
            ]
            if made:
                raise UserError(
                    f"Draft `{draft_id}` already has its final: job `{made[0].id}` "
                    f"({made[0].status.value}). 🔁 on it makes it again."
                )
            yield
        finally:
            self._making.discard(draft_id)
