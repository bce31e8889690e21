"""Memory profiles: which models the automatic GPU setup offers on each card, and how."""

from __future__ import annotations

import pytest

from generation.models import Catalogue
from generation.profiles import (
    FAMILY_PROFILES,
    GGUF_PROFILES,
    best_profile,
    lower_profile,
    needed_gib,
    profile,
)
from generation.workers.config import GpuInfo, WorkerConfig, discover_workers

CATALOGUE = Catalogue.builtin()
NF4 = frozenset({"bitsandbytes"})
NONE: frozenset[str] = frozenset()


# card GiB, optional libraries installed → model: profile offered (absent: not offered), and
# how many models stay loaded together.
CARDS = [
    (8, NONE, {"playground-v2.5": "offload"}, 1),
    (8, NF4, {"playground-v2.5": "offload"}, 1),  # FLUX in NF4 still needs ~9.3 GB
    (12, NONE, {"playground-v2.5": "full", "flux2-klein-4b": "fp8-offload"}, 1),
    (
        12,
        NF4,
        {
            "playground-v2.5": "full",
            "flux-dev": "nf4-offload",
            "flux-schnell": "nf4-offload",
            "flux2-klein-4b": "fp8-offload",
            "flux-kontext-dev": "nf4-offload",
        },
        1,
    ),
    (
        16,
        NF4,
        {
            "playground-v2.5": "full",
            "flux-dev": "nf4-offload",
            "flux-schnell": "nf4-offload",
            "flux2-klein-4b": "offload",
            "flux2-klein-9b": "fp8-offload",
            "flux-kontext-dev": "nf4-offload",
        },
        1,
    ),
    (
        24,
        NONE,
        {
            "playground-v2.5": "full",
            "flux-dev": "fp8",
            "flux-schnell": "fp8",
            "flux2-klein-4b": "full",  # BFL: klein 4B fits consumer cards of ~13 GB
            "flux2-klein-9b": "offload",
            "flux-kontext-dev": "fp8-offload",  # its reference doubles the image tokens
        },
        1,
    ),
    (48, NONE, dict.fromkeys(CATALOGUE, "full"), 2),
    (80, NF4, dict.fromkeys(CATALOGUE, "full"), 3),
]


@pytest.mark.parametrize(("memory", "libraries", "offered", "together"), CARDS)
def test_the_automatic_setup_offers_every_model_that_fits_some_profile(
    memory: float, libraries: frozenset[str], offered: dict[str, str], together: int
) -> None:
    (worker,) = discover_workers(CATALOGUE, [GpuInfo(0, "card", memory)], libraries)
    assert worker.models == frozenset(offered)
    assert {name: worker.profile_of(name) for name in worker.models} == offered
    assert worker.max_models == together
    for name, chosen in offered.items():  # the best quality that fits: every better one does not
        spec = CATALOGUE[name]
        ladder = [p.name for p in FAMILY_PROFILES[spec.family]]
        for better in ladder[: ladder.index(chosen)]:
            better_profile = profile(spec.family, better)
            assert needed_gib(
                spec, better_profile
            ) > memory or better_profile.library not in libraries | {None}


def test_an_owner_pins_a_profile_and_a_wrong_one_is_named() -> None:
    worker = WorkerConfig(
        "cuda:0",
        "cuda:0",
        vram_gb=24,
        profiles=(("flux-dev", "fp8-offload"), ("flux-schnell", "q2")),
    )
    assert worker.profile_of("flux-dev") == "fp8-offload"
    assert worker.profile_of("playground-v2.5") == "full"
    assert worker.model_problems(CATALOGUE) == [
        "Worker 'cuda:0': flux-schnell: flux models have no profile 'q2'; they have full, "
        "offload, fp8, fp8-offload, nf4-offload."
    ]
    too_big = WorkerConfig("cuda:0", "cuda:0", vram_gb=24, profiles=(("flux-dev", "full"),))
    (problem,) = too_big.model_problems(CATALOGUE)
    assert "flux-dev needs 34.5 GiB with its full profile" in problem


def test_out_of_memory_falls_to_the_next_profile_this_device_runs() -> None:
    flux = CATALOGUE["flux-dev"]
    assert lower_profile(flux, "full", "cuda:0").name == "offload"
    assert lower_profile(flux, "full", "cpu").name == "fp8"  # offload needs CUDA
    assert lower_profile(flux, "fp8", "cpu") is None
    assert best_profile(CATALOGUE["flux-dev"], 4, NF4) is None


def test_a_profile_that_holds_the_denoiser_in_fp8_turns_the_speed_option_off() -> None:
    from generation.pipelines.profiles import effective_speed
    from generation.speed_options import SpeedOptions

    flux = CATALOGUE["flux-dev"].family
    speed = SpeedOptions(fp8=True, compile=True)
    assert effective_speed(speed, profile(flux, "full"), "transformer") == speed
    for name in ("fp8", "nf4-offload"):
        assert effective_speed(speed, profile(flux, name), "transformer") == SpeedOptions(
            compile=True
        )
    for gguf in GGUF_PROFILES[flux]:  # the transformer is held quantized as the file has it
        assert effective_speed(speed, gguf, "transformer") == SpeedOptions(compile=True)


def test_a_profile_whose_library_is_missing_is_not_offered_to_a_rerun_or_a_fallback() -> None:
    import importlib.util

    flux = CATALOGUE["flux-dev"].family
    nf4 = profile(flux, "nf4-offload")
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    assert nf4.unavailable_on("cuda:0") == (
        "the nf4-offload profile needs bitsandbytes, which is not installed here "
        "(pip install 'atelier[quantization]')"
    )
    assert lower_profile(CATALOGUE["flux-dev"], "fp8-offload", "cuda:0") is None
