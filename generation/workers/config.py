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

from generation.models import Catalogue

DEVICE_PATTERN = re.compile(r"^(cpu|cuda(:\d+)?)$")  # the devices a worker or the engine accepts


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker process and what it may do.

    `models`: the models it may run (None: any). `max_models`: how many may stay loaded at once
    (the least recently used unpinned model is unloaded to make room). `vram_gb`: an optional
    memory budget checked against each model's `vram_gb` in the catalogue. `pinned`: models loaded
    at start and never unloaded to make room.
    """

    id: str
    device: str
    models: frozenset[str] | None = None
    max_models: int = 1
    vram_gb: float | None = None
    pinned: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not DEVICE_PATTERN.match(self.device):
            raise ValueError(
                f"Worker {self.id!r}: unknown device {self.device!r}; use cpu, cuda or cuda:N."
            )
        if self.max_models < 1:
            raise ValueError(f"Worker {self.id!r}: max_models must be at least 1.")
        if len(self.pinned) > self.max_models:
            raise ValueError(
                f"Worker {self.id!r} pins {len(self.pinned)} models but may hold only "
                f"{self.max_models} (raise max_models)."
            )
        for model in self.pinned:
            if not self.may_run(model):
                raise ValueError(f"Worker {self.id!r} pins {model!r}, which it may not run.")

    def may_run(self, model: str) -> bool:
        return self.models is None or model in self.models

    def check_models(self, catalogue: Iterable[str]) -> None:
        """Raise ValueError naming any model this worker mentions that the catalogue (or list of
        model names) lacks."""
        catalogue = list(catalogue)
        named = set(self.models or ()) | set(self.pinned)
        unknown = sorted(named - set(catalogue))
        if unknown:
            raise ValueError(
                f"Worker {self.id!r} names unknown model(s) {', '.join(unknown)}; "
                f"available: {', '.join(catalogue)}."
            )


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
