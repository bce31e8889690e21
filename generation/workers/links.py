"""Which kind of `WorkerLink` serves a worker: `make_link` is the pool's link factory.

A worker with a `ray` placement (a GPU on another machine) gets a `RayWorker`; every other
worker a `ProcessWorker` on this machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from generation.workers.process import ProcessWorker
from generation.workers.protocol import WorkerEvent, WorkerLink, WorkerReady, WorkerSpec
from generation.workers.ray_config import ray_environment


class RayWorker(ProcessWorker):
    """A `WorkerLink` to a Ray actor on another machine, through a relay process of this one
    (`generation.workers.ray_relay`) that carries the same messages as a local worker's.

    `pid` is the actor's process id (on its node) once it is ready; the relay's before that.
    """

    entry = "generation.workers.ray_relay"

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(spec)
        self._actor_pid: int | None = None

    @property
    def pid(self) -> int | None:
        return self._actor_pid or super().pid

    def environment(self, environ: Mapping[str, str]) -> dict[str, str]:
        """A worker's environment plus Ray's settings (`RAY_AUTH_TOKEN` among them)."""
        return super().environment(environ) | ray_environment(environ)

    async def events(self) -> AsyncIterator[WorkerEvent]:
        async for event in super().events():
            if isinstance(event, WorkerReady):
                self._actor_pid = event.pid
            yield event


def make_link(spec: WorkerSpec) -> WorkerLink:
    """A `RayWorker` for a worker placed on a Ray cluster, else a `ProcessWorker`."""
    return RayWorker(spec) if spec.config.ray is not None else ProcessWorker(spec)
