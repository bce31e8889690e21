"""Typed settings: a TOML file for everything, the environment for secrets and test hooks.

The token comes ONLY from the environment (`DISCORD_TOKEN`) and is wrapped in `Secret`, whose
`repr`/`str` never show it, so it cannot end up in a log line or a traceback by accident.

Environment variables:
- `DISCORD_TOKEN`: the bot token (required to run).
- `ATELIER_CONFIG`: the configuration file (default `atelier.toml` in the working directory).
- `DISCORD_API_BASE` / `DISCORD_GATEWAY_URL`: point discord.py at another Discord (the tests'
  fake server); see `apply_discord_endpoints`.

The file's keys, types, ranges and defaults are declared once, in `bot.settings_schema`.
`load_settings` collects every problem it finds and raises one `ConfigError` listing them all,
each naming its key's path, so an owner fixes the file in one go.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from bot.blocklist import term_problem
from bot.editing import config_problem
from bot.observability.settings import ObservabilitySettings
from bot.settings_schema import (
    AtelierFile,
    EditTable,
    GpuTable,
    HostedTable,
    ProgressSettings,
    UserDefaults,
)
from generation.config_file import anchored_loras, anchored_models, config_path_from_env
from generation.config_schema import SettingsProblems, toml_value, validate_table
from generation.hosted.catalogue import HOSTED_MODELS, hosted_models
from generation.hosted.settings import ApiSettings, SettingsError
from generation.loras import LoraCatalogue
from generation.models import Catalogue, CatalogueError
from generation.pool import SchedulerSettings
from generation.speed_options import SpeedOptions
from generation.workers.config import (
    DEVICE_PATTERN,
    WorkerConfig,
    canonical_device,
    fit_profiles,
    model_problems,
)
from generation.workers.ray_config import (
    RaySettings,
    connection_problem,
    gpu_share_problem,
    node_problem,
)
from generation.workers.supervision import SupervisionSettings

EXAMPLE_CONFIG = Path(__file__).with_name("example.toml")


class ConfigError(ValueError):
    """The configuration cannot be used; `problems` holds one sentence per fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"- {p}" for p in problems))


class Secret:
    """A string that never shows itself in `repr`, `str` or f-strings; `.reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot needs to run, validated."""

    token: Secret
    data_dir: Path
    catalogue: Catalogue
    gpus: tuple[WorkerConfig, ...] = ()  # empty: one worker per GPU found (or one CPU worker)
    defaults: UserDefaults = field(default_factory=UserDefaults)
    limits: SchedulerSettings = field(default_factory=SchedulerSettings)
    hosted: HostedTable = field(default_factory=HostedTable)  # API slots and credit budgets
    hosted_api: ApiSettings | None = None  # BFL_API_KEY and BFL_API_URL (the key never shown)
    progress: ProgressSettings = field(default_factory=ProgressSettings)
    edit: EditTable = field(default_factory=EditTable)  # the editing model (`bot.editing`)
    speed: SpeedOptions = field(default_factory=SpeedOptions)  # the workers' CUDA pipelines
    loras: LoraCatalogue = field(default_factory=LoraCatalogue)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    workers: SupervisionSettings = field(default_factory=SupervisionSettings)  # not running
    ray: RaySettings = field(default_factory=RaySettings)  # the cluster of remote GPUs
    owner_ids: frozenset[int] = frozenset()
    admin_role_ids: frozenset[int] = frozenset()
    allowed_channel_ids: frozenset[int] = frozenset()  # empty: every channel
    guild_ids: tuple[int, ...] = ()  # sync commands to these servers at once (else globally)
    allow_dms: bool = False  # commands in DMs (then `dm_blocklist` applies there)
    dm_blocklist: tuple[str, ...] = ()  # the installation's blocklist, for jobs asked in DMs
    download_timeout_s: float = 20.0  # the most an attachment's download may take
    api_base: str | None = None
    gateway_url: str | None = None
    config_path: Path | None = None

    @property
    def database_path(self) -> Path:
        return self.data_dir / "atelier.sqlite3"

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"


