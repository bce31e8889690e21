"""How many denoising steps an image-to-image job really runs, counted as each family's diffusers
pipeline counts them. Needs no torch: the bot uses it to offer only buttons that make a job.

img2img starts part-way along the schedule: of `steps` scheduled steps it runs the last ones,
how many depending on `strength`. The two families round differently (diffusers 0.42):

- `StableDiffusionXLImg2ImgPipeline.get_timesteps` (Playground):
  `init = min(int(steps * strength), steps)`; it runs `init` steps, so 2 steps at strength 0.35
  run none (and the pipeline refuses the call).
- `FluxImg2ImgPipeline.get_timesteps` (FLUX.1): `t_start = int(max(steps - steps * strength, 0))`;
  it runs `steps - t_start`, which is at least 1 for any strength above 0.

`tests/generation/test_img2img_steps.py` checks these against the pipelines' own methods.
"""

from __future__ import annotations

from generation.models import Family


def denoising_steps(family: Family, steps: int, strength: float) -> int:
    """The denoising steps an img2img call with `steps` and `strength` (0-1] runs."""
    if family is Family.PLAYGROUND:
        return min(int(steps * strength), steps)
    t_start = int(max(steps - min(steps * strength, steps), 0))
    return steps - t_start


def steps_that_run(family: Family, steps: int, strength: float, max_steps: int) -> int | None:
    """`steps` (at most `max_steps`) where it runs at least one denoising step, else the fewest
    steps up to `max_steps` that do; None where no step count up to `max_steps` does."""
    for candidate in range(max(min(steps, max_steps), 1), max_steps + 1):
        if denoising_steps(family, candidate, strength) >= 1:
            return candidate
    return None
