"""The worker side of the boundary: runs commands on an engine and reports plain events.

`WorkerRuntime` knows nothing of its transport: the child process (`generation.workers.child`)
feeds it commands from a socket, and a Ray actor could feed it method calls. It decides which
models stay loaded (pinned ones always; otherwise the most recently used, within `max_models`
and the `vram_gb` budget) and turns engine outcomes into events. It imports no torch itself:
the engine it builds does.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from generation.errors import Cancelled, EngineError, ModelUnavailable, OutOfMemory
from generation.models import Catalogue
from generation.profiles import needed_gib, profile_for
from generation.workers.protocol import (
    CancelJob,
    Command,
    JobDone,
    JobError,
    JobStopped,
    LoadModel,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnloaded,
    ProfilesNow,
    RunJob,
    Shutdown,
    StepDone,
    UnloadModel,
    WorkerEvent,
    WorkerFailed,
    WorkerReady,
    WorkerSpec,
)

# Errors after which a CUDA context cannot be trusted: the worker exits so that the pool
# restarts it (and retries the job once) instead of reporting the job as failed.
_FATAL_MARKERS = ("CUDA error", "CUBLAS_STATUS", "CUDNN_STATUS", "device-side assert")


def load_factory(path: str) -> Callable[..., Any]:
    """Import `"package.module:callable"`."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"Engine factory {path!r} should look like 'package.module:callable'.")
    return getattr(importlib.import_module(module_name), attribute)


