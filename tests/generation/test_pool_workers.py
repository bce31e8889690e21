"""A worker's own decisions, in process: which models stay loaded, and what each outcome reports.
Also the worker configuration and GPU discovery."""

from __future__ import annotations

import pytest

from generation.models import Catalogue
from generation.request import build_request
from generation.workers.config import WorkerConfig, discover_workers, parse_gpu_list
from generation.workers.protocol import (
    JobDone,
    JobError,
    JobStopped,
    LoadModel,
    ModelLoaded,
    ModelLoadFailed,
    ModelUnloaded,
    RunJob,
    StepDone,
    UnloadModel,
    WorkerEvent,
    WorkerReady,
    WorkerSpec,
)
from generation.workers.runtime import WorkerRuntime

CATALOGUE = Catalogue.builtin()
MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")


def runtime(config: WorkerConfig) -> tuple[WorkerRuntime, list[WorkerEvent]]:
    events: list[WorkerEvent] = []
    spec = WorkerSpec(
        config,
        tuple(CATALOGUE.values()),
        "generation.workers.standin:StandInEngine",
        {"step_seconds": 0.0},
    )
    worker = WorkerRuntime(spec, events.append)
    worker.start()
    return worker, events


def run(worker: WorkerRuntime, job_id: int, model: str, prompt: str = "a fox") -> None:
    request = build_request(
        CATALOGUE, prompt=prompt, model=model, width=256, height=256, steps=3, seed=1
    )
    worker.handle(RunJob(job_id, request))


def test_least_recently_used_unpinned_model_makes_room() -> None:
    worker, events = runtime(WorkerConfig("cpu", "cpu", max_models=2, pinned=("flux-dev",)))
    assert isinstance(events[-1], WorkerReady)
    assert events[-1].loaded == ("flux-dev",)
    run(worker, 1, "playground-v2.5")
    run(worker, 2, "flux-schnell")  # evicts playground, never the pinned flux-dev
    changes = [e for e in events if isinstance(e, ModelLoaded | ModelUnloaded)]
    assert [(type(e).__name__, e.model) for e in changes] == [
        ("ModelLoaded", "flux-dev"),
        ("ModelLoaded", "playground-v2.5"),
        ("ModelUnloaded", "playground-v2.5"),
        ("ModelLoaded", "flux-schnell"),
    ]
    assert changes[-1].loaded == ("flux-dev", "flux-schnell")
    done = [e for e in events if isinstance(e, JobDone)]
    assert [e.job_id for e in done] == [1, 2]
    assert [e.step for e in events if isinstance(e, StepDone) and e.job_id == 1] == [1, 2, 3]


def test_a_vram_budget_limits_what_stays_loaded() -> None:
    # 40 GB: FLUX (34) and Playground (9) do not fit together.
    worker, events = runtime(WorkerConfig("cuda:0", "cuda:0", max_models=3, vram_gb=40.0))
    run(worker, 1, "flux-dev")
    run(worker, 2, "playground-v2.5")
    assert [e for e in events if isinstance(e, ModelLoaded)][-1].loaded == ("playground-v2.5",)


def test_outcomes_are_reported_as_plain_events() -> None:
    worker, events = runtime(WorkerConfig("cpu", "cpu"))
    run(worker, 1, "flux-schnell", prompt="standin:oom")
    run(worker, 2, "flux-schnell", prompt="standin:error")
    worker.cancel(3)
    run(worker, 3, "flux-schnell")
    error_oom, error_other = [e for e in events if isinstance(e, JobError)]
    assert (error_oom.job_id, error_oom.kind) == (1, "out_of_memory")
    assert (error_other.job_id, error_other.kind) == (2, "error")
    assert "stand-in failure" in error_other.reason
    assert [e.job_id for e in events if isinstance(e, JobStopped)] == [3]


def test_load_pin_and_unload_commands_are_acknowledged() -> None:
    worker, events = runtime(WorkerConfig("cpu", "cpu", models=frozenset({"flux-dev"})))
    worker.handle(LoadModel("flux-dev", pin=True))
    worker.handle(LoadModel("flux-dev"))  # already loaded: acknowledged, not reloaded
    worker.handle(LoadModel("flux-schnell"))
    worker.handle(UnloadModel("flux-dev"))
    loaded = [e for e in events if isinstance(e, ModelLoaded)]
    assert [e.seconds > 0 for e in loaded] == [True, False]
    (refused,) = [e for e in events if isinstance(e, ModelLoadFailed)]
    assert "may not run on cpu" in refused.reason
    assert isinstance(events[-1], ModelUnloaded)
    assert events[-1].loaded == ()


def test_worker_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        WorkerConfig("a", "gpu0")
    with pytest.raises(ValueError, match="pins 2 models but may hold only 1"):
        WorkerConfig("a", "cpu", pinned=("flux-dev", "flux-schnell"))
    with pytest.raises(ValueError, match="which it may not run"):
        WorkerConfig("a", "cpu", models=frozenset({"flux-dev"}), pinned=("flux-schnell",))
    with pytest.raises(ValueError, match="unknown model"):
        WorkerConfig("a", "cpu", models=frozenset({"sdxl-turbo"})).check_models(CATALOGUE)


def test_gpus_are_discovered_from_nvidia_smi_output() -> None:
    output = "0, NVIDIA H100 80GB HBM3, 81559\n1, NVIDIA GeForce RTX 4090, 24564\n"
    workers = discover_workers(CATALOGUE, parse_gpu_list(output))
    assert [(w.id, w.device) for w in workers] == [("cuda:0", "cuda:0"), ("cuda:1", "cuda:1")]
    assert workers[0].models == frozenset(CATALOGUE)
    assert workers[1].models == frozenset(CATALOGUE)  # FLUX in fp8 fits 24 GB (test_profiles)
    assert workers[1].profile_of("flux-dev") == "fp8"
    assert discover_workers(CATALOGUE, []) == [WorkerConfig("cpu", "cpu")]
