"""The declared settings schema: every table refuses a wrong type, an out-of-range value and an
unknown key with the key's path; the README's tables and the example file agree with it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, get_type_hints

import pytest

from bot.config import EXAMPLE_CONFIG, ConfigError, settings_from_mapping
from bot.settings_schema import AtelierFile, GpuTable
from generation.loras import LoraTable
from generation.models import ModelTable
from tests.conftest import REPO, child_environment

README = REPO / "README.md"
TABLES = {  # each table of the file → its declared type
    name: kind
    for name, kind in get_type_hints(AtelierFile).items()
    if dataclasses.is_dataclass(kind)
}

# (table, wrong type, out of range): each with the sentence it must give.
FAULTS: dict[str, tuple[dict[str, Any], str, dict[str, Any], str]] = {
    "defaults": (
        {"count": "2"},
        '`defaults.count` should be a whole number, not "2".',
        {"count": 0},
        "`defaults.count` should be at least 1, not 0.",
    ),
    "limits": (
        {"max_queued": 1.5},
        "`limits.max_queued` should be a whole number, not 1.5.",
        {"swap_lead_s": -1},
        "`limits.swap_lead_s` should be at least 0, not -1.",
    ),
    "hosted": (
        {"slots": "24"},
        '`hosted.slots` should be a whole number, not "24".',
        {"person_daily_credits": -1},
        "`hosted.person_daily_credits` should be at least 0, not -1.",
    ),
    "progress": (
        {"edit_interval_s": "1s"},
        '`progress.edit_interval_s` should be a number, not "1s".',
        {"queue_refresh_s": 0},
        "`progress.queue_refresh_s` should be at least 0.5, not 0.",
    ),
    "edit": (
        {"model": 7},
        "`edit.model` should be text, not 7.",
        {"model": "playground-v2.5"},
        "`edit.model` playground-v2.5 takes no reference image, so it cannot edit: name a "
        "FLUX.1 Kontext or FLUX.2 [klein] model (or leave it out).",
    ),
    "speed": (
        {"compile": 1},
        "`speed.compile` should be true or false, not 1.",
        {"vae_tiling_megapixels": -2},
        "`speed.vae_tiling_megapixels` should be at least 0, not -2.",
    ),
    "observability": (
        {"port": "8377"},
        '`observability.port` should be a whole number, not "8377".',
        {"port": 65536},
        "`observability.port` should be at most 65535, not 65536.",
    ),
    "workers": (
        {"failed_after": 2.5},
        "`workers.failed_after` should be a whole number, not 2.5.",
        {"fail_jobs_after_s": -1},
        "`workers.fail_jobs_after_s` should be at least 0, not -1.",
    ),
    "ray": (
        {"allow_insecure": "yes"},
        '`ray.allow_insecure` should be true or false, not "yes".',
        {"start_timeout_s": 0},
        "`ray.start_timeout_s` should be more than 0, not 0.",
    ),
}


def problems(table: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})
    return caught.value.problems


def test_every_table_has_its_faults_listed_here() -> None:
    assert set(TABLES) == set(FAULTS)


@pytest.mark.parametrize("table", sorted(FAULTS))
def test_each_table_refuses_a_wrong_type_a_value_out_of_range_and_an_unknown_key(
    table: str,
) -> None:
    wrong, wrong_message, out, out_message = FAULTS[table]

    found = problems({table: {**wrong, "colour": "red"}, "data_dir": 7})
    ranged = problems({table: out})

    assert found == [
        "`data_dir` should be text, not 7.",
        f"Unknown setting `{table}.colour`.",
        wrong_message,
    ]
    assert ranged == [out_message]


def test_gpus_and_models_tables_are_checked_with_their_paths() -> None:
    found = problems(
        {
            "gpus": [
                {"device": "cpu"},
                {"device": "cuda:1", "max_models": "2", "vram": 8, "vram_gb": 0},
            ],
            "models": {
                "flux-schnell": {"steps": "thirty", "max_megapixels": 0, "seed": 1},
                "mine": {"family": "flux", "source": "/m", "schedulers": []},
            },
        }
    )

    assert found == [
        "Unknown setting `gpus[1].vram`.",
        '`gpus[1].max_models` should be a whole number, not "2".',
        "`gpus[1].vram_gb` should be more than 0, not 0.",
        "Unknown setting `models.flux-schnell.seed`.",
        '`models.flux-schnell.steps` should be a whole number, not "thirty".',
        "`models.flux-schnell.max_megapixels` should be more than 0, not 0.",
        "`models.mine.schedulers` should not be empty.",
    ]


def test_the_scheduler_settings_in_the_readme_are_accepted_and_a_capacity_can_stay_unset() -> None:
    settings = settings_from_mapping({"limits": {"swap_lead_s": 0, "max_running": 2}}, {})

    assert (settings.limits.swap_lead_s, settings.limits.max_running) == (0, 2)
    assert settings.limits.queue_capacity is None
    assert settings_from_mapping({"limits": {"ageing_s": 0}}, {}).limits.ageing_s is None


def test_bot_check_refuses_a_model_value_of_the_wrong_type(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text('[models.flux-schnell]\nsteps = "thirty"\n')

    done = subprocess.run(
        [sys.executable, "-m", "bot", "check"],
        cwd=tmp_path,
        env={**child_environment(), "ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 1
    assert '`models.flux-schnell.steps` should be a whole number, not "thirty".' in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


# ---- the README and the example agree with the schema -----------------------------------------


def readme_rows(section: str) -> dict[str, str]:
    """`Key` → `Default` of the first table in the README section titled `section`."""
    text = README.read_text()
    body = text[text.index(f"\n{section}\n") :]
    rows = {}
    for line in body.split("\n| --- |", 1)[1].split("\n\n", 1)[0].splitlines()[1:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return rows


def documented_default(value: Any) -> str:
    """How the README writes a default: a TOML literal in backticks, or "none"."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple):
        return "`[]`" if not value else f"`{list(value)}`"
    return f"`{value}`"


