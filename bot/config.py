"""Typed settings: a TOML file for everything, the environment for secrets and test hooks.

The token comes ONLY from the environment (`DISCORD_TOKEN`) and is wrapped in `Secret`, whose
`repr`/`str` never show it, so it cannot end up in a log line or a traceback by accident.

Environment variables:
- `DISCORD_TOKEN`: the bot token (required to run).
- `ATELIER_CONFIG`: the configuration file (default `atelier.toml` in the working directory).
- `DISCORD_API_BASE` / `DISCORD_GATEWAY_URL`: point discord.py at another Discord (the tests'
  fake server); see `apply_discord_endpoints`.

`load_settings` collects every problem it finds and raises one `ConfigError` listing them all,
so an owner fixes the file in one go.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.observability.settings import ObservabilityConfigError, ObservabilitySettings
from generation.config_file import config_path_from_env
from generation.models import Catalogue, CatalogueError
from generation.request import MAX_COUNT, RequestError, parse_aspect
from generation.scheduler import SchedulerSettings
from generation.speed_options import SpeedConfigError, SpeedOptions
from generation.workers.config import WorkerConfig

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
class UserDefaults:
    """What `/imagine` uses when a person sets neither an option nor a personal default."""

    model: str | None = None  # None: the catalogue's first model
    aspect: str = "1:1"
    count: int = 1
    negative_prompt: str = ""


@dataclass(frozen=True, slots=True)
class ProgressSettings:
    """How often a job's progress message is edited, and how often it carries a preview."""

    edit_interval_s: float = 1.5
    preview_interval_s: float = 5.0
    queue_refresh_s: float = 15.0  # how often a waiting job's position is looked up again


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the bot needs to run, validated."""

    token: Secret
    data_dir: Path
    catalogue: Catalogue
    gpus: tuple[WorkerConfig, ...] = ()  # empty: one worker per GPU found (or one CPU worker)
    defaults: UserDefaults = UserDefaults()
    limits: SchedulerSettings = field(default_factory=SchedulerSettings)
    progress: ProgressSettings = ProgressSettings()
    speed: SpeedOptions = field(default_factory=SpeedOptions)  # the workers' CUDA pipelines
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
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

    Raises `FileNotFoundError` when the file is missing and `ConfigError` listing every fault.
    """
    env = os.environ if env is None else env
    path = config_path_from_env(env) if path is None else path
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([f"{path} is not valid TOML: {error}."]) from None
    return settings_from_mapping(table, env, base_dir=path.parent, config_path=path)


def settings_from_mapping(
    table: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    base_dir: Path = Path(),
    config_path: Path | None = None,
) -> Settings:
    """Validate a parsed configuration; relative paths are resolved against `base_dir`."""
    reader = _Reader(table)
    models_config = reader.table("models")
    model_problems = len(reader.problems)
    for name, model in models_config.items():  # one by one, to report every faulty model
        reader.guard(
            lambda n=name, m=model: Catalogue.from_config({n: m}), CatalogueError, TypeError
        )
    catalogue = None
    if len(reader.problems) == model_problems:
        catalogue = reader.guard(lambda: Catalogue.from_config(models_config), CatalogueError)
    model_names = set(catalogue or Catalogue.builtin()) | set(models_config)

    data_dir = Path(reader.value("data_dir", str, "data")).expanduser()
    if not data_dir.is_absolute():
        data_dir = base_dir / data_dir

    gpus = tuple(
        _gpu(reader, index, item, catalogue)
        for index, item in enumerate(reader.value("gpus", list, []))
    )
    devices = [gpu.device for gpu in gpus]
    if len(set(devices)) != len(devices):
        reader.problems.append("`gpus` lists the same device twice.")
    defaults = _defaults(reader, model_names)
    limits = _limits(reader)
    progress_table = reader.table("progress")
    progress = ProgressSettings(
        edit_interval_s=reader.number(progress_table, "progress.edit_interval_s", 1.5, 0.2),
        preview_interval_s=reader.number(progress_table, "progress.preview_interval_s", 5.0, 0.5),
        queue_refresh_s=reader.number(progress_table, "progress.queue_refresh_s", 15.0, 0.5),
    )
    reader.reject_unknown(progress_table, set(ProgressSettings.__dataclass_fields__), "progress.")
    speed_table = reader.table("speed")
    speed = reader.guard(lambda: SpeedOptions.from_config(speed_table), SpeedConfigError)
    observability = reader.guard(
        lambda: ObservabilitySettings.from_config(reader.table("observability")),
        ObservabilityConfigError,
    )
    owner_ids, admin_role_ids = reader.ids("owner_ids"), reader.ids("admin_role_ids")
    allowed_channel_ids, guild_ids = reader.ids("allowed_channel_ids"), reader.ids("guild_ids")
    allow_dms = reader.value("allow_dms", bool, False)
    dm_blocklist = reader.value("dm_blocklist", list, [])
    if not all(isinstance(term, str) and term.strip() for term in dm_blocklist):
        reader.problems.append("`dm_blocklist` should be a list of words or patterns (text).")
        dm_blocklist = []
    download_timeout_s = reader.number(table, "download_timeout_s", 20.0, 0.1)
    reader.reject_unknown(table, _TOP_LEVEL_KEYS, "")
    if reader.problems:
        raise ConfigError(reader.problems)
    assert catalogue is not None
    return Settings(
        token=Secret(env.get("DISCORD_TOKEN", "").strip()),
        data_dir=data_dir,
        catalogue=catalogue,
        gpus=gpus,
        defaults=defaults,
        limits=limits,
        progress=progress,
        speed=speed,
        observability=observability,
        owner_ids=owner_ids,
        admin_role_ids=admin_role_ids,
        allowed_channel_ids=allowed_channel_ids,
        guild_ids=tuple(sorted(guild_ids)),
        allow_dms=allow_dms,
        dm_blocklist=tuple(dm_blocklist),
        download_timeout_s=download_timeout_s,
        api_base=env.get("DISCORD_API_BASE") or None,
        gateway_url=env.get("DISCORD_GATEWAY_URL") or None,
        config_path=config_path,
    )


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


