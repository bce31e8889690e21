"""The engine on the tiny models of every family, through the real diffusers pipelines."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from generation.engine import Engine, check_device
from generation.errors import Cancelled, ModelUnavailable, OutOfMemory
from generation.models import Catalogue
from generation.request import GenerationRequest, build_request
from tests.generation.helpers import pixels

MODELS = ("playground-v2.5", "flux-dev", "flux-schnell")
PROMPT = "a lighthouse on a cliff at dusk"


@pytest.fixture(scope="module")
def engine(tiny_catalogue: Catalogue) -> Engine:
    return Engine(tiny_catalogue, "cpu", preview_every=2)


def png_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("model", MODELS)
def test_each_image_of_a_batch_is_reproduced_alone_by_its_seed(
    engine: Engine, tiny_catalogue: Catalogue, model: str
) -> None:
    request = build_request(tiny_catalogue, model=model, prompt=PROMPT, seeds=[101, 7, 2**40, 9])
    batch = engine.generate(request)
    assert [(image.index, image.seed) for image in batch] == list(enumerate(request.seeds))
    assert all((image.width, image.height) == (64, 64) for image in batch)
    assert len({pixels(image.png).tobytes() for image in batch}) == 4, "seeds must matter"
    for image in batch:
        (solo,) = engine.generate(request.with_seeds((image.seed,)))
        assert np.array_equal(pixels(solo.png), pixels(image.png)), f"seed {image.seed}"


@pytest.mark.parametrize("model", MODELS)
def test_progress_arrives_for_every_step_with_a_preview_every_few(
    engine: Engine, tiny_catalogue: Catalogue, model: str
) -> None:
    request = build_request(tiny_catalogue, model=model, prompt=PROMPT, steps=5, count=3, seed=1)
    events: list[tuple[int, int, bytes | None]] = []
    engine.generate(request, on_progress=lambda *event: events.append(event))
    assert [(step, total) for step, total, _ in events] == [(step, 5) for step in range(1, 6)]
    assert [step for step, _, preview in events if preview] == [2, 4]
    for _, _, preview in events:
        if preview:  # three 8x8 latent images tiled two to a row
            with Image.open(io.BytesIO(preview)) as image:
                assert (image.format, image.size) == ("PNG", (16, 16))


def test_img2img_progress_counts_only_the_steps_it_runs(
    engine: Engine, tiny_catalogue: Catalogue
) -> None:
    init = engine.generate(build_request(tiny_catalogue, prompt=PROMPT, seed=3))[0].png
    request = build_request(
        tiny_catalogue, prompt=PROMPT, seed=4, steps=8, init_image=init, strength=0.5
    )
    steps: list[tuple[int, int]] = []
    engine.generate(request, on_progress=lambda step, total, _: steps.append((step, total)))
    assert steps == [(step, 4) for step in range(1, 5)]


@pytest.mark.parametrize("model", MODELS)
def test_cancelling_mid_run_yields_cancelled_and_no_image(
    engine: Engine, tiny_catalogue: Catalogue, model: str
) -> None:
    request = build_request(tiny_catalogue, model=model, prompt=PROMPT, steps=6, seed=5)
    steps: list[int] = []
    with pytest.raises(Cancelled):
        engine.generate(
            request,
            on_progress=lambda step, total, preview: steps.append(step),
            should_cancel=lambda: len(steps) >= 2,
        )
    assert steps == [1, 2]
    (image,) = engine.generate(request)  # the engine is still usable
    assert image.seed == 5


def test_cancelled_before_the_start_runs_nothing(engine: Engine, tiny_catalogue: Catalogue) -> None:
    steps: list[int] = []
    with pytest.raises(Cancelled, match="before it started"):
        engine.generate(
            build_request(tiny_catalogue, prompt=PROMPT),
            on_progress=lambda step, total, preview: steps.append(step),
            should_cancel=lambda: True,
        )
    assert steps == []


def _smooth_and_blocks() -> tuple[bytes, bytes]:
    y, x = np.mgrid[0:64, 0:64]
    gradient = np.stack([x * 4, y * 4, np.full_like(x, 128)], axis=-1)
    blocks = np.zeros((64, 64, 3))
    blocks[:32, :32], blocks[:32, 32:], blocks[32:, 32:] = (255, 0, 0), 255, (0, 0, 255)
    return png_of(gradient), png_of(blocks)


@pytest.mark.parametrize("model", MODELS)
def test_img2img_moves_further_from_the_init_image_as_strength_grows(
    engine: Engine, tiny_catalogue: Catalogue, model: str
) -> None:
    """With random weights the tiny VAE does not reproduce pixels, so the init image as the
    model sees it is what the lowest strength returns; two different init images show how much
    of the init survives."""
    first, second = _smooth_and_blocks()

    def run(init: bytes, strength: float) -> np.ndarray:
        request = build_request(
            tiny_catalogue,
            model=model,
            prompt=PROMPT,
            seed=8,
            steps=8,
            init_image=init,
            strength=strength,
        )
        return pixels(engine.generate(request)[0].png).astype(float)

    strengths = (0.125, 0.25, 0.5, 1.0)
    from_first = [run(first, strength) for strength in strengths]
    from_second = [run(second, strength) for strength in strengths]
    moved = [np.abs(image - from_first[0]).mean() for image in from_first[:3]]
    assert moved[0] == 0 < moved[1] < moved[2]
    influence = [np.abs(a - b).mean() for a, b in zip(from_first, from_second, strict=True)]
    assert influence[0] > influence[2] > influence[3]
    assert influence[3] < 0.1 * influence[0], "at strength 1 the init image hardly matters"


def test_init_image_is_fitted_to_the_requested_size(
    engine: Engine, tiny_catalogue: Catalogue
) -> None:
    wide = png_of(np.full((40, 200, 3), 90))
    request = build_request(
        tiny_catalogue, prompt=PROMPT, width=96, height=64, init_image=wide, strength=0.5
    )
    (image,) = engine.generate(request)
    assert (image.width, image.height) == (96, 64) == pixels(image.png).shape[1::-1]


def test_schedulers_differ_and_switching_leaves_no_trace(
    engine: Engine, tiny_catalogue: Catalogue
) -> None:
    def run(scheduler: str) -> np.ndarray:
        request = build_request(tiny_catalogue, prompt=PROMPT, seed=12, scheduler=scheduler)
        return pixels(engine.generate(request)[0].png)

    dpm = run("edm-dpmsolver++")
    euler = run("edm-euler")
    assert not np.array_equal(dpm, euler)
    assert np.array_equal(run("edm-dpmsolver++"), dpm)


def test_images_carry_their_metadata(engine: Engine, tiny_catalogue: Catalogue) -> None:
    request = build_request(tiny_catalogue, model="flux-dev", prompt=PROMPT, seeds=[5, 6])
    second = engine.generate(request)[1]
    with Image.open(io.BytesIO(second.png)) as image:
        text = image.text
    assert text["parameters"].startswith(PROMPT + "\nSteps: 4, Sampler: flow-euler")
    assert "Seed: 6, Size: 64x64, Model: flux-dev" in text["parameters"]
    assert GenerationRequest.from_json(request.to_json()) == request


def test_out_of_memory_becomes_its_own_error(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = Engine(tiny_catalogue, "cpu")  # its own: out of memory moves a model's profile
    request = build_request(tiny_catalogue, model="flux-schnell", prompt=PROMPT, count=4)
    engine.load("flux-schnell")

    def exhausted(*args: object, **kwargs: object) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.Linear, "forward", exhausted)
        with pytest.raises(OutOfMemory, match="4 image\\(s\\) of 64x64; try fewer images"):
            engine.generate(request)  # full, then fp8 (the lowest the CPU runs): both fail
    assert engine.profiles["flux-schnell"] == "fp8"
    # The fp8 layers' casting hooks captured the patched forward when the retry loaded them.
    engine.unload("flux-schnell")
    assert len(engine.generate(request)) == 4


def test_load_is_idempotent_and_unload_frees(tiny_catalogue: Catalogue) -> None:
    engine = Engine(tiny_catalogue)
    assert engine.loaded == ()
    engine.load("flux-schnell")
    engine.load("flux-schnell")
    engine.load("flux-dev")
    assert engine.loaded == ("flux-schnell", "flux-dev")
    engine.unload("flux-schnell")
    engine.unload("flux-schnell")
    assert engine.loaded == ("flux-dev",)
    with pytest.raises(ModelUnavailable, match="Unknown model 'sd15'"):
        engine.load("sd15")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("tpu", "Unknown device 'tpu'; use cpu, cuda or cuda:N."),
        ("cuda:99", "Device cuda:99 is not available: this machine has"),
    ],
)
def test_unusable_device_is_refused(device: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_device(device)
    assert check_device("cpu") == "cpu"
