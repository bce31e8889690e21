"""One pipeline over two small cards: the placement plan from the stored figures, the `[[gpus]]
devices` table, the scheduler's view (one worker, one job at a time), and the CUDA run (skipped
without two CUDA cards)."""

from __future__ import annotations

import pytest
import torch

from bot.config import ConfigError, settings_from_mapping
from generation.models import Catalogue
from generation.placement import best_spread_profile, plan
from generation.profiles import (
    ACTIVATION_GIB,
    CUDA_CONTEXT_GIB,
    GIB,
    component_bytes,
    lower_profile,
    profile_for,
)
from generation.request import build_request
from generation.workers.config import GpuInfo, WorkerConfig, discover_workers
from generation.workers.protocol import JobDone, RunJob, WorkerSpec
from generation.workers.runtime import WorkerRuntime

CATALOGUE = Catalogue.builtin()
PAIR = ("cuda:0", "cuda:1")
NONE: frozenset[str] = frozenset()

# card GiB (each of two) → model: the best profile one pipeline over both cards holds (absent:
# none), with no optional library installed. Offloading profiles never: see generation.placement.
SPREAD = {
    12: {"playground-v2.5": "full", "flux2-klein-4b": "full"},
    16: {"playground-v2.5": "full", "flux2-klein-4b": "full", "flux2-klein-9b": "fp8"},
    24: {
        "playground-v2.5": "full",
        "flux-dev": "fp8",
        "flux-schnell": "fp8",
        "flux2-klein-4b": "full",
        "flux2-klein-9b": "full",
        "flux-kontext-dev": "fp8",
    },
}


@pytest.mark.parametrize("card_gib", sorted(SPREAD))
def test_two_cards_hold_what_the_table_says(card_gib: int) -> None:
    held = {
        name: chosen.name
        for name, spec in CATALOGUE.items()
        if (chosen := best_spread_profile(spec, PAIR, card_gib, NONE))
    }
    assert held == SPREAD[card_gib]


@pytest.mark.parametrize("card_gib", sorted(SPREAD))
def test_no_card_is_planned_past_its_memory(card_gib: int) -> None:
    for name, chosen_name in SPREAD[card_gib].items():
        spec = CATALOGUE[name]
        chosen = profile_for(spec, chosen_name)
        placed = plan(spec, chosen, PAIR, card_gib)
        assert placed is not None
        sizes = component_bytes(spec, chosen)
        assert set(placed) == set(sizes), "every component is placed, whole"
        denoiser = "unet" if "unet" in placed else "transformer"
        assert placed["vae"] == placed[denoiser], "the VAE decodes where the latents are"
        for card in PAIR:
            weights = sum(size for c, size in sizes.items() if placed[c] == card) / GIB
            activations = ACTIVATION_GIB[spec.family] if placed[denoiser] == card else 0
            assert weights + activations + CUDA_CONTEXT_GIB <= card_gib, (name, card)


def test_flux_on_two_24_gb_cards_puts_the_text_encoders_on_the_other_card() -> None:
    spec = CATALOGUE["flux-dev"]
    assert plan(spec, profile_for(spec, "fp8"), PAIR, 24) == {
        "transformer": "cuda:0",
        "vae": "cuda:0",
        "text_encoder_2": "cuda:1",
        "text_encoder": "cuda:1",
    }
    assert plan(spec, profile_for(spec, "full"), PAIR, 24) is None  # 22.2 GiB + activations
    assert plan(spec, profile_for(spec, "fp8-offload"), PAIR, 80) is None  # offload: never
    assert plan(spec, profile_for(spec, "fp8"), ("cuda:0",), 80) is None  # one card: no plan


def test_out_of_memory_over_two_cards_steps_down_to_a_profile_that_still_spreads() -> None:
    spec = CATALOGUE["flux-dev"]
    assert lower_profile(spec, "full", "cuda:0").name == "offload"  # one card
    assert lower_profile(spec, "full", "cuda:0", spread=True).name == "fp8"
    assert lower_profile(spec, "fp8", "cuda:0", spread=True) is None  # the rest offload


def test_the_automatic_setup_never_pairs_cards() -> None:
    gpus = [GpuInfo(0, "RTX 4060 Ti", 16.0), GpuInfo(1, "RTX 4060 Ti", 16.0)]
    workers = discover_workers(CATALOGUE, gpus, NONE)
    assert [(w.id, w.devices) for w in workers] == [("cuda:0", ()), ("cuda:1", ())]