def load_settings(path: Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read the TOML file at `path` (default: `config_path_from_env`) and the environment.

    Raises `FileNotFoundError` when the file is missing and `ConfigError` listing every fault
    (a file that cannot be read, such as a folder, a dangling link or text that is not UTF-8,
    is one).
    """
    env = os.environ if env is None else env
    path = config_path_from_env(env) if path is None else path
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path} is not valid TOML: {error}."]) from None
    except UnicodeDecodeError as error:
        raise ConfigError(
            [f"{path} is not UTF-8 text (byte {error.start}); save it as UTF-8."]
        ) from None
    except IsADirectoryError:
        raise ConfigError([f"{path} is a folder, not a configuration file."]) from None
    except FileNotFoundError:
        if path.is_symlink():
            target = os.readlink(path)
            raise ConfigError([f"{path} links to {target}, which does not exist."]) from None
        raise
    except OSError as error:
        raise ConfigError([f"{path} cannot be read: {error.strerror or error}."]) from None
    return settings_from_mapping(table, env, base_dir=path.parent, config_path=path)


def settings_from_mapping(
    table: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    base_dir: Path = Path(),
    config_path: Path | None = None,
) -> Settings:
    """Validate a parsed configuration against the schema (`bot.settings_schema`) and check what
    one table says about another; relative paths are resolved against `base_dir`.

    Raises `ConfigError` listing every fault, each naming its key's path.
    """
    read, problems = _read_tables(table)
    file = read.tables
    models = table.get("models", {})
    if not isinstance(models, Mapping):
        problems.append(f"`models` should be a table, not {toml_value(models)}.")
        models = {}
    models = anchored_models(models, base_dir)
    catalogue = valid = None
    try:  # each [models.NAME] table is validated against `ModelTable` here
        catalogue = Catalogue.from_config(models)
    except CatalogueError as error:
        problems.extend(error.problems)
        valid = error.valid
    loras = LoraCatalogue()
    try:
        loras = LoraCatalogue.from_config(
            anchored_loras(_table(table, "loras", problems), base_dir)
        )
    except SettingsProblems as error:
        problems.extend(error.problems)
    model_names = list(dict.fromkeys([*(catalogue or Catalogue.builtin()), *models]))
    default_model = _raw(table, "defaults", "model")
    if isinstance(default_model, str) and default_model not in model_names:
        problems.append(f"`defaults.model` {toml_value(default_model)} is not a configured model.")
    problems += [
        f"`dm_blocklist` {json.dumps(term)}: {problem}"  # escaped: invisible ones show
        for term in file.dm_blocklist
        if (problem := term_problem(term))
    ]
    if file.workers.backoff_s > file.workers.max_backoff_s:
        problems.append(
            f"`workers.backoff_s` ({file.workers.backoff_s:g}) is more than "
            f"`workers.max_backoff_s` ({file.workers.max_backoff_s:g})."
        )
    gpus, problems = _workers(table, read, catalogue or valid, model_names, problems)
    problems += _ray_problems(read, env)
    hosted_api = None
    try:
        hosted_api = ApiSettings.from_environment(env)
    except SettingsError as error:
        problems.append(str(error))
    api_models = hosted_models(env) if hosted_api else ()
    offered = (catalogue or valid or Catalogue.builtin()).with_hosted(api_models)
    if file.edit.model is not None:
        every_api_model = frozenset(model.name for model in HOSTED_MODELS)
        problem = config_problem(
            file.edit.model,
            offered,
            every_api_model,
            lambda model: not gpus or any(gpu.may_run(model) for gpu in gpus),
        )
        problems += [problem] if problem else []
    if problems:
        raise ConfigError(problems)
    assert catalogue is not None
    data_dir = Path(file.data_dir).expanduser()
    return Settings(
        token=Secret(env.get("DISCORD_TOKEN", "").strip()),
        data_dir=data_dir if data_dir.is_absolute() else base_dir / data_dir,
        catalogue=offered,
        hosted_api=hosted_api,
        gpus=tuple(gpus),
        defaults=file.defaults,
        limits=file.limits.scheduler_settings(),
        hosted=file.hosted,
        progress=file.progress,
        edit=file.edit,
        speed=file.speed,
        loras=loras,
        observability=file.observability,
        workers=file.workers,
        ray=file.ray,
        owner_ids=frozenset(file.owner_ids),
        admin_role_ids=frozenset(file.admin_role_ids),
        allowed_channel_ids=frozenset(file.allowed_channel_ids),
        guild_ids=tuple(sorted(set(file.guild_ids))),
        allow_dms=file.allow_dms,
        dm_blocklist=file.dm_blocklist,
        download_timeout_s=file.download_timeout_s,
        api_base=env.get("DISCORD_API_BASE") or None,
        gateway_url=env.get("DISCORD_GATEWAY_URL") or None,
        config_path=config_path,
    )


@dataclass(frozen=True, slots=True)
class _File:
    tables: AtelierFile
    gpus: tuple[tuple[int, GpuTable], ...]  # (index in the file, table) of the valid ones


def _read_tables(table: Mapping[str, Any]) -> tuple[_File, list[str]]:
    """The file as far as it is valid (a faulty table keeps its defaults), and every fault."""
    if not isinstance(table, Mapping):
        return _File(AtelierFile(), ()), ["The configuration should be a TOML table."]
    problems = [f"Unknown setting `{key}`." for key in sorted(set(table) - set(FILE_KEYS))]
    values: dict[str, Any] = {}
    for key, kind in FILE_KEYS.items():
        if key in table and key not in ("models", "gpus", "loras"):  # catalogues read those
            try:
                values[key] = validate_table(kind, table[key], key)
            except SettingsProblems as error:
                problems.extend(error.problems)
    gpus = table.get("gpus", [])
    if not isinstance(gpus, list):
        problems.append(f"`gpus` should be a list of [[gpus]] tables, not {toml_value(gpus)}.")
        gpus = []
    valid_gpus = []
    for index, item in enumerate(gpus):  # one by one, so that a faulty one hides nothing
        try:
            valid_gpus.append((index, validate_table(GpuTable, item, "gpus", index)))
        except SettingsProblems as error:
            problems.extend(error.problems)
    return _File(AtelierFile(**values), tuple(valid_gpus)), problems


def _workers(
    table: Mapping[str, Any],
    read: _File,
    catalogue: Catalogue | None,
    names: list[str],
    problems: list[str],
) -> tuple[list[WorkerConfig], list[str]]:
    """The valid `[[gpus]]` tables as workers, and `problems` with every fault of every table:
    the models a faulty table names are checked too, and two spellings of one device clash."""
    valid = dict(read.gpus)
    raw = table.get("gpus") if isinstance(table.get("gpus"), list) else []
    workers: list[WorkerConfig] = []
    seen: dict[str, tuple[int, str]] = {}  # each device, spelt one way → first table, spelling
    for index, item in enumerate(raw):
        where = f"`gpus[{index}]`"
        gpu = valid.get(index)
        if gpu is None:  # its own faults are listed; the models it names are checked still
            named = {key: _names(item, key) for key in ("models", "pinned")}
            found = model_problems("it", **named, vram_gb=None, catalogue=names)
        else:
            who = f"Worker {toml_value(gpu.device or gpu.worker_id)}"
            fit_problems, profiles = [], gpu.profiles
            try:
                worker = fit_profiles(gpu.worker(read.tables.ray), catalogue)
            except SettingsProblems as error:
                fit_problems = error.problems
            else:
                workers.append(worker)
                profiles = dict(worker.profiles)  # pinned models are checked as they will run
                fit_problems = worker.spread_problems(catalogue) if catalogue else []
            found = fit_problems + model_problems(
                who,
                gpu.models,
                gpu.pinned,
                None if gpu.devices else gpu.vram_gb,  # per card: `spread_problems`
                catalogue or names,
                names,
                profiles=profiles,
                device=gpu.main_device if gpu.backend != "ray" else None,
            )
        problems += [f"{where}: {p}" for p in found]
        if not isinstance(item, Mapping) or item.get("backend") == "ray":
            continue  # (a Ray table's device is one of another machine)
        devices = [item.get("device"), *(item.get("devices") or [])]
        for device in devices:
            if not (isinstance(device, str) and DEVICE_PATTERN.fullmatch(device)):
                continue
            first, spelt = seen.setdefault(canonical_device(device), (index, device))
            if first != index:
                problems.append(
                    f"{where}: device {toml_value(device)} is the same device as "
                    f"`gpus[{first}]`'s {toml_value(spelt)}; list each device once."
                )
    return workers, problems


def _ray_problems(read: _File, env: Mapping[str, str]) -> list[str]:
    """What stops the `[[gpus]]` tables with `backend = "ray"` from joining `[ray]`'s cluster."""
    ray = read.tables.ray
    problems = []
    remote = [(index, gpu) for index, gpu in read.gpus if gpu.backend == "ray"]
    for index, gpu in read.gpus:
        where = f"`gpus[{index}]`"
        if gpu.backend == "ray" and gpu.node is None:
            problems.append(
                f"{where}: a Ray GPU needs `node`: its node's id, IP address or custom resource."
            )
        unused = [key for key in ("node", "id", "num_gpus") if getattr(gpu, key) is not None]
        if gpu.backend == "local" and unused:
            problems.append(f'{where}: `{unused[0]}` is only for `backend = "ray"`.')
        if gpu.backend == "ray":
            problems += [f"{where}: {p}" for p in _remote_gpu_problems(gpu)]
    ids: dict[str, tuple[int, GpuTable]] = {}
    for index, gpu in read.gpus:  # a Ray GPU's id is a name: "Box" and "box" are one
        key = gpu.worker_id.casefold() if gpu.backend == "ray" else gpu.worker_id
        first, other = ids.setdefault(key, (index, gpu))
        if first != index and "ray" in (gpu.backend, other.backend):  # local: one per device
            problems.append(
                f"`gpus[{index}]`: its worker id {toml_value(gpu.worker_id)} is also "
                f"`gpus[{first}]`'s; give each Ray GPU its own `id`."
            )
    if not remote:
        return problems
    if not ray.address:
        problems.append(
            '`[[gpus]]` with `backend = "ray"` need the cluster: set `[ray] address` '
            '("HOST:6379", or "auto" on the head node).'
        )
    elif problem := connection_problem(ray.address, ray.allow_insecure, env):
        problems.append(f"`ray.address`: {problem}")
    if importlib.util.find_spec("ray") is None:
        problems.append(
            "Ray is not installed, and `[[gpus]]` tables use it: install Atelier with "
            "`pip install '.[ray]'` from its checkout."
        )
    return problems


def _remote_gpu_problems(gpu: GpuTable) -> list[str]:
    """What is wrong with one `[[gpus]]` table with `backend = "ray"` on its own."""
    problems = [p for p in [node_problem(gpu.node or "x")] if p]
    if gpu.device not in ("cuda", "cpu"):
        problems.append(
            f"device {toml_value(gpu.device)}: inside its actor a Ray GPU is always "
            '`device = "cuda"` (Ray shows it only the GPU it reserved), or "cpu".'
        )
    share = 1.0 if gpu.num_gpus is None else gpu.num_gpus
    if problem := gpu_share_problem(share, gpu.device):
        problems.append(problem)
    if gpu.id is not None and DEVICE_PATTERN.fullmatch(gpu.id.strip().lower()):
        problems.append(
            f"`id` {toml_value(gpu.id)} looks like a device of this machine: give the Ray GPU "
            'a name of its own, such as "box-gpu0".'
        )
    return problems


def _names(item: Any, key: str) -> list[str]:
    value = item.get(key) if isinstance(item, Mapping) else None
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _raw(table: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        table = table.get(key) if isinstance(table, Mapping) else None
    return table


def apply_discord_endpoints(settings: Settings) -> None:
    """Repoint discord.py's REST base and gateway where the settings name other endpoints.

    Only the tests' fake Discord (and people running a Discord-compatible server) need this.
    """
    if settings.api_base:
        import discord.http

        discord.http.Route.BASE = settings.api_base.rstrip("/")
    if settings.gateway_url:
        import yarl
        from discord.gateway import DiscordWebSocket

        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)


FILE_KEYS = get_type_hints(AtelierFile, include_extras=True)  # key → its declared type


def _table(table: Mapping[str, Any], key: str, problems: list[str]) -> Mapping[str, Any]:
    """`table[key]` when it is a table (else a problem is added and an empty table returned)."""
    value = table.get(key, {})
    if isinstance(value, Mapping):
        return value
    problems.append(f"`{key}` should be a table, not {toml_value(value)}.")
    return {}
