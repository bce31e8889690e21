"""`python -m generation --model flux-pro-1.1 ...`: one API job from the command line.

Called by `generation.__main__` once the request is validated; tasks are kept in memory (a
command-line run that is stopped is not resumed). Progress goes to stderr, one line per change.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence

from generation.hosted.backend import HostedBackend, HostedProgress
from generation.hosted.outcomes import Outcome
from generation.hosted.settings import ApiSettings
from generation.hosted.tasks import HostedTask
from generation.jobs import GeneratedImage
from generation.request import GenerationRequest

EXIT_FAILED = 1


class MemoryTasks:
    """A `TaskStore` for one process."""

    def __init__(self) -> None:
        self._tasks: dict[int, dict[int, HostedTask]] = {}

    async def save_hosted_task(self, job_id: int, task: HostedTask) -> None:
        self._tasks.setdefault(job_id, {})[task.index] = task

    async def hosted_tasks(self, job_id: int) -> list[HostedTask]:
        return list(self._tasks.get(job_id, {}).values())

    async def forget_hosted_task(self, job_id: int, index: int) -> None:
        self._tasks.get(job_id, {}).pop(index, None)


def run_hosted(
    request: GenerationRequest,
    settings: ApiSettings,
    write: Callable[[Sequence[GeneratedImage]], None],
) -> int:
    """Run `request` on the API, `write` the images made (also where only some were); 0 when
    all were, else 1 with the reason on stderr."""
    return asyncio.run(_run(request, settings, write))


async def _run(
    request: GenerationRequest,
    settings: ApiSettings,
    write: Callable[[Sequence[GeneratedImage]], None],
) -> int:
    backend = HostedBackend(settings, MemoryTasks())
    shown: set[tuple[int, str, float | None]] = set()  # each state once per image

    def report(progress: HostedProgress) -> None:
        line = (progress.index, progress.state, progress.progress)
        if line not in shown:
            shown.add(line)
            done = f" {progress.progress:.0%}" if progress.progress is not None else ""
            said = f": {progress.detail}" if progress.detail else ""
            print(f"image {progress.index + 1}: {progress.state}{done}{said}", file=sys.stderr)

    try:
        result = await backend.run(0, request, report)
    finally:
        await backend.close()
    write(result.images)
    print(f"cost: {result.cost:g} credits", file=sys.stderr)
    if result.outcome is Outcome.READY and result.reason is None:
        return 0
    print(f"error: {result.reason}", file=sys.stderr)  # a partial job: which images are missing
    if result.admin_note:
        print(f"note: {result.admin_note}", file=sys.stderr)
    return EXIT_FAILED