def test_a_devices_table_is_one_worker_with_the_profiles_its_cards_hold() -> None:
    table = {"gpus": [{"devices": ["cuda:0", "cuda:1"], "vram_gb": 16}]}
    (worker,) = settings_from_mapping(table, {}).gpus
    assert (worker.id, worker.device, worker.devices) == ("cuda:0+cuda:1", "cuda:0", PAIR)
    assert worker.max_models == 1
    assert worker.profile_of("flux2-klein-9b") == "fp8"  # alone, a 16 GB card: fp8-offload
    assert not worker.may_run("flux-dev")  # not on two 16 GB cards without bitsandbytes


@pytest.mark.parametrize(
    ("gpus", "says"),
    [
        ([{"devices": ["cuda:0", "cuda:0"], "vram_gb": 16}], "two or more different CUDA"),
        ([{"devices": ["cuda:0", "cpu"], "vram_gb": 16}], "two or more different CUDA"),
        ([{"devices": ["cuda:0", "cuda:1"]}], "`devices` needs `vram_gb`"),
        (
            [{"devices": ["cuda:0", "cuda:1"], "vram_gb": 16, "max_models": 2}],
            "holds one model at a time",
        ),
        ([{"device": "cuda:2", "devices": ["cuda:0", "cuda:1"], "vram_gb": 16}], "not both"),
        ([{"max_models": 1}], "not neither"),
        (
            [{"device": "cuda:1"}, {"devices": ["cuda:0", "cuda:01"], "vram_gb": 16}],
            '`gpus[1]`: device "cuda:01" is the same device as `gpus[0]`\'s "cuda:1"',
        ),
        (
            [
                {
                    "devices": ["cuda:0", "cuda:1"],
                    "vram_gb": 16,
                    "models": ["flux-dev"],
                    "profiles": {"flux-dev": "fp8"},
                }
            ],
            "flux-dev does not fit its 2 cards of 16 GiB with its fp8 profile.",
        ),
        (
            [{"devices": ["cuda:0", "cuda:1"], "vram_gb": 16, "models": ["flux-dev"]}],
            "flux-dev fits its 2 cards of 16 GiB together under no memory profile.",
        ),
        (
            [
                {
                    "devices": ["cuda:0", "cuda:1"],
                    "vram_gb": 24,
                    "models": ["flux-dev"],
                    "profiles": {"flux-dev": "fp8-offload"},
                }
            ],
            "(offloads, which a pipeline over several cards cannot)",
        ),
    ],
)
def test_a_devices_table_that_cannot_work_is_refused_with_a_sentence(
    gpus: list[dict[str, object]], says: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        settings_from_mapping({"gpus": gpus}, {})
    assert says in str(refused.value)


def test_the_worker_over_two_cards_runs_one_job_at_a_time() -> None:
    """The scheduler sees one worker: a job is sent only when it is idle, and the runtime
    reports each job done before taking the next (as any worker). Its GPU-seconds count once:
    README, "One pipeline over two cards"."""
    config = WorkerConfig("cuda:0+cuda:1", "cuda:0", max_models=1, vram_gb=24, devices=PAIR)
    events: list[object] = []
    spec = WorkerSpec(
        config, tuple(CATALOGUE.values()), "generation.workers.standin:StandInEngine", {}
    )
    worker = WorkerRuntime(spec, events.append)
    assert worker.start()
    assert worker._engine.devices == PAIR  # the engine is built for both cards
    for job_id in (1, 2):
        request = build_request(CATALOGUE, model="flux-schnell", prompt="a fox", steps=2)
        worker.handle(RunJob(job_id, request))
    done = [e.job_id for e in events if isinstance(e, JobDone)]
    assert done == [1, 2]


@pytest.mark.skipif(
    torch.cuda.device_count() < 2,
    reason="needs two CUDA cards (this machine has fewer): the placement's CUDA run",
)
def test_a_pipeline_runs_over_two_cuda_cards(tiny_catalogue: Catalogue) -> None:
    from generation.engine import Engine

    engine = Engine(
        tiny_catalogue, "cuda:0", devices=PAIR, vram_gb=24, profiles={"flux-dev": "fp8"}
    )
    request = build_request(tiny_catalogue, model="flux-dev", prompt="a fox", seeds=[1])
    (image,) = engine.generate(request)
    pipe = engine._models["flux-dev"].loaded.pipe
    assert pipe.transformer.device.index != pipe.text_encoder_2.device.index
    assert image.png
