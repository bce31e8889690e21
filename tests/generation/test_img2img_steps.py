"""`generation.img2img` counts img2img steps exactly as each family's diffusers pipeline does:
checked against the pipelines' own `get_timesteps` and the family's real scheduler."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from diffusers import (
    EDMDPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxImg2ImgPipeline,
    StableDiffusionXLImg2ImgPipeline,
)

from generation.img2img import denoising_steps, steps_that_run
from generation.models import Family

STRENGTHS = sorted({*np.round(np.arange(0.01, 1.001, 0.01), 2).tolist(), 0.35, 0.7, 0.3})


def _playground_count(steps: int, strength: float) -> int:
    scheduler = EDMDPMSolverMultistepScheduler(
        sigma_min=0.002, sigma_max=80, sigma_data=0.5, solver_order=2, final_sigmas_type="zero"
    )
    scheduler.set_timesteps(steps)
    pipe = SimpleNamespace(scheduler=scheduler)
    timesteps, count = StableDiffusionXLImg2ImgPipeline.get_timesteps(pipe, steps, strength, "cpu")
    assert len(timesteps) == count * scheduler.order
    return count


def _flux_count(steps: int, strength: float) -> int:
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))  # as FluxImg2ImgPipeline
    pipe = SimpleNamespace(scheduler=scheduler)
    timesteps, count = FluxImg2ImgPipeline.get_timesteps(pipe, steps, strength, "cpu")
    assert len(timesteps) == count
    return count


@pytest.mark.parametrize(
    ("family", "real"), [(Family.PLAYGROUND, _playground_count), (Family.FLUX, _flux_count)]
)
def test_step_count_matches_the_pipeline(family: Family, real: object) -> None:
    for steps in range(1, 51):
        for strength in STRENGTHS:
            assert denoising_steps(family, steps, strength) == real(steps, strength), (  # type: ignore[operator]
                steps,
                strength,
            )


def test_the_issue_examples() -> None:
    # FLUX.1 [schnell], 2 steps, "V subtle" (0.35): diffusers runs one step, so it is valid.
    assert denoising_steps(Family.FLUX, 2, 0.35) == 1
    # Playground at 2 steps and 0.35 runs none; a derived job raises its steps to 3.
    assert denoising_steps(Family.PLAYGROUND, 2, 0.35) == 0
    assert steps_that_run(Family.PLAYGROUND, 2, 0.35, 100) == 3
    assert steps_that_run(Family.PLAYGROUND, 50, 0.35, 100) == 50  # kept where it runs
    assert steps_that_run(Family.PLAYGROUND, 2, 0.05, 16) is None  # 16 steps x 0.05 < 1
