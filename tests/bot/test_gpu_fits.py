"""What the owner sees of memory profiles: `bot check` per GPU, and `[[gpus]] profiles`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.config import ConfigError, settings_from_mapping
from tests.bot.test_process import run_bot_command


def _fake_nvidia_smi(folder: Path, output: str) -> dict[str, str]:
    """A PATH whose `nvidia-smi` prints `output` (as `--query-gpu=... --format=csv` does)."""
    folder.mkdir()
    tool = folder / "nvidia-smi"
    tool.write_text(f"#!/bin/sh\nprintf '{output}'\n")
    tool.chmod(0o755)
    return {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}


def test_check_prints_which_models_each_gpu_runs_and_how(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text("")  # no [[gpus]]: the automatic setup
    path = _fake_nvidia_smi(
        tmp_path / "bin", "0, NVIDIA GeForce RTX 4090, 24564\\n1, NVIDIA GeForce GTX 1070, 8192\\n"
    )

    done = run_bot_command(
        "check", cwd=tmp_path, env={"ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x", **path}
    )

    lines = done.stdout.splitlines()
    assert (
        "[ok ] Worker cuda:0 (24 GiB) runs playground-v2.5 as full (~8.6 GiB), flux-dev as fp8 "
        "(~23.1 GiB), flux-schnell as fp8 (~23.1 GiB), flux2-klein-4b as full (~19.5 GiB), "
        "flux2-klein-9b as offload (~21.5 GiB), flux-kontext-dev as fp8-offload (~18.2 GiB)."
        in lines
    )
    assert (
        "[note] Worker cuda:1 (8 GiB) runs playground-v2.5 as offload (~6.9 GiB); not flux-dev, "
        "flux-schnell, flux2-klein-4b, flux2-klein-9b, flux-kontext-dev (too large, or not "
        "allowed here)." in lines
    )


def test_an_owner_pins_a_profile_per_model_per_gpu() -> None:
    table = {
        "gpus": [
            {"device": "cuda:0", "vram_gb": 24, "profiles": {"flux-dev": "fp8-offload"}},
            {"device": "cuda:1"},
        ]
    }
    first, second = settings_from_mapping(table, {}).gpus
    assert first.profile_of("flux-dev") == "fp8-offload"  # as pinned
    assert first.profile_of("flux-schnell") == "fp8"  # the best that fits its 24 GB
    assert second.profile_of("flux-dev") == "full"  # no budget, no pin: as the model is


@pytest.mark.parametrize(
    ("profiles", "problem"),
    [
        (
            {"flux-dev": "q4"},
            "`gpus[0]`: Worker \"cuda:0\": flux-dev: flux models have no profile 'q4'; they have "
            "full, offload, fp8, fp8-offload, nf4-offload.",
        ),
        (
            {"nope": "fp8"},
            '`gpus[0]`: Worker "cuda:0" names unknown model(s) nope; available: playground-v2.5, '
            "flux-dev, flux-schnell, flux2-klein-4b, flux2-klein-9b, flux-kontext-dev.",
        ),
        (
            {"flux-dev": "full"},
            '`gpus[0]`: Worker "cuda:0": flux-dev needs 34.5 GiB with its full profile, more than '
            "its vram_gb budget (24 GiB).",
        ),
        ({"flux-dev": 8}, "`gpus[0].profiles.flux-dev` should be text, not 8."),
        (
            {"flux-dev": "fp8"},
            '`gpus[0]`: Worker "cuda:0" sets a profile for flux-dev, which its `models` leave '
            "out; add it there or remove the profile.",
        ),
    ],
)
def test_a_profile_that_cannot_be_used_is_refused_in_a_sentence(
    profiles: dict[str, object], problem: str
) -> None:
    models = ["playground-v2.5"] if profiles == {"flux-dev": "fp8"} else None
    gpu = {"device": "cuda:0", "vram_gb": 24, "profiles": profiles}
    table = {"gpus": [gpu | ({"models": models} if models else {})]}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})
    assert caught.value.problems == [problem]


def test_a_budget_for_two_models_leaves_room_for_the_second() -> None:
    one, two = settings_from_mapping(
        {
            "gpus": [
                {"device": "cuda:0", "vram_gb": 48},
                {"device": "cuda:1", "vram_gb": 48, "max_models": 2},
            ]
        },
        {},
    ).gpus
    assert one.profile_of("flux-dev") == "full"  # 34.5 GB: alone, it fits
    assert two.profile_of("flux-dev") == "fp8"  # in half of 48 GB
    assert two.profile_of("playground-v2.5") == "full"


@pytest.mark.parametrize(
    ("gpu", "profiles"),
    [  # figures: README, "Which GPU do I need?" (FLUX full 34.5, Playground full 8.6 GiB)
        (  # all three in full need 77.6 GiB together
            {
                "vram_gb": 80,
                "max_models": 3,
                "models": ["playground-v2.5", "flux-dev", "flux-schnell"],
            },
            {"playground-v2.5": "full", "flux-dev": "full", "flux-schnell": "full"},
        ),
        (  # all six built-in models, any three resident: the FLUX-sized ones step down to
            # offload (~24 GiB each, bf16 weights kept) so that any three fit in 80 GiB
            {"vram_gb": 80, "max_models": 3},
            {
                "playground-v2.5": "full",
                "flux-dev": "offload",
                "flux-schnell": "offload",
                "flux2-klein-4b": "full",
                "flux2-klein-9b": "offload",
                "flux-kontext-dev": "offload",
            },
        ),
        (  # 34.5 + 8.6 = 43.1 GiB
            {"vram_gb": 48, "max_models": 2, "models": ["playground-v2.5", "flux-dev"]},
            {"playground-v2.5": "full", "flux-dev": "full"},
        ),
        (  # any two of them: both FLUX models step down until two fit (2 x 23.1 GiB)
            {
                "vram_gb": 48,
                "max_models": 2,
                "models": ["playground-v2.5", "flux-dev", "flux-schnell"],
            },
            {"playground-v2.5": "full", "flux-dev": "fp8", "flux-schnell": "fp8"},
        ),
    ],
)
def test_a_budget_picks_the_best_profiles_that_fit_together(
    gpu: dict[str, object], profiles: dict[str, str]
) -> None:
    [worker] = settings_from_mapping({"gpus": [{"device": "cuda:0", **gpu}]}, {}).gpus
    assert {name: worker.profile_of(name) for name in worker.models or ()} == profiles


def test_a_budget_no_profile_fits_leaves_the_model_out_and_check_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import generation.workers.config as config

    # This machine may have bitsandbytes; the owner's may not.
    monkeypatch.setattr(config, "installed_libraries", lambda: frozenset())
    [twelve] = settings_from_mapping({"gpus": [{"device": "cuda:0", "vram_gb": 12}]}, {}).gpus
    # FLUX.1 needs NF4 under 12 GiB; klein 4B fits as fp8 with its text encoder offloaded
    assert twelve.models == frozenset({"playground-v2.5", "flux2-klein-4b"})
    [tiny] = settings_from_mapping({"gpus": [{"device": "cuda:0", "vram_gb": 0.5}]}, {}).gpus
    assert tiny.models == frozenset()
    assert not tiny.may_run("flux-dev")


@pytest.mark.parametrize(
    ("gpu", "problem"),
    [
        (
            {"device": "cpu", "profiles": {"flux-dev": "fp8-offload"}},
            '`gpus[0]`: Worker "cpu": flux-dev: the fp8-offload profile needs a CUDA GPU (for '
            "CPU offload).",
        ),
    ],
)
def test_a_profile_this_device_cannot_run_is_refused(gpu: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"gpus": [gpu]}, {})
    assert caught.value.problems == [problem]


def test_a_pinned_nf4_profile_without_bitsandbytes_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(  # as on a machine where it is not installed
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    gpu = {"device": "cuda:0", "profiles": {"flux-dev": "nf4-offload"}}
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"gpus": [gpu]}, {})
    assert caught.value.problems == [
        '`gpus[0]`: Worker "cuda:0": flux-dev: the nf4-offload profile needs bitsandbytes, '
        "which is not installed here (pip install 'atelier[quantization]')."
    ]


def test_check_flags_a_profile_larger_than_the_card_and_a_gpu_that_runs_nothing(
    tmp_path: Path,
) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(
        '[[gpus]]\ndevice = "cuda:0"\nprofiles = { "flux-dev" = "full" }\n'
        'models = ["playground-v2.5", "flux-dev", "flux-schnell"]\n'
    )  # no vram_gb: the card is 24 GiB class (an A10 reports 22.5)
    path = _fake_nvidia_smi(tmp_path / "bin", "0, NVIDIA A10, 23028\n1, Tiny, 512\n")
    env = {"ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x", **path}
    lines = run_bot_command("check", cwd=tmp_path, env=env).stdout.splitlines()
    [fits] = [line for line in lines if line.startswith("[ERR] Worker cuda:0 (22.5 GiB) runs")]
    assert fits.endswith(
        "But flux-dev as full needs ~34.5 GiB; flux-schnell as full needs ~34.5 GiB, more than "
        "its 22.5 GiB: set a smaller profile in its `profiles`, or give it a `vram_gb` to have "
        "one chosen."
    )
    (tmp_path / "auto.toml").write_text("")
    env["ATELIER_CONFIG"] = str(tmp_path / "auto.toml")
    lines = run_bot_command("check", cwd=tmp_path, env=env).stdout.splitlines()
    [nothing] = [line for line in lines if line.startswith("[ERR] Worker cuda:1 (0.5 GiB)")]
    assert nothing.startswith("[ERR] Worker cuda:1 (0.5 GiB) runs no model;")
    assert nothing.endswith(": no model fits this GPU under any memory profile.")
    # A 24 GB class card that reports 22.5 GiB holds FLUX as fp8-offload (fp8 needs ~23.1).
    assert (
        "[ok ] Worker cuda:0 (22.5 GiB) runs playground-v2.5 as full (~8.6 GiB), flux-dev as "
        "fp8-offload (~17.2 GiB), flux-schnell as fp8-offload (~17.2 GiB), flux2-klein-4b as "
        "full (~19.5 GiB), flux2-klein-9b as offload (~21.5 GiB), flux-kontext-dev as "
        "fp8-offload (~18.2 GiB)." in lines
    )


def test_check_says_when_two_cards_hold_a_model_better_than_one(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text("")  # the automatic setup: one worker per card, never a pair
    path = _fake_nvidia_smi(
        tmp_path / "bin",
        "0, NVIDIA GeForce RTX 4060 Ti, 16384\\n1, NVIDIA GeForce RTX 4060 Ti, 16384\\n",
    )

    done = run_bot_command(
        "check", cwd=tmp_path, env={"ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x", **path}
    )

    assert (
        "[note] flux2-klein-9b runs on one card only as fp8-offload, but cuda:0 and cuda:1 "
        'together hold it as fp8: a [[gpus]] table with devices = ["cuda:0", "cuda:1"] and '
        "vram_gb = 16 would." in done.stdout.splitlines()
    )


def test_check_shows_where_a_pipeline_over_two_cards_puts_each_component(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(
        '[[gpus]]\ndevices = ["cuda:0", "cuda:1"]\nvram_gb = 16\nmodels = ["flux2-klein-9b"]\n'
    )
    path = _fake_nvidia_smi(
        tmp_path / "bin",
        "0, NVIDIA GeForce RTX 4060 Ti, 16384\\n1, NVIDIA GeForce RTX 4060 Ti, 16384\\n",
    )

    done = run_bot_command(
        "check", cwd=tmp_path, env={"ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x", **path}
    )

    assert (
        "[ok ] Worker cuda:0+cuda:1 runs one pipeline over its cards: flux2-klein-9b as fp8 "
        "(transformer, vae on cuda:0; text_encoder on cuda:1)." in done.stdout.splitlines()
    )
    assert "flux2-klein-9b runs on one card only" not in done.stdout  # paired already
