"""The pool's admin commands on workers: take one out of service and back, load, unload and
pin models, and how each worker stands (part of `WorkerPool`; its state is the pool's)."""

from __future__ import annotations

import asyncio
import dataclasses

from generation.models import UnknownModel
from generation.pool.live import LiveWorker
from generation.pool.types import PoolError, WorkerState, WorkerStatus
from generation.workers.protocol import Command, LoadModel, UnloadModel


class ModelCommands:
    """Mixed into `WorkerPool`."""

    def alive_workers(self) -> int:
        """Workers ready for jobs or running one."""
        return sum(w.state in (WorkerState.IDLE, WorkerState.BUSY) for w in self._workers.values())

    def worker_problems(self) -> dict[str, str]:
        """Worker id → why it is failed and when it is tried next, for each failed worker."""
        return {w.id: p for w in self._workers.values() if (p := self._problem(w)) is not None}

    async def mark_failed(self, worker_id: str, reason: str) -> None:
        """An admin takes a worker out of service: it is stopped and not restarted until
        `restore`, and the waiting jobs that no other worker may run fail with `reason`."""
        worker = self._worker(worker_id)
        assert worker.health is not None
        worker.health.hold(reason)
        worker.released.clear()
        if worker.link is not None:
            await worker.link.kill()
        await self._fail_stranded(worker)

    def restore(self, worker_id: str) -> None:
        """Start a worker again after `mark_failed`."""
        worker = self._worker(worker_id)
        assert worker.health is not None
        worker.health.release()
        worker.released.set()

    async def load_model(self, worker_id: str, model: str) -> None:
        """Load `model` on a worker now (after its current job). Raises PoolError or
        ModelUnavailable with a message when it cannot."""
        await self._model_command(worker_id, model, LoadModel(model))

    async def unload_model(self, worker_id: str, model: str) -> None:
        """Unload `model` from a worker (after its current job), unpinning it."""
        worker = self._worker(worker_id)
        self._set_pinned(worker, tuple(m for m in worker.config.pinned if m != model))
        await self._model_command(worker_id, model, UnloadModel(model))

    async def pin(self, worker_id: str, model: str) -> None:
        """Load `model` on a worker and keep it loaded, also across worker restarts."""
        worker = self._worker(worker_id)
        if model in worker.config.pinned:
            return
        self._check_model_for(worker, model)
        if len(worker.config.pinned) >= worker.config.max_models:
            raise PoolError(
                f"{worker_id} already pins {', '.join(worker.config.pinned)} and may hold "
                f"{worker.config.max_models} model(s); unpin one first."
            )
        self._set_pinned(worker, (*worker.config.pinned, model))
        await self._model_command(worker_id, model, LoadModel(model, pin=True))

    # ---- model commands ----------------------------------------------------------------------

    async def _model_command(self, worker_id: str, model: str, command: Command) -> None:
        worker = self._worker(worker_id)
        self._check_model_for(worker, model)
        if worker.state not in (WorkerState.IDLE, WorkerState.BUSY):
            if isinstance(command, LoadModel) and command.pin:
                return  # taken into account when the worker starts
            raise PoolError(f"{worker_id} is {worker.state.value}; try again in a moment.")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        worker.acks.setdefault(model, []).append(ack)
        if not await self._send(worker, command):
            self._resolve_acks(worker, model, PoolError(f"{worker_id} is restarting."))
        await ack

    def _resolve_acks(self, worker: LiveWorker, model: str, error: Exception | None = None) -> None:
        for ack in worker.acks.pop(model, []):
            if ack.done():
                continue
            if error is None:
                ack.set_result(None)
            else:
                ack.set_exception(error)

    def _fail_acks(self, worker: LiveWorker, reason: str) -> None:
        for model in list(worker.acks):
            self._resolve_acks(worker, model, PoolError(reason))

    def _check_model_for(self, worker: LiveWorker, model: str) -> None:
        try:
            self.catalogue[model]
        except UnknownModel as error:
            raise PoolError(str(error)) from None
        if not worker.config.may_run(model):
            raise PoolError(f"{worker.id} may not run {model} (see its `models` setting).")

    def _set_pinned(self, worker: LiveWorker, pinned: tuple[str, ...]) -> None:
        worker.config = dataclasses.replace(worker.config, pinned=pinned)

    def _status(self, worker: LiveWorker) -> WorkerStatus:
        models = worker.config.models
        return WorkerStatus(
            id=worker.id,
            device=worker.config.device,
            state=worker.state,
            job_id=worker.job.id if worker.job else None,
            loaded=worker.loaded,
            pinned=worker.config.pinned,
            models=tuple(sorted(models)) if models is not None else None,
            pid=worker.link.pid if worker.link else None,
            restarts=worker.restarts,
            model_loads=worker.model_loads,
            memory=worker.memory,
            last_error=worker.last_error,
            problem=self._problem(worker),
            profiles=worker.config.profiles,
        )
