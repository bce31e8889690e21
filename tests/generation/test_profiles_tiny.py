"""Memory profiles end to end on the tiny models (CPU, real diffusers pipelines): each profile the
CPU can run makes its own images, recorded with the job and bit-exact on a rerun; the CUDA-only
ones are skipped with the reason; a rerun asks for its job's profile; out of memory moves one
profile down."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from generation.engine import Engine
from generation.errors import ModelUnavailable, OutOfMemory
from generation.models import Catalogue
from generation.profiles import FAMILY_PROFILES
from generation.request import build_request
from tests.generation.helpers import pixels

PROMPT = "a red kite over the dunes"
CASES = [
    (model, p)
    for model, family in (("playground-v2.5", "playground"), ("flux-dev", "flux"))
    for p in FAMILY_PROFILES[family]  # type: ignore[index]
]


def _request(catalogue: Catalogue, model: str, **changes: object):
    return replace(build_request(catalogue, model=model, prompt=PROMPT, seeds=[5, 6]), **changes)


def _pixels(images) -> list[bytes]:
    return [pixels(image.png).tobytes() for image in images]


@pytest.mark.parametrize(("model", "memory"), CASES, ids=[f"{m}-{p.name}" for m, p in CASES])
def test_each_profile_runs_is_recorded_and_reruns_exactly(
    tiny_catalogue: Catalogue, model: str, memory
) -> None:
    reason = memory.unavailable_on("cpu")
    if reason is not None:
        engine = Engine(tiny_catalogue, "cpu", profiles={model: memory.name})
        with pytest.raises(ModelUnavailable, match="needs a CUDA GPU"):
            engine.load(model)  # refused with the reason, not a library error
        pytest.skip(reason)
    engine = Engine(tiny_catalogue, "cpu", profiles={model: memory.name})
    request = _request(tiny_catalogue, model)
    first = engine.generate(request)
    assert {image.facts.profile for image in first} == {memory.name}
    again = Engine(tiny_catalogue, "cpu", profiles={model: memory.name}).generate(request)
    assert _pixels(again) == _pixels(first)
    if memory.name != "full":
        full = Engine(tiny_catalogue, "cpu").generate(request)
        assert _pixels(full) != _pixels(first), "the profile must change how weights are held"


def test_a_rerun_asks_for_its_jobs_profile_and_says_when_it_cannot(
    tiny_catalogue: Catalogue,
) -> None:
    model = "flux-dev"
    made = Engine(tiny_catalogue, "cpu", profiles={model: "fp8"}).generate(
        _request(tiny_catalogue, model)
    )
    engine = Engine(tiny_catalogue, "cpu")  # this worker holds the model in full
    rerun = engine.generate(_request(tiny_catalogue, model, profile="fp8"))
    assert _pixels(rerun) == _pixels(made)
    assert rerun[0].facts.differences(made[0].facts) == []
    # A profile this device cannot run: the job runs as the worker holds the model, and says so.
    elsewhere = engine.generate(_request(tiny_catalogue, model, profile="nf4-offload"))
    assert elsewhere[0].facts.profile == "full"
    assert elsewhere[0].facts.differences(replace(made[0].facts, profile="nf4-offload")) == [
        "the memory profile (nf4-offload → full: the nf4-offload profile needs a CUDA GPU "
        "(for bitsandbytes NF4 and CPU offload))"
    ]


def test_a_rerun_gets_its_jobs_profile_only_where_it_fits_this_gpu(
    tiny_catalogue: Catalogue,
) -> None:
    model = "flux-dev"  # the tiny FLUX, sized as the real one: full ~34 GiB, fp8 ~20 GiB
    engine = Engine(tiny_catalogue, "cpu", profiles={model: "fp8"}, vram_gb=24.0)
    # A job made before profiles existed reruns as "full", which needs more than 24 GiB.
    old_job = _request(tiny_catalogue, model, seeds=[5], profile="full")
    rerun = engine.generate(old_job)
    assert rerun[0].facts.profile == "fp8"
    parent = replace(rerun[0].facts, profile="full", profile_reason=None)
    [note] = rerun[0].facts.differences(parent)
    assert note.startswith("the memory profile (full → fp8: the full profile needs ~")
    assert note.endswith("GiB, more than this GPU's 24 GiB)")
    assert engine.profiles == {model: "fp8"}  # the worker's own is untouched
    assert engine.generate(_request(tiny_catalogue, model, seeds=[5]))[0].facts.profile == "fp8"
    # Where it fits, the parent's profile is used and nothing differs.
    roomy = Engine(tiny_catalogue, "cpu", profiles={model: "fp8"}, vram_gb=80.0)
    assert roomy.generate(old_job)[0].facts.profile == "full"


def test_out_of_memory_retries_once_one_profile_down(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = "playground-v2.5"
    engine = Engine(tiny_catalogue, "cpu")
    run = Engine._run
    # The one fake: the CPU does not run out of memory on a tiny model, a GPU would.
    full_runs = []

    def out_of_memory_in_full(self, loaded, *args):
        if loaded.memory.name == "full":
            full_runs.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return run(self, loaded, *args)

    monkeypatch.setattr(Engine, "_run", out_of_memory_in_full)
    request = _request(tiny_catalogue, model)
    images = engine.generate(request)
    assert {image.facts.profile for image in images} == {"fp8"}  # offload needs CUDA: skipped
    assert engine.profiles[model] == "fp8"  # later jobs start there
    assert full_runs == [1]
    expected = Engine(tiny_catalogue, "cpu", profiles={model: "fp8"}).generate(request)
    assert _pixels(images) == _pixels(expected)

    def always_out_of_memory(self, loaded, *args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Engine, "_run", always_out_of_memory)
    with pytest.raises(OutOfMemory) as caught:
        engine.generate(request)
    assert "CUDA" not in str(caught.value)
    assert "try fewer images or a smaller size" in str(caught.value)


def test_fp8_holds_the_denoiser_in_float8(tiny_catalogue: Catalogue) -> None:
    engine = Engine(tiny_catalogue, "cpu", profiles={"flux-dev": "fp8"})
    engine.load("flux-dev")
    pipe = engine._models["flux-dev"].loaded.pipe
    dtypes = {p.dtype for p in pipe.transformer.parameters()}
    assert torch.float8_e4m3fn in dtypes
    t5 = {name: p.dtype for name, p in pipe.text_encoder_2.named_parameters()}
    assert t5["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"] == torch.float8_e4m3fn
    assert t5["encoder.block.0.layer.1.DenseReluDense.wo.weight"] == torch.float32  # kept
    assert all(p.dtype == torch.float32 for p in pipe.vae.parameters())


def _oom() -> torch.OutOfMemoryError:
    # The one fake of these tests: the CPU does not run out of memory on a tiny model, a GPU
    # would, with torch's own error (a RuntimeError) and its own words.
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_a_large_job_steps_down_for_itself_and_the_model_stays_as_it_was(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = "playground-v2.5"
    run = Engine._run

    def out_of_memory_above_native(self, loaded, request, *args):
        if loaded.memory.name == "full" and request.width * request.height > 64 * 64:
            raise _oom()
        return run(self, loaded, request, *args)

    monkeypatch.setattr(Engine, "_run", out_of_memory_above_native)
    engine = Engine(tiny_catalogue, "cpu")
    small = _request(tiny_catalogue, model, seeds=[5])
    assert engine.generate(small)[0].facts.profile == "full"
    big = replace(small, width=128, height=128)
    for _ in range(2):  # each big job steps down for itself, never further for later ones
        assert engine.generate(big)[0].facts.profile == "fp8"
    assert engine.profiles == {}
    assert engine.generate(small)[0].facts.profile == "full"  # the next person gets full


def test_out_of_memory_anywhere_reads_as_out_of_memory(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import generation.pipelines.base as base

    model = "playground-v2.5"
    request = _request(tiny_catalogue, model, seeds=[5])
    real_read = base.read_pipeline

    def reading_runs_out(*args, **kwargs):
        raise _oom()  # bitsandbytes puts NF4 weights on the GPU while reading

    from diffusers import StableDiffusionXLPipeline

    monkeypatch.setattr(StableDiffusionXLPipeline, "from_pretrained", reading_runs_out)
    with pytest.raises(OutOfMemory) as caught:
        Engine(tiny_catalogue, "cpu").generate(request)
    assert "could not be loaded" not in str(caught.value)
    assert "CUDA" not in str(caught.value)
    assert "download" not in str(caught.value)
    monkeypatch.undo()

    # Out of memory while running in full, then again while reading the profile one down.
    run, reads = Engine._run, []

    def out_of_memory_in_full(self, loaded, *args):
        if loaded.memory.name == "full":
            raise _oom()
        return run(self, loaded, *args)

    def second_read_runs_out(*args, **kwargs):
        reads.append(1)
        if len(reads) == 2:
            raise _oom()
        return real_read(*args, **kwargs)

    monkeypatch.setattr(Engine, "_run", out_of_memory_in_full)
    monkeypatch.setattr(base, "read_pipeline", second_read_runs_out)
    with pytest.raises(OutOfMemory) as caught:
        Engine(tiny_catalogue, "cpu").generate(request)
    assert str(caught.value).startswith("cpu ran out of memory for 1 image(s) of 64x64")
    assert "CUDA" not in str(caught.value)


def test_the_failed_pipeline_is_freed_before_the_lower_profile_loads(
    tiny_catalogue: Catalogue, monkeypatch: pytest.MonkeyPatch
) -> None:
    import weakref

    import generation.pipelines.base as base

    placed: list[weakref.ref] = []
    alive_while_lower_loads: list[bool] = []
    real_place = base.place

    def place_runs_out_the_first_time(pipe, spec, device, *, offload=False, placement=None):
        placed.append(weakref.ref(pipe.unet))
        if len(placed) == 1:
            try:
                raise _oom()  # as `place` sees it on a GPU: torch's error, turned into ours
            except torch.OutOfMemoryError:
                raise OutOfMemory("does not fit") from None
        alive_while_lower_loads.append(placed[0]() is not None)
        return real_place(pipe, spec, device, offload=offload, placement=placement)

    monkeypatch.setattr(base, "place", place_runs_out_the_first_time)
    engine = Engine(tiny_catalogue, "cpu")
    images = engine.generate(_request(tiny_catalogue, "playground-v2.5", seeds=[5]))
    assert images[0].facts.profile == "fp8"
    assert alive_while_lower_loads == [False]
    assert engine.profiles == {"playground-v2.5": "fp8"}  # it cannot load in full here: learnt
