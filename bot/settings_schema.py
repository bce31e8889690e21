"""The configuration file's schema: every table and key of `atelier.toml`, typed, ranged, with
its one default.

Each table is a frozen dataclass validated by pydantic (see `generation.config_schema`). Tables
the engine also reads live beside the code that uses them and are composed here: `[speed]` is
`generation.speed_options.SpeedOptions`, `[observability]` is
`bot.observability.settings.ObservabilitySettings`, `[workers]` is
`generation.workers.supervision.SupervisionSettings`, `[ray]` is
`generation.workers.ray_config.RaySettings`, a `[models.NAME]` table is
`generation.models.ModelTable`. The README's configuration tables are checked against this
module (tests/bot/test_settings_schema.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from bot.observability.settings import ObservabilitySettings
from generation.config_schema import (
    TABLE,
    Bool,
    Float,
    Int,
    Name,
    SettingsProblems,
    Text,
    toml_value,
)
from generation.loras import LoraTable
from generation.models import ModelTable
from generation.pool import HostedSettings, SchedulerSettings
from generation.request import MAX_COUNT, RequestError, parse_aspect
from generation.speed_options import SpeedOptions
from generation.workers.config import DEVICE_PATTERN, WorkerConfig
from generation.workers.ray_config import RayPlacement, RaySettings
from generation.workers.supervision import SupervisionSettings

DiscordId = Annotated[Int, Field(gt=0)]


def _aspect(value: str) -> str:
    try:
        parse_aspect(value)
    except RequestError as error:
        raise ValueError(error.message) from None
    return value


def _device(value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise ValueError(f"unknown device {toml_value(value)}; use cpu, cuda or cuda:N.")
    return value


def _default(kind: type, name: str) -> Any:
    """The default of dataclass field `name` of `kind` (the one place it is declared)."""
    return next(f.default for f in fields(kind) if f.name == name)


@dataclass(frozen=True, slots=True)
class UserDefaults:
    """`[defaults]`: what `/imagine` uses when a person sets neither an option nor a personal
    default."""

    __pydantic_config__ = TABLE

    model: Name | None = None  # None: the catalogue's first model
    aspect: Annotated[Text, AfterValidator(_aspect)] = "1:1"
    count: Annotated[Int, Field(ge=1, le=MAX_COUNT)] = 1
    negative_prompt: Text = ""


# ---- [limits]: the scheduler's settings --------------------------------------------------------
# The defaults are SchedulerSettings' own (generation/scheduler.py); this table declares which of
# them an owner may set, their types and ranges, and `scheduler_settings` builds the scheduler's
# value. A new scheduler setting is one line here, one in `scheduler_settings` and one README row.
_SCHEDULER = SchedulerSettings()


@dataclass(frozen=True, slots=True)
class LimitsTable:
    """`[limits]`: per-person limits and the queue's knobs."""

    __pydantic_config__ = TABLE

    max_queued: Annotated[Int, Field(ge=1)] = _SCHEDULER.max_queued
    max_running: Annotated[Int, Field(ge=1)] = _SCHEDULER.max_running
    queue_capacity: Annotated[Int, Field(ge=1)] | None = _SCHEDULER.queue_capacity  # None: none
    ageing_s: Annotated[Float, Field(ge=0)] = _SCHEDULER.ageing_s or 0  # 0: never
    swap_lead_s: Annotated[Float, Field(ge=0, allow_inf_nan=False)] = _SCHEDULER.swap_lead_s

    def scheduler_settings(self) -> SchedulerSettings:
        return SchedulerSettings(
            max_queued=self.max_queued,
            max_running=self.max_running,
            queue_capacity=self.queue_capacity,
            ageing_s=self.ageing_s or None,
            swap_lead_s=self.swap_lead_s,
        )


# ---- [hosted]: Black Forest Labs' API ----------------------------------------------------------
_HOSTED = HostedSettings()
Credits = Annotated[Float, Field(ge=0, allow_inf_nan=False)]


@dataclass(frozen=True, slots=True)
class HostedTable:
    """`[hosted]`: the API key's task slots and the credit budgets (1 credit = $0.01; unset:
    no budget). Budgets set here are applied at each start; `/admin limits` sets a person's."""

    __pydantic_config__ = TABLE

    slots: Annotated[Int, Field(ge=1)] = _HOSTED.slots  # BFL: 24 active tasks per key
    kontext_max_slots: Annotated[Int, Field(ge=1)] = 6  # BFL: 6 for flux-kontext-max
    person_daily_credits: Credits | None = None
    server_daily_credits: Credits | None = None
    server_monthly_credits: Credits | None = None

    def hosted_settings(self) -> HostedSettings:
        model_slots = {"flux-kontext-max": self.kontext_max_slots}
        return HostedSettings(slots=self.slots, model_slots=model_slots)


@dataclass(frozen=True, slots=True)
class ProgressSettings:
    """`[progress]`: how often a job's progress message is edited and carries a preview."""

    __pydantic_config__ = TABLE

    edit_interval_s: Annotated[Float, Field(ge=0.2)] = 1.5
    preview_interval_s: Annotated[Float, Field(ge=0.5)] = 5.0
    queue_refresh_s: Annotated[Float, Field(ge=0.5)] = 15.0  # a waiting job's edits, at most