_TOP_LEVEL_KEYS = {
    "data_dir",
    "models",
    "gpus",
    "defaults",
    "limits",
    "progress",
    "speed",
    "observability",
    "owner_ids",
    "admin_role_ids",
    "allowed_channel_ids",
    "guild_ids",
    "allow_dms",
    "dm_blocklist",
    "download_timeout_s",
}


class _Reader:
    """Reads typed values out of the parsed TOML and collects problems instead of stopping."""

    def __init__(self, table: Mapping[str, Any]) -> None:
        self.root = table
        self.problems: list[str] = []

    def guard(self, build: Any, *errors: type[Exception]) -> Any:
        try:
            return build()
        except errors as error:
            self.problems.extend(getattr(error, "problems", None) or [str(error)])
            return None

    def value(
        self,
        key: str,
        kind: type,
        default: Any,
        table: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> Any:
        source = self.root if table is None else table
        value = source.get(key, default)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.problems.append(
                f"`{name or key}` should be {_KIND_NAMES.get(kind, kind.__name__)}, not {value!r}."
            )
            return default
        return value

    def table(self, key: str) -> dict[str, Any]:
        return dict(self.value(key, dict, {}))

    def number(self, table: Mapping[str, Any], name: str, default: float, minimum: float) -> float:
        key = name.rpartition(".")[2]
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
            self.problems.append(f"`{name}` should be a number of at least {minimum:g}.")
            return default
        return float(value)

    def count(self, table: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
        key = name.rpartition(".")[2]
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problems.append(f"`{name}` should be a whole number of at least {minimum}.")
            return default
        return value

    def ids(self, key: str) -> frozenset[int]:
        values = self.value(key, list, [])
        good = {v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0}
        if len(good) != len(values):
            self.problems.append(f"`{key}` should be a list of Discord ids (numbers, no quotes).")
        return frozenset(good)

    def reject_unknown(self, table: Mapping[str, Any], known: set[str], prefix: str) -> None:
        for key in sorted(set(table) - known):
            self.problems.append(f"Unknown setting `{prefix}{key}`.")


_KIND_NAMES = {
    bool: "true or false",
    str: "text",
    list: "a list",
    dict: "a table",
    int: "a whole number",
}


def _gpu(reader: _Reader, index: int, item: Any, catalogue: Catalogue | None) -> WorkerConfig:
    name = f"gpus[{index}]"
    if not isinstance(item, dict):
        reader.problems.append(f"`{name}` should be a table with a `device`.")
        return WorkerConfig(name, "cpu")
    reader.reject_unknown(item, {"device", "models", "max_models", "vram_gb", "pinned"}, f"{name}.")
    device = reader.value("device", str, "cuda:0", item, f"{name}.device")
    models = [str(m) for m in reader.value("models", list, [], item, f"{name}.models")]
    vram = item.get("vram_gb")
    try:
        worker = WorkerConfig(
            id=device,
            device=device,
            models=frozenset(models) or None,
            max_models=reader.count(item, f"{name}.max_models", 1, 1),
            vram_gb=None if vram is None else reader.number(item, f"{name}.vram_gb", 0.0, 0.1),
            pinned=tuple(str(m) for m in reader.value("pinned", list, [], item, f"{name}.pinned")),
        )
        if catalogue is not None:
            worker.check_models(catalogue)
    except ValueError as error:
        reader.problems.append(f"`{name}`: {error}")
        return WorkerConfig(name, "cpu")
    return worker


def _defaults(reader: _Reader, model_names: set[str]) -> UserDefaults:
    table = reader.table("defaults")
    model = table.get("model")
    if model is not None and model not in model_names:
        reader.problems.append(f"`defaults.model` {model!r} is not a configured model.")
        model = None
    aspect = reader.value("aspect", str, "1:1", table, "defaults.aspect")
    try:
        parse_aspect(aspect)
    except RequestError as error:
        reader.problems.append(f"`defaults.aspect`: {error.message}")
        aspect = "1:1"
    count = reader.count(table, "defaults.count", 1, 1)
    if count > MAX_COUNT:
        reader.problems.append(f"`defaults.count` should be at most {MAX_COUNT}.")
        count = 1
    negative = reader.value("negative_prompt", str, "", table, "defaults.negative_prompt")
    reader.reject_unknown(table, {"model", "aspect", "count", "negative_prompt"}, "defaults.")
    return UserDefaults(model=model, aspect=aspect, count=count, negative_prompt=negative)


def _limits(reader: _Reader) -> SchedulerSettings:
    table = reader.table("limits")
    reader.reject_unknown(
        table, {"max_queued", "max_running", "queue_capacity", "ageing_s"}, "limits."
    )
    ageing = table.get("ageing_s", 600.0)
    return SchedulerSettings(
        max_queued=reader.count(table, "limits.max_queued", 5, 1),
        max_running=reader.count(table, "limits.max_running", 1, 1),
        queue_capacity=reader.count(table, "limits.queue_capacity", 1000, 1),
        ageing_s=None if ageing == 0 else reader.number(table, "limits.ageing_s", 600.0, 1.0),
    )
