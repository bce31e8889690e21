"""The worker boundary: plain messages both ways, and the `WorkerLink` the pool drives.

Everything that crosses is a frozen dataclass of plain values (str, int, float, bytes, tuples,
`GenerationRequest`, `GeneratedImage`, `ModelSpec`), so any transport can carry it: a socket to
a child process (`generation.workers.process`), which for a GPU of another machine is a relay
that turns them into calls to a Ray actor (`generation.workers.ray_relay`).
The conversation:

    pool → worker   RunJob, CancelJob, LoadModel, UnloadModel, Shutdown
    worker → pool   WorkerReady once started (or WorkerFailed, and the worker exits, when it
                    cannot start: no such GPU, an engine that cannot be built), then per
                    job StepDone* followed by exactly one of JobDone / JobError / JobStopped,
                    and ModelLoaded / ModelUnloaded / ModelLoadFailed as models come and go,
                    and ProfilesNow whenever the memory profiles of its models change.

A worker runs one command at a time in the order received, except CancelJob, which takes effect
at once (within one denoising step). If the worker dies, its event stream simply ends.
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from generation.jobs import GeneratedImage
from generation.models import ModelSpec
from generation.request import GenerationRequest
from generation.workers.config import WorkerConfig

DEFAULT_ENGINE = "generation.engine:Engine"


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """Everything a worker needs to start: its configuration, the catalogue as plain specs, and
    the engine to build (`"module:callable"`, called as `factory(catalogue, device, **options)`)."""

    config: WorkerConfig
    models: tuple[ModelSpec, ...]
    engine_factory: str = DEFAULT_ENGINE
    engine_options: Mapping[str, Any] = field(default_factory=dict)


# ---- commands: pool → worker -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunJob:
    job_id: int
    request: GenerationRequest


@dataclass(frozen=True, slots=True)
class CancelJob:
    job_id: int


@dataclass(frozen=True, slots=True)
class LoadModel:
    model: str
    pin: bool = False  # keep it loaded: never unloaded to make room


@dataclass(frozen=True, slots=True)
class UnloadModel:
    model: str  # also unpins it


@dataclass(frozen=True, slots=True)
class Shutdown:
    pass


Command = RunJob | CancelJob | LoadModel | UnloadModel | Shutdown


# ---- events: worker → pool ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerReady:
    pid: int
    loaded: tuple[str, ...]
    memory: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WorkerFailed:
    """The worker cannot start here; retrying at once would fail the same way."""

    reason: str  # a sentence for an operator, such as "cuda:1: this machine has no such GPU."


@dataclass(frozen=True, slots=True)
class StepDone:
    job_id: int
    step: int
    total: int
    preview: bytes | None = None


@dataclass(frozen=True, slots=True)
class JobDone:
    job_id: int
    images: tuple[GeneratedImage, ...]
    gpu_seconds: float
    memory: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobError:
    job_id: int
    kind: str  # an EngineError kind: "out_of_memory", "model_unavailable", "error"
    reason: str  # a sentence for the person who asked
    gpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class JobStopped:
    job_id: int  # cancelled; nothing was kept
    gpu_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    model: str
    seconds: float
    loaded: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelUnloaded:
    model: str
    loaded: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ModelLoadFailed:
    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class ProfilesNow:
    """The memory profiles of this worker's models (model, profile name) pairs: `own`, those
    it holds each model with (configured, or learnt: lowered after running out of memory at the
    native size), and `held`, those its loaded models are held with now (a job stepped down
    for itself, or a rerun held with its parent's, differs from `own`)."""

    own: tuple[tuple[str, str], ...]
    held: tuple[tuple[str, str], ...]


WorkerEvent = (
    WorkerReady
    | WorkerFailed
    | StepDone
    | JobDone
    | JobError
    | JobStopped
    | ModelLoaded
    | ModelUnloaded
    | ModelLoadFailed
    | ProfilesNow
)


class WorkerGone(ConnectionError):
    """The worker is not running (it died or was stopped); a command could not be delivered."""


class WorkerLink(Protocol):
    """The pool's handle on one worker, wherever it runs."""

    @property
    def pid(self) -> int | None:
        """The worker's process id where it has one (for operators and tests)."""

    async def start(self) -> None:
        """Launch the worker. Its first event is `WorkerReady`; if it cannot start, the event
        stream ends instead."""

    def events(self) -> AsyncIterator[WorkerEvent]:
        """The worker's events in order; the iteration ends when the worker is gone."""

    async def send(self, command: Command) -> None:
        """Deliver a command; raises `WorkerGone` when the worker is gone."""

    async def stop(self, timeout_s: float) -> None:
        """Ask the worker to exit after its current command; kill it after `timeout_s`."""

    async def kill(self) -> None:
        """End the worker at once (whatever it is doing is lost)."""


LinkFactory = Callable[[WorkerSpec], WorkerLink]


# ---- framing for byte streams: 4-byte big-endian length, then a pickle -------------------------
# Pickle is safe here: both ends are this program. Model weights are never unpickled.

_HEADER = struct.Struct(">I")


def encode(message: Command | WorkerEvent | WorkerSpec) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


def read_message(stream: BinaryIO) -> Any:
    """Read one message from a blocking stream; raises EOFError at the end."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    body = stream.read(size)
    if len(body) < size:
        raise EOFError
    return pickle.loads(body)


async def read_message_async(reader: asyncio.StreamReader) -> Any:
    """Read one message from an asyncio stream; raises EOFError at the end."""
    try:
        (size,) = _HEADER.unpack(await reader.readexactly(_HEADER.size))
        return pickle.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError) as error:
        raise EOFError from error