def schema_defaults() -> dict[str, str]:
    """README key → documented default, from the schema."""
    expected = {}
    for item in dataclasses.fields(AtelierFile):
        kind = get_type_hints(AtelierFile)[item.name]
        if item.name == "gpus":
            for gpu_field in dataclasses.fields(GpuTable):
                default = gpu_field.default
                if gpu_field.default_factory is not dataclasses.MISSING:
                    default = gpu_field.default_factory()
                shown = (
                    "required" if default is dataclasses.MISSING else documented_default(default)
                )
                expected[f"`[[gpus]] {gpu_field.name}`"] = shown
        elif item.name == "models":
            expected["`[models.NAME]`"] = "built-ins"
        elif item.name == "loras":
            expected["`[loras.NAME]`"] = "none"
        elif dataclasses.is_dataclass(kind):
            instance = kind()
            for sub in dataclasses.fields(kind):
                if not sub.name.startswith("_"):
                    default = getattr(instance, sub.name)
                    expected[f"`[{item.name}] {sub.name}`"] = documented_default(default)
        else:
            expected[f"`{item.name}`"] = documented_default(item.default)
    return expected


def test_the_readme_configuration_table_is_the_schema() -> None:
    documented = readme_rows("## Configuration reference")
    expected = schema_defaults()

    assert set(documented) == set(expected)
    for key, default in expected.items():
        assert documented[key].startswith(default), key


def test_the_readme_lists_every_key_of_a_model_table() -> None:
    meaning = README.read_text().split("| `[models.NAME]` | built-ins |", 1)[1].split("\n", 1)[0]
    listed = re.findall(r"`(\w+)`", meaning.split(";", 1)[0])
    assert listed == [f.name for f in dataclasses.fields(ModelTable)]


def test_the_readme_lists_every_key_of_a_lora_table() -> None:
    meaning = README.read_text().split("| `[loras.NAME]` | none |", 1)[1].split("\n", 1)[0]
    listed = re.findall(r"`(\w+)`", meaning.split(";", 1)[0])
    assert listed == [f.name for f in dataclasses.fields(LoraTable)]


def test_the_readme_limits_table_has_the_schema_defaults() -> None:
    documented = readme_rows("### Limits an owner can set")
    expected = schema_defaults()
    for key, default in documented.items():
        config_key = f"`[limits] {key.strip('`')}`"
        if config_key in expected:
            shown = expected[config_key].strip("`")
            assert default == shown, key


def test_the_example_file_shows_the_schema_defaults() -> None:
    example = tomllib.loads(EXAMPLE_CONFIG.read_text())
    expected = schema_defaults()
    for table, values in example.items():
        if isinstance(values, dict):
            for key, value in values.items():
                rendered = documented_default(tuple(value) if isinstance(value, list) else value)
                assert expected[f"`[{table}] {key}`"] == rendered, f"{table}.{key}"
        else:
            assert expected[f"`{table}`"] == documented_default(
                tuple(values) if isinstance(values, list) else values
            )
