"""The scheduler's vocabulary: settings, errors, worker views, decisions and listings."""

from __future__ import annotations

import math
from dataclasses import dataclass

from generation.errors import EngineError
from generation.input_images import UnusableImage, check_header
from generation.jobs import Priority
from generation.request import GenerationRequest


class QueueFull(EngineError):
    """The user (or the whole queue) has as many waiting jobs as allowed."""

    kind = "queue_full"


class NotAccepting(EngineError):
    """The queue is closed because Atelier is shutting down."""

    kind = "not_accepting"

    def __init__(self) -> None:
        super().__init__("Atelier is shutting down and takes no new jobs; try again in a minute.")


# FLUX.2 [klein] scales a reference above 1024² pixels down to that area (diffusers 0.42,
# `Flux2KleinPipeline.__call__`); FLUX.1 Kontext resizes its one to a trained size near it.
REFERENCE_MAX_MEGAPIXELS = 1024 * 1024 / 1_000_000


def work_units(request: GenerationRequest) -> float:
    """The size of a request, in denoising steps x megapixels x images.

    Multiplied by a model's speed (seconds per unit) it estimates the job's GPU-seconds; img2img
    runs only `strength` of the steps. Reference images count their megapixels (at most
    `REFERENCE_MAX_MEGAPIXELS` each) beside the image's: klein and Kontext append their latent
    tokens to the image's at every step, for every image made. Linear in tokens, like the rest.
    """
    steps = request.steps * (request.strength if request.init_image is not None else 1.0)
    pixels = request.megapixels + sum(map(_reference_megapixels, request.input_images))
    return max(steps, 1.0) * pixels * request.count


def _reference_megapixels(image: bytes) -> float:
    try:
        width, height = check_header(image)
    except UnusableImage:  # stored references are checked; an estimate never fails
        return REFERENCE_MAX_MEGAPIXELS
    return min(width * height / 1_000_000, REFERENCE_MAX_MEGAPIXELS)


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """The limits and knobs an owner can set (per-user values can be overridden in `JobOwner`).

    - `max_queued` (int >= 1, default 5): waiting jobs per person; one more is refused.
    - `max_running` (int >= 1, default 1): running jobs per person of weight 1 while others
      wait; a person's cap is `ceil(max_running x weight / w)`, w the least weight below 1 of
      anyone known (else 1) (soft: a GPU never idles for it).
    - `queue_capacity` (int >= 1 or None, default None): waiting jobs of everyone together.
    - `ageing_s` (seconds > 0 or None, default 600): how long a `relax` job waits before it
      competes in the `normal` class as a newcomer would (None: relax waits for an empty queue).
    - `swap_lead_s` (GPU-seconds >= 0, default 120): how far ahead in weighted GPU time a
      person may be of the fairest one and still go first to save a model load (their job's
      model is loaded on an idle GPU, or loaded on no GPU while the fairest job's is on a busy
      one); also the most estimated GPU-seconds of such jobs that may go before any one job
      (0: never).
    - `speed_smoothing` (0 < x <= 1, default 0.3): weight of each new measurement in a model's
      measured speed (an exponential moving average).
    """

    max_queued: int = 5
    max_running: int = 1
    queue_capacity: int | None = None
    ageing_s: float | None = 600.0
    swap_lead_s: float = 120.0
    speed_smoothing: float = 0.3

    def __post_init__(self) -> None:
        if self.max_queued < 1 or self.max_running < 1:
            raise ValueError("max_queued and max_running must be at least 1.")
        if self.queue_capacity is not None and self.queue_capacity < 1:
            raise ValueError("queue_capacity must be at least 1 (or unset for no limit).")
        if self.ageing_s is not None and self.ageing_s <= 0:
            raise ValueError("ageing_s must be positive (or unset to turn ageing off).")
        if not self.swap_lead_s >= 0 or math.isinf(self.swap_lead_s):
            raise ValueError("swap_lead_s must be zero or a positive number of seconds.")
        if not 0.0 < self.speed_smoothing <= 1.0:
            raise ValueError("speed_smoothing must be in (0, 1].")

    def running_cap(self, weight: float, override: int | None = None) -> int:
        """A person's running cap: `override` when an admin set one, else `max_running`
        scaled by the (relative) weight and rounded up, so weights hold on any number of GPUs."""
        if override:
            return override
        return max(1, math.ceil(self.max_running * weight - 1e-9))


@dataclass(frozen=True, slots=True)
class WorkerView:
    """What the scheduler needs to know of an idle worker."""

    id: str
    models: frozenset[str] | None = None  # models it may run; None: any
    loaded: frozenset[str] = frozenset()

    def may_run(self, model: str) -> bool:
        return self.models is None or model in self.models


@dataclass(frozen=True, slots=True)
class Assignment:
    """A dispatch decision: run `job_id` on `worker_id`; it is now running."""

    job_id: int
    worker_id: str
    estimate_s: float


@dataclass(frozen=True, slots=True)
class WaitingJob:
    """A waiting job as a queue listing shows it."""

    job_id: int
    user_id: int
    model: str
    priority: Priority  # its class now, ageing included
    position: int  # 1 = next to run
    eta_s: float | None  # estimated seconds until it starts; None while the queue is paused
