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
        "[ok ] Worker cuda:0 (24 GiB) runs playground-v2.5 as full (~8.6 GB), flux-dev as fp8 "
        "(~23.1 GB), flux-schnell as fp8 (~23.1 GB), flux2-klein-4b as full (~19.5 GB), "
        "flux2-klein-9b as offload (~21.5 GB), flux-kontext-dev as fp8-offload (~18.2 GB)." in lines
    )
    assert (
        "[ok ] Worker cuda:1 (8 GiB) runs playground-v2.5 as offload (~6.9 GB); not flux-dev, "
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
            '`gpus[0]`: Worker "cuda:0": flux-dev needs 34.5 GB with its full profile, more than '
            "its vram_gb budget (24 GB).",
        ),
        ({"flux-dev": 8}, "`gpus[0].profiles.flux-dev` should be text, not 8."),
    ],
)
def test_a_profile_that_cannot_be_used_is_refused_in_a_sentence(
    profiles: dict[str, object], problem: str
) -> None:
    table = {"gpus": [{"device": "cuda:0", "vram_gb": 24, "profiles": profiles}]}
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
