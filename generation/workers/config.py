"""Which workers exist, which models each may hold, and how to find the GPUs of this machine.

Configuration lists workers by device (`cuda:0`, `cuda:1`, ... or `cpu`); with none listed,
`discover_workers` makes one worker per GPU that `nvidia-smi` reports (without importing torch),
or a single CPU worker on a machine without NVIDIA GPUs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from generation.config_schema import SettingsProblems
from generation.models import Catalogue
from generation.workers.ray_config import RayPlacement

# The devices a worker or the engine accepts; use `fullmatch` (`$` would let "cpu\n" through).
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker process and what it may do.

    `models`: the models it may run (None: any). `max_models`: how many may stay loaded at once
    (the least recently used unpinned model is unloaded to make room). `vram_gb`: an optional
    memory budget checked against each model's `vram_gb` in the catalogue. `pinned`: models loaded
    at start and never unloaded to make room. `ray`: where its Ray actor runs, for a GPU on
    another machine (None: a process of this machine); `device` is then the device inside the
    actor, which sees only the GPUs Ray gave it (`cuda` is the first).
    """

    id: str
    device: str
    models: frozenset[str] | None = None
    max_models: int = 1
    vram_gb: float | None = None
    pinned: tuple[str, ...] = ()
    ray: RayPlacement | None = None

    def __post_init__(self) -> None:
        if problems := self.problems():
            raise SettingsProblems(problems)

    def problems(self) -> list[str]:
        """Every way this worker contradicts itself, one sentence each."""
        problems = []
        if not DEVICE_PATTERN.fullmatch(self.device):
            problems.append(
                f"Worker {self.id!r}: unknown device {self.device!r}; use cpu, cuda or cuda:N."
            )
        if self.max_models < 1:
            problems.append(f"Worker {self.id!r}: max_models must be at least 1.")
        if len(self.pinned) > self.max_models:
            problems.append(
                f"Worker {self.id!r} pins {len(self.pinned)} models but may hold only "
                f"{self.max_models} (raise max_models)."
            )
        problems += [
            f"Worker {self.id!r} pins {model!r}, which it may not run."
            for model in self.pinned
            if not self.may_run(model)
        ]
        return problems

    def may_run(self, model: str) -> bool:
        return self.models is None or model in self.models

    def check_models(self, catalogue: Iterable[str]) -> None:
        """Raise `SettingsProblems` (a ValueError) naming every fault of `model_problems`."""
        if problems := self.model_problems(catalogue):
            raise SettingsProblems(problems)

    def model_problems(self, catalogue: Iterable[str]) -> list[str]:
        """See `model_problems`, for this worker."""
        return model_problems(
            f"Worker {self.id!r}", self.models or (), self.pinned, self.vram_gb, catalogue
        )


def canonical_device(device: str) -> str:
    """The one spelling of a device: `cuda` and `cuda:00` are `cuda:0` (PyTorch's `cuda` is
    the current device, 0 in a fresh process)."""
    if device.startswith("cuda"):
        index = device.partition(":")[2]
        return f"cuda:{int(index) if index.isdigit() else 0}"
    return device


def model_problems(
    who: str,
    models: Iterable[str],
    pinned: Iterable[str],
    vram_gb: float | None,
    catalogue: Iterable[str],
    names: Iterable[str] | None = None,
) -> list[str]:
    """The models a worker (`who`) names that are not among `names` (default: the catalogue's),
    and, with a `vram_gb` budget and a `Catalogue`, the named models that need more memory than
    the budget (alone, or pinned together): one sentence each."""
    known = list(catalogue if names is None else names)
    pinned = list(pinned)
    named = set(models) | set(pinned)
    problems = []
    unknown = sorted(named - set(known))
    if unknown:
        problems.append(
            f"{who} names unknown model(s) {', '.join(unknown)}; available: {', '.join(known)}."
        )
    if vram_gb is None or not isinstance(catalogue, Catalogue):
        return problems
    problems += [
        f"{who}: {name} needs {catalogue[name].vram_gb:g} GB, more than its vram_gb budget "
        f"({vram_gb:g} GB)."
        for name in sorted(named & set(catalogue))
        if catalogue[name].vram_gb > vram_gb
    ]
    together = sum(catalogue[name].vram_gb for name in set(pinned) & set(catalogue))
    if len(set(pinned)) > 1 and together > vram_gb:
        problems.append(
            f"{who}: its pinned models need {together:g} GB together, more than its vram_gb "
            f"budget ({vram_gb:g} GB)."
        )
    return problems


@dataclass(frozen=True, slots=True)
class GpuInfo:
    index: int
    name: str
    memory_gb: float


def list_gpus() -> list[GpuInfo]:
    """The NVIDIA GPUs `nvidia-smi` reports (an empty list when there is none or no driver)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        output = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_gpu_list(output)


def parse_gpu_list(output: str) -> list[GpuInfo]:
    """Parse `nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits`."""
    gpus = []
    for line in output.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            try:
                memory_gb = float(parts[2]) / 1024
            except ValueError:
                continue
            gpus.append(GpuInfo(int(parts[0]), parts[1], round(memory_gb, 1)))
    return gpus


def discover_workers(catalogue: Catalogue, gpus: list[GpuInfo] | None = None) -> list[WorkerConfig]:
    """One worker per GPU, allowed the models whose `vram_gb` fits its memory and keeping as many
    loaded as fit together; or one CPU worker when this machine has no NVIDIA GPU."""
    gpus = list_gpus() if gpus is None else gpus
    if not gpus:
        return [WorkerConfig("cpu", "cpu")]
    workers = []
    for gpu in gpus:
        fits = frozenset(name for name, spec in catalogue.items() if spec.vram_gb <= gpu.memory_gb)
        device = f"cuda:{gpu.index}"
        workers.append(
            WorkerConfig(
                device, device, models=fits, max_models=max(1, len(fits)), vram_gb=gpu.memory_gb
            )
        )
    return workers
