"""What the scheduler knows of time: models' speeds and load times, and start-time estimates."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# A running job past its estimate is expected to need at least this share of it more (and at
# least _MIN_LEFT_S): a GPU whose job overruns is never counted as free.
_OVERRUN_SHARE = 0.1
_MIN_LEFT_S = 1.0
_COLD_SMOOTHING = 0.05  # weight of each dispatch in the share of dispatches that load a model


class Estimates:
    """Each model's speed (seconds per work unit, see `work_units`) and load time, measured with
    an exponential moving average from priors, and the share of dispatches that load a model."""

    def __init__(self, priors: Mapping[str, float], smoothing: float) -> None:
        self._priors = dict(priors)
        self._smoothing = smoothing
        self._measured: dict[str, float] = {}
        self._loads: dict[str, float] = {}
        self.cold_share = 0.0  # share of recent dispatches that had to load their model

    def speed(self, model: str) -> float:
        """Seconds per work unit: measured when any job has finished, else the prior (1.0)."""
        return self._measured.get(model) or self._priors.get(model, 1.0)

    def speeds(self) -> dict[str, float]:
        return {model: self.speed(model) for model in {*self._priors, *self._measured}}

    def measure(self, model: str, seconds_per_unit: float) -> None:
        previous = self._measured.get(model)
        alpha = self._smoothing
        self._measured[model] = (
            seconds_per_unit
            if previous is None
            else alpha * seconds_per_unit + (1 - alpha) * previous
        )

    def record_load(self, model: str, seconds: float) -> None:
        previous = self._loads.get(model)
        alpha = self._smoothing
        self._loads[model] = (
            seconds if previous is None else alpha * seconds + (1 - alpha) * previous
        )

    def load_s(self, model: str) -> float:
        """Seconds to load `model` onto a GPU (0 until a load was measured)."""
        return self._loads.get(model, 0.0)

    def mean_load_s(self) -> float:
        return sum(self._loads.values()) / len(self._loads) if self._loads else 0.0

    def record_dispatch(self, cold: bool) -> None:
        self.cold_share += _COLD_SMOOTHING * (float(cold) - self.cold_share)


def left_s(expected_s: float, elapsed_s: float) -> float:
    """Seconds a running job is expected to need still; never 0 while it runs."""
    return max(expected_s - elapsed_s, _OVERRUN_SHARE * expected_s, _MIN_LEFT_S)


def start_after(free_in: Sequence[float], work_s: float) -> float:
    """When a job starts that waits for `work_s` GPU-seconds ahead of it, on GPUs that are free
    in `free_in` seconds (0: free now): the time by which the GPUs, each working from the moment
    it frees, have done that work (water-filling; with no work, the first GPU to free)."""
    times = sorted(free_in)
    if not times:
        return 0.0
    level, left = times[0], work_s
    for count in range(1, len(times) + 1):
        nxt = times[count] if count < len(times) else float("inf")
        room = (nxt - level) * count
        if left <= room:
            return level + left / count
        left -= room
        level = nxt
    return level
