"""Configuration: the shipped example is valid, faults are all listed, the token never shows."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.config import EXAMPLE_CONFIG, ConfigError, Secret, load_settings, settings_from_mapping
from generation.scheduler import SchedulerSettings
from generation.speed_options import SpeedOptions

TOKEN = "MTIz.secret-token-value"


def test_example_config_loads_with_its_documented_defaults(tmp_path: Path) -> None:
    settings = load_settings(EXAMPLE_CONFIG, {"DISCORD_TOKEN": TOKEN})

    assert settings.token.reveal() == TOKEN
    assert settings.data_dir == EXAMPLE_CONFIG.parent / "data"
    assert settings.limits.max_queued == 5
    assert settings.limits == SchedulerSettings()  # the example shows the scheduler's defaults
    assert settings.gpus == ()  # discovered at start
    assert set(settings.catalogue) == {
        "playground-v2.5",
        "flux-dev",
        "flux-schnell",
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux-kontext-dev",
    }
    assert settings.defaults.aspect == "1:1"
    assert settings.speed == SpeedOptions()  # the example's [speed] shows the defaults


def test_a_full_configuration_is_read_into_typed_settings(tmp_path: Path) -> None:
    local = tmp_path / "my-model"
    table = {
        "data_dir": "state",
        "owner_ids": [111],
        "admin_role_ids": [222],
        "allowed_channel_ids": [333, 444],
        "guild_ids": [555],
        "defaults": {"model": "flux-schnell", "aspect": "16:9", "count": 2},
        "limits": {"max_queued": 3, "max_running": 2, "queue_capacity": 50, "ageing_s": 0},
        "progress": {"edit_interval_s": 0.5, "preview_interval_s": 2},
        "speed": {"dtype": "float16", "compile": True, "vae_tiling_megapixels": 0},
        "gpus": [
            {"device": "cuda:0", "models": ["flux-schnell", "mine"], "max_models": 2},
            {"device": "cuda:1", "models": ["playground-v2.5"], "pinned": ["playground-v2.5"]},
        ],
        "models": {"mine": {"family": "playground", "source": str(local)}},
    }
    env = {
        "DISCORD_TOKEN": TOKEN,
        "DISCORD_API_BASE": "http://127.0.0.1:1/api/v10",
        "DISCORD_GATEWAY_URL": "ws://127.0.0.1:1/gateway",
    }

    settings = settings_from_mapping(table, env, base_dir=tmp_path)

    assert settings.data_dir == tmp_path / "state"
    assert settings.database_path.parent == tmp_path / "state"
    assert settings.owner_ids == {111}
    assert settings.admin_role_ids == {222}
    assert settings.allowed_channel_ids == {333, 444}
    assert settings.guild_ids == (555,)
    assert settings.defaults.model == "flux-schnell"
    assert settings.defaults.count == 2
    assert settings.limits.max_running == 2
    assert settings.limits.ageing_s is None
    assert settings.progress.edit_interval_s == 0.5
    assert settings.speed == SpeedOptions(dtype="float16", compile=True, vae_tiling_megapixels=0)
    assert [g.device for g in settings.gpus] == ["cuda:0", "cuda:1"]
    assert settings.gpus[0].models == {"flux-schnell", "mine"}
    assert settings.gpus[1].pinned == ("playground-v2.5",)
    assert settings.catalogue["mine"].source == str(local)
    assert settings.api_base == env["DISCORD_API_BASE"]
    assert settings.gateway_url == env["DISCORD_GATEWAY_URL"]
    assert settings.catalogue["mine"].limits.max_steps == 100  # inherited from the family


def test_every_problem_is_reported_at_once() -> None:
    table = {
        "owner_ids": ["123"],
        "defaults": {"model": "dall-e", "aspect": "wide", "count": 9},
        "limits": {"max_queued": 0, "colour": "red"},
        "gpus": [{"device": "tpu:0"}, {"device": "cuda:0", "models": ["nope"]}],
        "models": {"x": {"family": "unet", "source": "/x"}, "y": {"source": "/y"}},
        "observability": {"port": 0},
        "progress": {"edit_interval_s": 0.01},
        "speed": {"dtype": "fp4", "fp8": "yes", "turbo": True},
        "tokn": "typo",
    }

    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})

    assert caught.value.problems == [  # values as TOML writes them
        "Unknown setting `tokn`.",
        '`owner_ids[0]` should be a whole number, not "123".',
        "`defaults.aspect`: Aspect ratio 'wide' should look like `16:9`.",
        "`defaults.count` should be at most 4, not 9.",
        "Unknown setting `limits.colour`.",
        "`limits.max_queued` should be at least 1, not 0.",
        "`progress.edit_interval_s` should be at least 0.2, not 0.01.",
        "Unknown setting `speed.turbo`.",
        '`speed.dtype` should be one of "auto", "bfloat16", "float16" or "float32", not "fp4".',
        '`speed.fp8` should be true or false, not "yes".',
        "`observability.port` should be at least 1, not 0.",
        '`gpus[0].device`: unknown device "tpu:0"; use cpu, cuda or cuda:N.',
        '`models.x.family` should be one of "playground", "flux", "flux2-klein" or '
        '"flux-kontext", not "unet".',
        "`models.y` is a new model: it needs a `family` and a `source`.",
        '`defaults.model` "dall-e" is not a configured model.',
        '`gpus[1]`: Worker "cuda:0" names unknown model(s) nope; available: playground-v2.5, '
        "flux-dev, flux-schnell, flux2-klein-4b, flux2-klein-9b, flux-kontext-dev, x, y.",
    ]


def test_invalid_toml_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "atelier.toml"
    path.write_text("data_dir = [unclosed\n")

    with pytest.raises(ConfigError, match=r"atelier\.toml is not valid TOML"):
        load_settings(path, {})


def test_the_token_never_shows_in_text_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_from_mapping({}, {"DISCORD_TOKEN": TOKEN})
    caplog.set_level(logging.DEBUG)

    logging.getLogger("test").info("settings %s %r %s", settings, settings, settings.token)

    assert TOKEN not in caplog.text
    assert TOKEN not in repr(settings)
    assert TOKEN not in f"{settings.token}"
    assert not Secret("")
    assert settings.token


def test_the_token_comes_only_from_the_environment() -> None:
    with pytest.raises(ConfigError, match="Unknown setting `token`"):
        settings_from_mapping({"token": TOKEN}, {})
    assert not settings_from_mapping({}, {}).token


def test_an_unquoted_dotted_model_name_is_explained_with_its_quoted_form(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(
        '[models.playground-v2.5]\nsource = "/models/pg"\n\n[models.flux-dev]\nsteps = "many"\n'
    )

    with pytest.raises(ConfigError) as error:
        load_settings(config, {})

    assert error.value.problems == [
        "`[models.playground-v2.5]` was read as tables inside tables: TOML splits a table's "
        'name at each dot. Quote a model name that holds a dot: `[models."playground-v2.5"]`.',
        '`models.flux-dev.steps` should be a whole number, not "many".',  # not hidden by it
    ]
    config.write_text('[models."playground-v2.5"]\nsource = "/models/pg"\n')
    assert load_settings(config, {}).catalogue["playground-v2.5"].source == "/models/pg"


def test_model_values_that_would_fail_the_first_job_are_refused_all_at_once() -> None:
    table = {
        "models": {
            "flux-schnell": {"schedulers": ["edm-euler"], "steps": 50, "guidance": 7.0},
            "flux-dev": {"family": "playground", "native_side": 64},
            "playground-v2.5": {"steps": "many", "min_side": 1024, "max_side": 512},
        },
        "gpus": [{"device": "cuda:0", "models": ["flux-dev", "playground-v2.5"], "vram_gb": 8}],
    }

    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})

    assert caught.value.problems == [
        '`models.flux-schnell`: scheduler "edm-euler" is not one flux models offer (flow-euler).',
        "`models.flux-schnell`: steps = 50 is more than max_steps (16).",
        "`models.flux-schnell`: guidance = 7 is outside min_guidance..max_guidance (0 to 0).",
        '`models.flux-dev.family` is "playground", but flux-dev is a flux model: leave `family` '
        "out of a built-in model's table, or give yours a new name.",
        "`models.flux-dev`: native_side = 64 is outside min_side..max_side (256 to 2048).",
        '`models.playground-v2.5.steps` should be a whole number, not "many".',
        "`models.playground-v2.5`: min_side is larger than max_side.",  # not hidden by the above
        '`gpus[0]`: Worker "cuda:0": flux-dev needs 9.3 GiB with even its smallest (nf4-offload) '
        "profile, more than its vram_gb budget (8 GiB).",
    ]


def test_every_fault_of_a_gpu_table_is_listed_and_one_device_is_listed_once() -> None:
    table = {
        "gpus": [
            {"device": "cuda", "models": ["nope"], "pinned": ["nope2", "flux-dev"]},
            {"device": "cuda:00"},
            {"device": "cpu\n", "models": ["gone"]},
            {"device": "cuda:01", "max_models": True, "pinned": ["other"]},
            {"device": "cuda:1"},
        ]
    }

    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(table, {})

    available = (
        "available: playground-v2.5, flux-dev, flux-schnell, flux2-klein-4b, flux2-klein-9b, "
        "flux-kontext-dev."
    )
    assert caught.value.problems == [
        '`gpus[2].device`: unknown device "cpu\\n"; use cpu, cuda or cuda:N.',
        "`gpus[3].max_models` should be a whole number, not true.",
        "`gpus[0]`: Worker 'cuda' pins 2 models but may hold only 1 (raise max_models).",
        "`gpus[0]`: Worker 'cuda' pins 'nope2', which it may not run.",
        "`gpus[0]`: Worker 'cuda' pins 'flux-dev', which it may not run.",
        f'`gpus[0]`: Worker "cuda" names unknown model(s) nope, nope2; {available}',
        '`gpus[1]`: device "cuda:00" is the same device as `gpus[0]`\'s "cuda"; '
        "list each device once.",
        f"`gpus[2]`: it names unknown model(s) gone; {available}",  # its table is faulty
        f"`gpus[3]`: it names unknown model(s) other; {available}",
        '`gpus[4]`: device "cuda:1" is the same device as `gpus[3]`\'s "cuda:01"; '
        "list each device once.",
    ]


def test_a_first_retry_delay_above_its_ceiling_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"workers": {"backoff_s": 100, "max_backoff_s": 1}}, {})

    assert caught.value.problems == [
        "`workers.backoff_s` (100) is more than `workers.max_backoff_s` (1)."
    ]


def test_a_dm_blocklist_term_with_nothing_visible_is_a_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"dm_blocklist": ["gore", "\u200b\u2060", "*"]}, {})
    assert caught.value.problems == [
        '`dm_blocklist` "\\u200b\\u2060": A blocked term needs at least one visible letter, '
        "digit or sign.",
        '`dm_blocklist` "*": A blocked term needs at least one visible letter, digit or sign.',
    ]
    assert settings_from_mapping({"dm_blocklist": ["gore*"]}, {}).dm_blocklist == ("gore*",)
