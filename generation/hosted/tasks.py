"""What is stored of an API job's tasks, and the storage protocol that keeps them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class HostedTask:
    """One image's task as stored with its job: `cost` in credits (None where the reply had
    none), `input_mp`/`output_mp` as the reply gave them, `submitted_at` in Unix seconds.

    A task whose submit is under way is stored first with an empty `task_id` and `polling_url`
    (`sending`): found so after a restart, BFL may have made (and charged for) it while its
    reply was lost, so it is never sent again."""

    index: int
    task_id: str
    polling_url: str
    cost: float | None
    input_mp: float | None
    output_mp: float | None
    submitted_at: float

    @property
    def sending(self) -> bool:
        return not self.task_id

    @classmethod
    def being_sent(cls, index: int, now: float) -> HostedTask:
        """The record of a submit under way (see `sending`)."""
        return cls(index, "", "", None, None, None, now)


class TaskStore(Protocol):
    """What the backend needs from storage (`storage.Database` implements it)."""

    async def save_hosted_task(self, job_id: int, task: HostedTask) -> None: ...

    async def hosted_tasks(self, job_id: int) -> list[HostedTask]: ...

    async def forget_hosted_task(self, job_id: int, index: int) -> None:
        """Drop image `index`'s record (a submit the API answered without making a task)."""