@dataclass(frozen=True, slots=True)
class EditTable:
    """`[edit]`: the model `/edit` and the Edit button use (None: the first local FLUX.1
    Kontext, then FLUX.2 [klein] model some GPU may run; `bot.editing.editing_model`)."""

    __pydantic_config__ = TABLE

    model: Name | None = None  # a local model that takes references, or a hosted one


@dataclass(frozen=True, slots=True)
class GpuTable:
    """One `[[gpus]]` table: a worker process and what it may do (see `WorkerConfig`)."""

    __pydantic_config__ = TABLE

    device: Annotated[Text, AfterValidator(_device)] | None = None
    # One pipeline over these cards (`generation.placement`), instead of `device`.
    devices: tuple[Annotated[Text, AfterValidator(_device)], ...] = ()
    models: tuple[Name, ...] = ()  # empty: any model
    max_models: Annotated[Int, Field(ge=1)] = _default(WorkerConfig, "max_models")  # noqa: RUF009
    # At most 1 TiB: no card has more (the largest, AMD's MI325X, has 256 GB).
    vram_gb: Annotated[Float, Field(gt=0, le=1024)] | None = None
    pinned: tuple[Name, ...] = ()
    backend: Literal["local", "ray"] = "local"  # "ray": a GPU of another machine, see [ray]
    node: Name | None = None  # ray: its node's id, IP address or custom resource
    id: Name | None = None  # ray: the worker's name (default NODE:DEVICE)
    # ray: GPUs the actor reserves on its node (default 1)
    num_gpus: Annotated[Float, Field(ge=0)] | None = None
    profiles: dict[Name, Name] = field(default_factory=dict)  # model → memory profile

    @property
    def main_device(self) -> str:
        """The device the worker runs on: `device`, or the first of `devices` (what its
        pipeline computes on; the others hold components)."""
        return self.device or (self.devices[0] if self.devices else "")

    @property
    def worker_id(self) -> str:
        if self.backend == "ray":
            return self.id or f"{self.node}:{self.main_device}"
        return "+".join(self.devices) if self.devices and not self.device else self.main_device

    def worker(self, ray: RaySettings | None = None) -> WorkerConfig:
        """Raises ValueError when the table contradicts itself (pins a model it may not run).
        `ray`: the cluster, for a table with `backend = "ray"`."""
        if (self.device is None) == (not self.devices):
            raise SettingsProblems(
                [
                    "set either `device` (one card) or `devices` (one pipeline over several "
                    "cards), not both and not neither."
                ]
            )
        placement = None
        if self.backend == "ray" and ray is not None and self.node is not None:
            placement = RayPlacement(
                address=ray.address,
                node=self.node,
                num_gpus=1.0 if self.num_gpus is None else self.num_gpus,
                allow_insecure=ray.allow_insecure,
                start_timeout_s=ray.start_timeout_s,
            )
        return WorkerConfig(
            id=self.worker_id,
            device=self.main_device,
            devices=self.devices,
            models=frozenset(self.models) or None,
            max_models=self.max_models,
            vram_gb=self.vram_gb,
            pinned=self.pinned,
            ray=placement,
            profiles=tuple(sorted(self.profiles.items())),
        )


@dataclass(frozen=True, slots=True)
class AtelierFile:
    """The whole file. Secrets are never here: the token comes from the environment."""

    __pydantic_config__ = TABLE

    data_dir: Name = "data"  # relative to the file
    owner_ids: tuple[DiscordId, ...] = ()
    admin_role_ids: tuple[DiscordId, ...] = ()
    allowed_channel_ids: tuple[DiscordId, ...] = ()  # empty: every channel
    guild_ids: tuple[DiscordId, ...] = ()  # empty: commands are registered globally
    allow_dms: Bool = False  # commands in DMs too (then `dm_blocklist` applies there)
    dm_blocklist: tuple[Name, ...] = ()  # the installation's blocklist, for jobs asked in DMs
    download_timeout_s: Annotated[Float, Field(ge=0.1)] = 20.0  # an attachment's download
    defaults: UserDefaults = field(default_factory=UserDefaults)
    limits: LimitsTable = field(default_factory=LimitsTable)
    hosted: HostedTable = field(default_factory=HostedTable)
    progress: ProgressSettings = field(default_factory=ProgressSettings)
    edit: EditTable = field(default_factory=EditTable)
    speed: SpeedOptions = field(default_factory=SpeedOptions)
    observability: ObservabilitySettings = field(default_factory=ObservabilitySettings)
    gpus: tuple[GpuTable, ...] = ()  # empty: one worker per GPU found (or one CPU worker)
    workers: SupervisionSettings = field(default_factory=SupervisionSettings)
    ray: RaySettings = field(default_factory=RaySettings)  # GPUs of other machines
    models: dict[Name, ModelTable] = field(default_factory=dict)
    loras: dict[Name, LoraTable] = field(default_factory=dict)
