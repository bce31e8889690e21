"""Which workers exist, which models each may hold, and how to find the GPUs of this machine.

Configuration lists workers by device (`cuda:0`, `cuda:1`, ... or `cpu`); with none listed,
`discover_workers` makes one worker per GPU that `nvidia-smi` reports (without importing torch),
or a single CPU worker on a machine without NVIDIA GPUs.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from generation import placement
from generation.config_schema import SettingsProblems
from generation.models import Catalogue, ModelSpec
from generation.profiles import (
    DEFAULT_PROFILE,
    Profile,
    UnknownProfile,
    best_profile,
    default_profile,
    installed_libraries,
    ladder,
    needed_gib,
    profile_for,
)
from generation.workers.ray_config import RayPlacement

# The devices a worker or the engine accepts; use `fullmatch` (`$` would let "cpu\n" through).
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """One worker process and what it may do.

    `models`: the models it may run (None: any). `max_models`: how many may stay loaded at once
    (the least recently used unpinned model is unloaded to make room). `vram_gb`: an optional
    memory budget checked against what each model needs under its profile. `pinned`: models
    loaded at start and never unloaded to make room. `profiles`: (model, profile name) pairs, the
    memory profile each model is loaded with here (`generation.profiles`; absent: "full").
    `ray`: where its Ray actor runs, for a GPU on another machine (None: a process of this
    machine); `device` is then the device inside the actor, which sees only the GPUs Ray gave it
    (`cuda` is the first). `devices`: the cards one pipeline spreads over, whole components on
    each (`generation.placement`; empty: `device` alone); `device` is then the first, `vram_gb`
    each card's memory, and the worker holds one model at a time.
    """

    id: str
    device: str
    models: frozenset[str] | None = None
    max_models: int = 1
    vram_gb: float | None = None
    pinned: tuple[str, ...] = ()
    ray: RayPlacement | None = None
    profiles: tuple[tuple[str, str], ...] = ()
    devices: tuple[str, ...] = ()

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
        return problems + self._spread_problems()

    def _spread_problems(self) -> list[str]:
        """How a `devices` worker contradicts itself (one sentence each)."""
        if not self.devices:
            return []
        who, problems = f"Worker {self.id!r}", []
        canonical = [canonical_device(d) for d in self.devices]
        if len(set(canonical)) < 2 or not all(d.startswith("cuda") for d in canonical):
            problems.append(
                f"{who}: `devices` needs two or more different CUDA cards, such as "
                '["cuda:0", "cuda:1"].'
            )
        elif len(set(canonical)) < len(canonical):
            problems.append(f"{who}: `devices` lists a card twice.")
        if self.ray is not None:
            problems.append(f"{who}: `devices` is for cards of this machine, not Ray GPUs.")
        if self.vram_gb is None:
            problems.append(
                f"{who}: `devices` needs `vram_gb` (each card's memory in GiB), from which the "
                "components are placed."
            )
        if self.max_models != 1:
            problems.append(f"{who}: a worker over several cards holds one model at a time.")
        return problems

    def spread_problems(self, catalogue: Catalogue) -> list[str]:
        """For a `devices` worker, each model it names (or pins a profile for) that its cards
        hold together under no placement (`generation.placement.plan`), one sentence each."""
        if not self.devices or self.vram_gb is None:
            return []
        named = (set(self.models or ()) | set(self.pinned) | set(dict(self.profiles))) & set(
            catalogue
        )
        problems = []
        for name in sorted(named):
            spec, chosen = catalogue[name], dict(self.profiles).get(name)
            if chosen is None:  # `fit_profiles` found none
                problems.append(
                    f"Worker {self.id!r}: {name} fits its {len(self.devices)} cards of "
                    f"{self.vram_gb:g} GiB together under no memory profile."
                )
                continue
            try:
                memory = profile_for(spec, chosen)
            except UnknownProfile:
                continue  # `model_problems` names it
            if placement.plan(spec, memory, self.devices, self.vram_gb) is None:
                why = "offloads, which a pipeline over several cards cannot" * memory.offload
                problems.append(
                    f"Worker {self.id!r}: {name} does not fit its {len(self.devices)} cards of "
                    f"{self.vram_gb:g} GiB with its {memory.name} profile"
                    + (f" ({why})." if why else ".")
                )
        return problems

    def may_run(self, model: str) -> bool:
        return self.models is None or model in self.models

    def profile_of(self, model: str) -> str:
        """The memory profile `model` is loaded with on this worker."""
        return dict(self.profiles).get(model, DEFAULT_PROFILE)

    def check_models(self, catalogue: Iterable[str]) -> None:
        """Raise `SettingsProblems` (a ValueError) naming every fault of `model_problems`."""
        if problems := self.model_problems(catalogue):
            raise SettingsProblems(problems)

    def model_problems(self, catalogue: Iterable[str]) -> list[str]:
        """See `model_problems`, for this worker."""
        return model_problems(
            f"Worker {self.id!r}",
            self.models or (),
            self.pinned,
            self.vram_gb,
            catalogue,
            profiles=dict(self.profiles),
            device=self.device if self.ray is None else None,
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
    profiles: Mapping[str, str] | None = None,
    device: str | None = None,
) -> list[str]:
    """The models a worker (`who`) names that are not among `names` (default: the catalogue's),
    and the `profiles` set for a model it may not run (not among `models` where those are named);
    with a `Catalogue`, the `profiles` (model → profile name) its family lacks or that cannot
    run on this machine's `device` (a CUDA-only one on the CPU, one whose library is not
    installed; None: a device of another machine, not checked here); and with a
    `vram_gb` budget, the named models that fit it under no profile (or not under the one
    `profiles` sets), alone or pinned together: one sentence each."""
    known = list(catalogue if names is None else names)
    pinned = list(pinned)
    profiles = dict(profiles or {})
    named = set(models) | set(pinned)
    problems = []
    unknown = sorted((named | set(profiles)) - set(known))
    if unknown:
        problems.append(
            f"{who} names unknown model(s) {', '.join(unknown)}; available: {', '.join(known)}."
        )
    allowed = set(models)
    not_run = sorted(set(profiles) - allowed - set(unknown)) if allowed else []
    if not_run:
        problems.append(
            f"{who} sets a profile for {', '.join(not_run)}, which its `models` leave out; "
            "add it there or remove the profile."
        )
    if not isinstance(catalogue, Catalogue):
        return problems
    for name in sorted(set(profiles) & set(catalogue)):
        try:
            chosen = profile_for(catalogue[name], profiles[name])
        except UnknownProfile as error:
            problems.append(f"{who}: {name}: {error}")
            del profiles[name]
            continue
        if device is not None and (reason := chosen.unavailable_on(device)) is not None:
            problems.append(f"{who}: {name}: {reason}.")
    if vram_gb is None:
        return problems
    needs = {}
    for name in sorted((named | set(profiles)) & set(catalogue)):
        fits, needs[name], used = _fit(catalogue[name], vram_gb, profiles.get(name))
        if not fits:
            problems.append(
                f"{who}: {name} needs {needs[name]:.1f} GiB with {used} profile, more than its "
                f"vram_gb budget ({vram_gb:g} GiB)."
            )
    together = sum(needs[name] for name in set(pinned) & set(needs))
    if len(set(pinned)) > 1 and together > vram_gb:
        problems.append(
            f"{who}: its pinned models need {together:.1f} GiB together, more than its vram_gb "
            f"budget ({vram_gb:g} GiB)."
        )
    return problems


def _fit(spec: ModelSpec, memory_gib: float, chosen: str | None) -> tuple[bool, float, str]:
    """Whether `spec` fits `memory_gib` (under the profile `chosen`, else under its best fitting
    one), what it needs there, and which profile that is, as a phrase."""
    if chosen is not None:
        need = needed_gib(spec, profile_for(spec, chosen))
        return need <= memory_gib, need, f"its {chosen}"
    best = best_profile(spec, memory_gib, installed_libraries())
    if best is not None:
        return True, needed_gib(spec, best), f"its {best.name}"
    smallest = ladder(spec)[-1]
    return False, needed_gib(spec, smallest), f"even its smallest ({smallest.name})"


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


def fit_together(
    catalogue: Catalogue,
    names: Iterable[str],
    memory_gib: float,
    libraries: frozenset[str],
    max_models: int | None = None,
    fixed: Mapping[str, Profile] | None = None,
) -> tuple[dict[str, Profile], int]:
    """The memory profile of each of `names` on a CUDA card (or budget) of `memory_gib` GiB with
    the optional `libraries` present, and how many models then fit together (at least 1). The
    one rule of the automatic setup and of a `vram_gb` budget: each model starts at the best
    quality that fits alone (a model that fits under no profile is left out); with `max_models`
    = N, while the N largest would not fit together, the one needing most (not one of `fixed`,
    the profiles an owner set) moves one profile down, until they do or none can move."""
    fixed = dict(fixed or {})
    chosen = fixed | {
        name: best
        for name in names
        if name not in fixed
        and (best := best_profile(catalogue[name], memory_gib, libraries)) is not None
    }

    def need(name: str) -> float:
        return needed_gib(catalogue[name], chosen[name])

    while max_models is not None:
        largest = sorted(chosen, key=need, reverse=True)[:max_models]
        if sum(map(need, largest)) <= memory_gib:
            break
        steps = {
            name: lower
            for name in largest
            if name not in fixed and (lower := _below(catalogue, chosen, name, libraries))
        }
        if not steps:
            break
        name = max(steps, key=need)
        chosen[name] = steps[name]
    needs = sorted(map(need, chosen))
    together = sum(1 for i in range(len(needs)) if sum(needs[: i + 1]) <= memory_gib)
    return chosen, max(1, together)


def _below(
    catalogue: Catalogue, chosen: Mapping[str, Profile], name: str, libraries: frozenset[str]
) -> Profile | None:
    """The next profile of `name` below its `chosen` one that needs less and whose library is
    present, or None."""
    spec = catalogue[name]
    profiles = ladder(spec)
    current = chosen[name]
    for lower in profiles[profiles.index(current) + 1 :]:
        if lower.library in (None, *libraries) and needed_gib(spec, lower) < needed_gib(
            spec, current
        ):
            return lower
    return None


def fit_profiles(worker: WorkerConfig, catalogue: Catalogue | None) -> WorkerConfig:
    """`worker` with, where it has a `vram_gb` budget, a profile for each model it may run
    (`fit_together`: `max_models` of them fit the budget together, the owner's own `profiles`
    kept as set). A worker allowed any model is allowed only those that fit under some profile
    (`bot check` names the others). Without a budget, a model with a GGUF file gets its best
    GGUF profile (it has no "full", the profile a model without one gets)."""
    if catalogue is None:
        return worker
    if worker.devices:
        return _fit_spread(worker, catalogue)
    if worker.vram_gb is None or not worker.device.startswith("cuda"):
        # (a GPU budget means nothing to a CPU worker's profiles)
        gguf = {
            name: default_profile(catalogue[name])
            for name in catalogue
            if catalogue[name].gguf and worker.may_run(name)
        }
        profiles = tuple(sorted((gguf | dict(worker.profiles)).items()))
        return dataclasses.replace(worker, profiles=profiles)
    fixed = {}
    for name, chosen in worker.profiles:
        if name in catalogue:
            try:
                fixed[name] = profile_for(catalogue[name], chosen)
            except UnknownProfile:
                continue  # `model_problems` names it
    set_here = dict(worker.profiles)  # the owner's, kept as set (a wrong one is named)
    names = [n for n in catalogue if worker.may_run(n) and n not in set_here]
    chosen, _ = fit_together(
        catalogue, names, worker.vram_gb, installed_libraries(), worker.max_models, fixed
    )
    profiles = {name: p.name for name, p in chosen.items()} | set_here
    models = worker.models if worker.models is not None else frozenset(chosen)
    return dataclasses.replace(worker, models=models, profiles=tuple(sorted(profiles.items())))


def _fit_spread(worker: WorkerConfig, catalogue: Catalogue) -> WorkerConfig:
    """`fit_profiles` for a `devices` worker: each model it may run gets its best profile that
    its cards hold together (`generation.placement`); one allowed any model is allowed those."""
    assert worker.vram_gb is not None  # `WorkerConfig.problems` refuses a worker without
    set_here = dict(worker.profiles)
    chosen = {
        name: best.name
        for name in catalogue
        if worker.may_run(name)
        and name not in set_here
        and (best := placement.best_spread_profile(catalogue[name], worker.devices, worker.vram_gb))
    }
    profiles = chosen | set_here
    models = worker.models if worker.models is not None else frozenset(chosen) | set(set_here)
    return dataclasses.replace(worker, models=models, profiles=tuple(sorted(profiles.items())))


def discover_workers(
    catalogue: Catalogue,
    gpus: list[GpuInfo] | None = None,
    libraries: frozenset[str] | None = None,
) -> list[WorkerConfig]:
    """One worker per GPU, allowed every model that fits its memory under some profile (the
    best-quality one that fits, given the optional `libraries` installed: by default those found
    here) and keeping as many loaded as fit together; or one CPU worker without an NVIDIA GPU."""
    gpus = list_gpus() if gpus is None else gpus
    if not gpus:
        return [WorkerConfig("cpu", "cpu")]
    libraries = installed_libraries() if libraries is None else libraries
    workers = []
    for gpu in gpus:
        chosen, together = fit_together(catalogue, catalogue, gpu.memory_gb, libraries)
        device = f"cuda:{gpu.index}"
        workers.append(
            WorkerConfig(
                device,
                device,
                models=frozenset(chosen),
                max_models=together,
                vram_gb=gpu.memory_gb,
                profiles=tuple((name, p.name) for name, p in chosen.items()),
            )
        )
    return workers
