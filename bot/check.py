"""`python -m bot check`: is this configuration and this machine ready to run the bot?

Checks the token is set (not whether Discord accepts it: that needs a connection), the GPUs the
workers name (with `nvidia-smi`, never importing torch in this process), the GPUs of the `[ray]`
cluster (`bot.check_ray`), that every model's
weights are in a local folder or the Hugging Face cache as safetensors (as `generation.download`
judges them; a model not downloaded yet is only a note, as scripts/start downloads it next),
that every LoRA is a safetensors file that fits each model of its family (read from the files'
headers, see `generation.lora_headers.check_fits`), and that the database opens. Prints one line per
check (all on standard output, in order) and a sentence for each problem; exit status 1 if any.
Models not downloaded yet are named in the last line with the command that fetches them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.config import Settings
from generation import gguf_file, placement
from generation.download import MODEL_INDEX, cached_snapshot, missing_weights, model_folder
from generation.lora_headers import check_fits
from generation.loras import LoraError, LoraSpec
from generation.models import Catalogue, ModelSpec
from generation.profiles import (
    best_profile,
    installed_libraries,
    ladder,
    needed_gib,
    profile_for,
)
from generation.shell import python_command
from generation.workers.config import (
    GpuInfo,
    WorkerConfig,
    canonical_device,
    discover_workers,
    list_gpus,
)
from storage import Database, DatabaseUnusable


@dataclass(frozen=True, slots=True)
class Finding:
    ok: bool
    text: str
    problem: bool = True  # a failed check that is only worth knowing about sets False

    def line(self) -> str:
        mark = "ok " if self.ok else ("ERR" if self.problem else "note")
        return f"[{mark}] {self.text}"


async def run_checks(settings: Settings, config_args: str = "") -> int:
    """Print every finding; 0 when nothing is a problem. `config_args` (` --config FILE`)
    goes into the commands printed."""
    from bot.check_ray import ray_findings  # it builds on `Finding`, defined here

    findings = [
        Finding(True, f"Configuration {settings.config_path or ''} is valid."),
        _token(settings),
        *_gpus(settings),
        *ray_findings(settings),
        *(_model(spec, config_args) for spec in settings.catalogue.values()),
        *(_lora(lora, settings.catalogue, config_args) for lora in settings.loras.values()),
        await _database(settings),
    ]
    for finding in findings:  # one stream, so that the lines stay in order when piped
        print(finding.line())
    problems = sum(1 for f in findings if not f.ok and f.problem)
    missing = [spec.name for spec in settings.catalogue.values() if _not_downloaded(spec)]
    if problems:
        print(f"{problems} problem{'s' if problems != 1 else ''} found.")
    elif missing:
        print(
            f"No problems, but {len(missing)} model{'s are' if len(missing) != 1 else ' is'} not "
            f"downloaded yet ({', '.join(missing)}): run "
            f"`{python_command('-m generation.download' + config_args)}` to fetch "
            f"{'them' if len(missing) != 1 else 'it'} (scripts/start does). Until then "
            f"{'their' if len(missing) != 1 else 'its'} jobs fail."
        )
    else:
        print("All good.")
    return 1 if problems else 0


def _token(settings: Settings) -> Finding:
    if settings.token:
        return Finding(True, "DISCORD_TOKEN is set (Discord checks it when the bot connects).")
    return Finding(False, "DISCORD_TOKEN is not set: put the bot token in the environment.")


def _gpus(settings: Settings) -> Iterator[Finding]:
    gpus = list_gpus()
    seen = ", ".join(f"cuda:{g.index} {g.name} ({g.memory_gb:g} GiB)" for g in gpus)
    yield Finding(True, f"GPUs seen: {seen}." if gpus else "No NVIDIA GPU seen.", problem=False)
    workers = settings.gpus or tuple(discover_workers(settings.catalogue, gpus))
    memory = {g.index: g.memory_gb for g in gpus}
    for worker in workers:
        if worker.ray is not None:
            continue  # on another machine: see `bot.check_ray`
        if worker.device == "cpu":
            yield Finding(
                True, f"Worker {worker.id} runs on the CPU (very slow for real models).", False
            )
            continue
        if worker.devices:
            yield _spread(worker, settings.catalogue, memory)
            continue
        index = int(worker.device.partition(":")[2] or 0)
        if index in memory:
            yield Finding(True, f"Worker {worker.id} has its GPU.")
            yield _fits(worker, settings.catalogue, memory[index])
        else:
            yield Finding(
                False,
                f"Worker {worker.id} needs GPU {worker.device}, which nvidia-smi does not show "
                "(check the driver, the container's GPU access, or the [[gpus]] tables).",
            )
    yield from _pair_hint(settings.catalogue, gpus, workers)


def _spread(worker: WorkerConfig, catalogue: Catalogue, memory: dict[int, float]) -> Finding:
    """Whether a `devices` worker's cards are here, and where each of its models' components
    go (`generation.placement.plan`, from its `vram_gb` per card)."""
    indexes = [int(canonical_device(d).partition(":")[2]) for d in worker.devices]
    if absent := [d for d, i in zip(worker.devices, indexes, strict=True) if i not in memory]:
        return Finding(
            False,
            f"Worker {worker.id} needs GPU {', '.join(absent)}, which nvidia-smi does not show.",
        )
    card_gib = min([*(memory[i] for i in indexes), worker.vram_gb or float("inf")])
    runs = []
    for name, spec in catalogue.items():
        if not worker.may_run(name):
            continue
        chosen = profile_for(spec, worker.profile_of(name))
        plan = placement.plan(spec, chosen, worker.devices, card_gib)
        if plan is None:
            return Finding(
                False,
                f"Worker {worker.id}: {name} as {chosen.name} does not fit its cards "
                f"({card_gib:g} GiB each); set a smaller profile in its `profiles`.",
            )
        where = "; ".join(
            f"{', '.join(sorted(c for c in plan if plan[c] == d))} on {d}"
            for d in worker.devices
            if d in plan.values()
        )
        runs.append(f"{name} as {chosen.name} ({where})")
    return Finding(
        bool(runs),
        f"Worker {worker.id} runs one pipeline over its cards: "
        + (", ".join(runs) or "no model")
        + ".",
    )


def _pair_hint(
    catalogue: Catalogue, gpus: list[GpuInfo], workers: tuple[WorkerConfig, ...]
) -> Iterator[Finding]:
    """A note for each model that two of these cards together hold better than any one alone:
    where no card holds it, or only with a profile below the one the pair gives (`devices`;
    the automatic setup never pairs cards: README, "One pipeline over two cards")."""
    if len(gpus) < 2 or any(w.devices for w in workers):
        return
    libraries = installed_libraries()
    pair = sorted(gpus, key=lambda g: g.memory_gb, reverse=True)[:2]
    devices = tuple(f"cuda:{g.index}" for g in pair)
    card_gib = min(g.memory_gb for g in pair)
    for name, spec in catalogue.items():
        together = placement.best_spread_profile(spec, devices, card_gib, libraries)
        if together is None:
            continue
        alone = [p for g in gpus if (p := best_profile(spec, g.memory_gb, libraries))]
        best = min(alone, key=ladder(spec).index, default=None)
        if best is not None and ladder(spec).index(best) <= ladder(spec).index(together):
            continue
        now = f"runs on one card only as {best.name}" if best else "fits none of these cards alone"
        yield Finding(
            False,
            f"{name} {now}, but {devices[0]} and {devices[1]} together hold it as "
            f"{together.name}: a [[gpus]] table with devices = "
            f'["{devices[0]}", "{devices[1]}"] and vram_gb = {card_gib:g} would.',
            problem=False,
        )


def _fits(worker: WorkerConfig, catalogue: Catalogue, card_gib: float) -> Finding:
    """Which models a GPU worker runs and with which memory profile (README, "Which GPU do I
    need?"), and which it does not: an error where it runs none, or where one needs more than
    the card's `card_gib` (as nvidia-smi reports it) or the worker's `vram_gb`; a note where
    some model is left out."""
    room = min(card_gib, worker.vram_gb or card_gib)
    runs, too_big = [], []
    for name, spec in catalogue.items():
        if worker.may_run(name):
            chosen = profile_for(spec, worker.profile_of(name))
            need = needed_gib(spec, chosen)
            runs.append(f"{name} as {chosen.name} (~{need:.1f} GiB)")
            if need > room:
                too_big.append(f"{name} as {chosen.name} needs ~{need:.1f} GiB")
    left = [name for name in catalogue if not worker.may_run(name)]
    memory = f" ({room:g} GiB)"
    text = f"Worker {worker.id}{memory} runs " + (", ".join(runs) or "no model")
    if left:
        text += f"; not {', '.join(left)} (too large, or not allowed here)"
    if too_big:
        return Finding(
            False,
            f"{text}. But {'; '.join(too_big)}, more than its {room:g} GiB: set a smaller "
            "profile in its `profiles`, or give it a `vram_gb` to have one chosen.",
        )
    if not runs:
        return Finding(False, f"{text}: no model fits this GPU under any memory profile.")
    return Finding(not left, text + ".", problem=False)


def _model(spec: ModelSpec, config_args: str) -> Finding:
    folder = Path(spec.source).expanduser() if spec.is_local else cached_snapshot(spec)
    if spec.is_local and not (folder / MODEL_INDEX).is_file():
        return Finding(
            False, f"Model {spec.name}: {folder} is not a diffusers folder (no {MODEL_INDEX})."
        )
    if spec.gguf is not None:
        problem = gguf_file.transformer_problem(Path(spec.gguf).expanduser(), spec.name, folder)
        if problem is not None:
            return Finding(False, f"Model {spec.name}: its `gguf` file: {problem}")
    if folder is None:
        return Finding(  # not a problem yet: scripts/start downloads after this check
            False,
            f"Model {spec.name}: {spec.source} is not downloaded yet; run "
            f"`{python_command(f'-m generation.download{config_args} {spec.name}')}` "
            "(scripts/start runs it). Until then its jobs fail.",
            problem=False,
        )
    missing = missing_weights(folder, spec)
    if missing:
        return Finding(
            False,
            f"Model {spec.name}: {folder} has no safetensors weights for {', '.join(missing)}. "
            "Atelier loads only .safetensors weights (never pickle .bin/.ckpt/.pt files): "
            "convert them or use a safetensors release.",
        )
    return Finding(True, f"Model {spec.name}: weights found in {folder}.")


def _lora(lora: LoraSpec, catalogue: Catalogue, config_args: str) -> Finding:
    """Whether `lora`'s file is here and fits every model of its family that is here."""
    path = lora.path()
    if path is None:
        return Finding(
            False,
            f"LoRA {lora.name}: {lora.source} is not downloaded yet; run "
            f"`{python_command('-m generation.download' + config_args)}`. Until then jobs "
            "asking for it fail.",
            problem=False,
        )
    if not path.is_file():
        return Finding(False, f"LoRA {lora.name}: {path} is not a file.")
    checked = []
    for spec in catalogue.values():
        folder = model_folder(spec)
        if spec.family is not lora.family or folder is None or not folder.is_dir():
            continue
        try:
            problem = check_fits(path, folder, spec)
        except LoraError as error:
            problem = str(error)
        if problem:
            return Finding(
                False, f"LoRA {lora.name}: {problem} Remove it or set its `family` right."
            )
        checked.append(spec.name)
    fits = f"fits {', '.join(checked)}" if checked else "no model of its family is here to check"
    return Finding(True, f"LoRA {lora.name}: {path.name} {fits}.")


def _not_downloaded(spec: ModelSpec) -> bool:
    return not spec.is_local and cached_snapshot(spec) is None


async def _database(settings: Settings) -> Finding:
    try:
        database = await Database.open(settings.database_path, images_dir=settings.images_dir)
    except DatabaseUnusable as error:
        return Finding(False, f"Database {settings.database_path}: {error}")
    except OSError as error:
        return Finding(
            False, f"Database {settings.database_path} cannot be opened: {str(error).rstrip('.')}."
        )
    await database.close()
    return Finding(True, f"Database {settings.database_path} opens.")
