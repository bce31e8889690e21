"""`StandInEngine`: the engine's interface with a known duration and no torch.

Tests and benchmarks use it to exercise the worker pool's mechanics (scheduling, crashes,
cancellation, restarts) in real child processes that start in a fraction of a second. Each step
takes `step_seconds`; a prompt containing a directive misbehaves on purpose:

- `standin:crash` kills its own process at the first step (like a segfault or the OOM killer);
- `standin:oom` raises OutOfMemory; `standin:error` raises an ordinary exception.

Each image is a 16x16 PNG whose `standin` text chunk records, as JSON, the process id, the
memory profile the model would run with, and the `time.monotonic()` at which the run started
and ended (monotonic time is shared by all processes of a Linux machine), so a benchmark can
measure the gaps between jobs. With `image_bytes`, each PNG also carries that many random bytes
(a private chunk), as large real images would: a benchmark can time their delivery.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Callable, Mapping
from typing import Any

from PIL import Image, PngImagePlugin

from generation.errors import Cancelled, ModelUnavailable, OutOfMemory
from generation.jobs import GeneratedImage
from generation.models import Catalogue
from generation.request import GenerationRequest


class StandInEngine:
    """Implements `Engine`'s interface by sleeping."""

    def __init__(
        self,
        catalogue: Catalogue,
        device: str = "cpu",
        *,
        step_seconds: float = 0.01,
        load_seconds: float = 0.0,
        image_bytes: int = 0,
        profiles: Mapping[str, str] | None = None,
        vram_gb: float | None = None,
        devices: tuple[str, ...] = (),  # a worker over several cards: one job at a time, too
    ) -> None:
        self.catalogue = catalogue
        self.device = device
        self.step_seconds = step_seconds
        self.load_seconds = load_seconds
        self.image_bytes = image_bytes
        self.profiles = dict(profiles or {})
        self.devices = tuple(devices)
        self._loaded: list[str] = []

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._loaded)

    def load(self, model: str) -> None:
        if model not in self.catalogue:
            raise ModelUnavailable(f"Unknown model {model!r}.")
        if model not in self._loaded:
            time.sleep(self.load_seconds)
            self._loaded.append(model)

    @property
    def held_profiles(self) -> dict[str, str]:
        return {name: self.profiles.get(name, "full") for name in self._loaded}

    def unload(self, model: str) -> None:
        if model in self._loaded:
            self._loaded.remove(model)

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: Callable[[int, int, bytes | None], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[GeneratedImage]:
        self.load(request.model)
        started = time.monotonic()
        for step in range(1, request.steps + 1):
            if should_cancel is not None and should_cancel():
                raise Cancelled("The job was cancelled.")
            if "standin:crash" in request.prompt:
                os.kill(os.getpid(), signal.SIGKILL)
            if "standin:oom" in request.prompt:
                raise OutOfMemory(f"{self.device} ran out of memory (stand-in).")
            if "standin:error" in request.prompt:
                raise ValueError("stand-in failure")
            time.sleep(self.step_seconds)
            if on_progress is not None:
                on_progress(step, request.steps, None)
        record = {
            "pid": os.getpid(),
            "start": started,
            "end": time.monotonic(),
            "profile": self.profiles.get(request.model, "full"),
        }
        return [
            GeneratedImage(index, seed, _png(record, self.image_bytes), _SIDE, _SIDE)
            for index, seed in enumerate(request.seeds)
        ]


_SIDE = 16  # the images are small whatever the request's size: encoding them takes no time


def _png(record: dict[str, object], padding: int = 0) -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("standin", json.dumps(record))
    if padding:  # "prVt": ancillary, private, safe to copy (PNG specification, section 5.4)
        info.add(b"prVt", os.urandom(padding))
    buffer = io.BytesIO()
    Image.new("RGB", (_SIDE, _SIDE), (40, 90, 160)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def run_record(png: bytes) -> dict[str, Any]:
    """The `standin` record of a stand-in image: pid, start and end."""
    with Image.open(io.BytesIO(png)) as image:
        return json.loads(image.text["standin"])
