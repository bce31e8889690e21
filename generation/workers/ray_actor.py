"""`EngineActor`: one remote GPU's worker as a Ray actor, running the same `WorkerRuntime` (and
so the same engine code) as a local worker process.

The engine runs in a thread of its own, fed commands in order, as in `generation.workers.child`.
The actor's methods only hand things over, so none waits for a job: `command` queues a command,
`cancel` sets the flag the engine checks at each step (in a concurrency group of its own: Ray's
`ray.cancel` does not interrupt a running method of an ordinary actor), and `poll` returns the
events since the last call, waiting up to `wait_s` for the first (a long poll). Finished images
travel back once, as part of `poll`'s result, through Ray's object store.

Ray retries and restarts nothing (`max_restarts=0`, `max_task_retries=0`): the pool decides
(a dead actor is a dead worker: restarted, its job retried once).
"""

from __future__ import annotations

import logging
import queue
import threading
import traceback

import ray

from generation.workers.protocol import Command, WorkerEvent, WorkerSpec
from generation.workers.ray_probe import code_identity
from generation.workers.runtime import WorkerRuntime


@ray.remote(
    max_restarts=0,
    max_task_retries=0,
    concurrency_groups={"control": 1, "events": 1},
)
class EngineActor:
    def __init__(self, spec: WorkerSpec) -> None:
        worker = spec.config.id.replace("%", "%%")
        logging.basicConfig(
            level=logging.INFO,
            format=f"%(asctime)s %(levelname)s worker={worker} %(name)s %(message)s",
        )
        self._events: queue.SimpleQueue[WorkerEvent | None] = queue.SimpleQueue()
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._failure: str | None = None  # the traceback that ended the engine thread
        self._runtime = WorkerRuntime(spec, self._events.put)
        threading.Thread(target=self._serve, name="engine", daemon=True).start()

    def _serve(self) -> None:
        try:
            if self._runtime.start():
                while self._runtime.handle(self._commands.get()):
                    pass
        except BaseException:  # a local worker's traceback goes to the bot's log; this one's
            self._failure = traceback.format_exc()  # would stay on its node: `poll` sends it
            raise
        finally:
            self._events.put(None)  # the end: `poll` says so

    @ray.method(concurrency_group="control")
    def identity(self) -> dict[str, str]:
        """This node's Atelier code, Ray and Python (`ray_probe.code_identity`): the relay
        refuses an actor that does not run what the bot runs."""
        return code_identity()

    @ray.method(concurrency_group="control")
    def command(self, command: Command) -> None:
        """Queue a command (not `CancelJob`: see `cancel`) for the engine thread."""
        self._commands.put(command)

    @ray.method(concurrency_group="control")
    def cancel(self, job_id: int) -> None:
        """Stop `job_id` within one step (or before it starts); the engine thread reports it."""
        self._runtime.cancel(job_id)

    @ray.method(concurrency_group="events")
    def poll(self, wait_s: float) -> tuple[list[WorkerEvent], bool, str | None]:
        """The events since the last poll (waiting up to `wait_s` for one); False once the
        worker has ended (after a `Shutdown`, or when it could not start), with the traceback
        that ended it, if one did."""
        events: list[WorkerEvent] = []
        try:
            item = self._events.get(timeout=wait_s)
        except queue.Empty:
            return events, True, None
        while True:
            if item is None:
                return events, False, self._failure
            events.append(item)
            try:
                item = self._events.get_nowait()
            except queue.Empty:
                return events, True, None