class WorkerRuntime:
    """Executes commands for one worker; `emit` sends each event to the pool."""

    def __init__(self, spec: WorkerSpec, emit: Callable[[WorkerEvent], None]) -> None:
        self.spec = spec
        self.config = spec.config
        self._emit = emit
        self._catalogue = Catalogue(spec.models)
        self._engine: Any = None
        self._pinned: set[str] = set(spec.config.pinned)
        self._recent: list[str] = []  # loaded models, least recently used first
        self._cancelled: set[int] = set()
        self._profiles_sent = ProfilesNow(tuple(sorted(spec.config.profiles)), ())

    def start(self) -> bool:
        """Build the engine (which checks the device), load the pinned models, and report
        ready; or report `WorkerFailed` with the reason and return False when this worker cannot
        start here (no such GPU, an engine that cannot be built)."""
        try:
            factory = load_factory(self.spec.engine_factory)
            self._engine = factory(
                self._catalogue,
                self.config.device,
                profiles=dict(self.config.profiles),
                vram_gb=self.config.vram_gb,
                **({"devices": self.config.devices} if self.config.devices else {}),
                **self.spec.engine_options,
            )
        except (ImportError, ValueError, TypeError, RuntimeError, EngineError) as error:
            self._emit(WorkerFailed(str(error)))
            return False
        for model in self.config.pinned:  # one that cannot load says why; the others still run
            try:
                self._ensure_loaded(model)
            except EngineError as error:
                self._emit(ModelLoadFailed(model, str(error)))
        self._report_profiles()
        self._emit(WorkerReady(os.getpid(), self._loaded(), self._memory()))
        return True

    def _memory(self) -> dict[str, float]:
        return memory_report(self.config.devices or (self.config.device,))

    def cancel(self, job_id: int) -> None:
        """Mark a job cancelled; safe to call from another thread while a job runs."""
        self._cancelled.add(job_id)

    def handle(self, command: Command) -> bool:
        """Run one command; False once the worker should exit."""
        match command:
            case RunJob():
                self._run(command)
            case CancelJob(job_id=job_id):
                self.cancel(job_id)
            case LoadModel(model=model, pin=pin):
                self._load_command(model, pin)
            case UnloadModel(model=model):
                self._pinned.discard(model)
                self._unload(model)
            case Shutdown():
                return False
        return True

    # ---- jobs --------------------------------------------------------------------------------

    def _run(self, command: RunJob) -> None:
        job_id, request = command.job_id, command.request
        started = time.perf_counter()

        def elapsed() -> float:
            """GPU-seconds of the run itself: loading a model is not charged to the job."""
            return time.perf_counter() - started

        def on_progress(step: int, total: int, preview: bytes | None) -> None:
            self._emit(StepDone(job_id, step, total, preview))

        try:
            if job_id in self._cancelled:
                raise Cancelled("The job was cancelled before it started.")
            started += self._ensure_loaded(request.model)
            images = self._engine.generate(
                request, on_progress=on_progress, should_cancel=lambda: job_id in self._cancelled
            )
        except Cancelled:
            self._emit(JobStopped(job_id, elapsed()))
        except EngineError as error:
            self._emit(JobError(job_id, error.kind, str(error), elapsed()))
        except Exception as error:
            if any(marker in str(error) for marker in _FATAL_MARKERS):
                raise
            if type(error).__name__ == "OutOfMemoryError":  # torch's, past the engine: never shown
                reason = (
                    "The GPU ran out of memory for this job; try fewer images or a smaller size."
                )
                self._emit(JobError(job_id, OutOfMemory.kind, reason, elapsed()))
                return
            reason = f"The generation failed ({type(error).__name__}: {error})."
            self._emit(JobError(job_id, "error", reason, elapsed()))
        else:
            memory = self._memory()
            self._emit(JobDone(job_id, tuple(images), elapsed(), memory))
        finally:
            self._cancelled.discard(job_id)
            self._report_profiles()

    # ---- models ------------------------------------------------------------------------------

    def _load_command(self, model: str, pin: bool) -> None:
        try:
            if pin and model not in self._pinned and len(self._pinned) >= self.config.max_models:
                raise ModelUnavailable(
                    f"{self.config.id} already pins {len(self._pinned)} model(s), as many as it "
                    f"may hold; unpin one first."
                )
            seconds = self._ensure_loaded(model)
        except EngineError as error:
            self._emit(ModelLoadFailed(model, str(error)))
            return
        if pin:
            self._pinned.add(model)
        if seconds == 0.0:  # already loaded: acknowledge; `_ensure_loaded` reported real loads
            self._emit(ModelLoaded(model, 0.0, self._loaded()))

    def _ensure_loaded(self, model: str) -> float:
        """Load `model`, unloading others to make room; seconds spent loading (0: was loaded)."""
        if not self.config.may_run(model):
            raise ModelUnavailable(f"{model} may not run on {self.config.id}.")
        if model in self._recent:
            self._recent.remove(model)
            self._recent.append(model)
            return 0.0
        self._make_room_for(model)
        started = time.perf_counter()
        try:
            self._engine.load(model)
        finally:
            self._report_profiles()  # a load that ran out of memory may have taught one
        seconds = max(time.perf_counter() - started, 1e-9)
        self._recent.append(model)
        self._emit(ModelLoaded(model, seconds, self._loaded()))
        return seconds

    def _report_profiles(self) -> None:
        """Tell the pool the profiles of this worker's models where they changed, and take
        the learnt ones as this worker's own (its memory budget counts them)."""
        own = dict(self.config.profiles) | dict(getattr(self._engine, "profiles", {}))
        held = getattr(self._engine, "held_profiles", {})
        now = ProfilesNow(tuple(sorted(own.items())), tuple(sorted(held.items())))
        if now != self._profiles_sent:
            self.config = dataclasses.replace(self.config, profiles=now.own)
            self._profiles_sent = now
            self._emit(now)

    def _make_room_for(self, model: str) -> None:
        budget = self.config.vram_gb

        def crowded() -> bool:
            if len(self._recent) >= self.config.max_models:
                return True
            if budget is None:
                return False
            needed = sum(self._need_gib(m) for m in [*self._recent, model])
            return needed > budget

        while crowded():
            victims = [m for m in self._recent if m not in self._pinned]
            if not victims:
                return  # only pinned models: the job still runs, over the limit
            self._unload(victims[0])

    def _need_gib(self, model: str) -> float:
        spec = self._catalogue[model]
        return needed_gib(spec, profile_for(spec, self.config.profile_of(model)))

    def _unload(self, model: str) -> None:
        if model in self._recent:
            self._recent.remove(model)
        self._engine.unload(model)
        self._report_profiles()
        self._emit(ModelUnloaded(model, self._loaded()))

    def _loaded(self) -> tuple[str, ...]:
        return tuple(self._recent)


def memory_report(devices: Sequence[str]) -> dict[str, float]:
    """What is known of this process's memory: resident MiB, and GPU MiB when torch is in use,
    summed over `devices` (the cards of a worker that spreads a pipeline over several)."""
    report: dict[str, float] = {}
    try:
        with open("/proc/self/statm") as statm:
            report["rss_mib"] = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    torch = sys.modules.get("torch")  # never imported here: only reported if the engine did
    cards = [device for device in devices if device.startswith("cuda")]
    if torch is not None and cards and torch.cuda.is_available():
        used = total = allocated = 0
        for card in cards:
            free, size = torch.cuda.mem_get_info(card)
            used, total = used + size - free, total + size
            allocated += torch.cuda.memory_allocated(card)
        report["gpu_used_mib"] = used / 2**20
        report["gpu_total_mib"] = total / 2**20
        report["gpu_allocated_mib"] = allocated / 2**20
    return report
