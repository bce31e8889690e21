"""Numbers and paths in the configuration file: every number finite and a card's memory within
any card's, and relative local paths read from the file's folder (as `data_dir` is)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

ENV = {"DISCORD_TOKEN": "x"}


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("inf", "should be a finite number, not inf."),
        ("nan", "should be a finite number, not nan."),
        ("1e300", "should be at most 1024, not 1e+300."),
    ],
)
def test_a_card_memory_that_no_card_has_is_refused(written: str, says: str, tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(f'[[gpus]]\ndevices = ["cuda:0", "cuda:1"]\nvram_gb = {written}\n')
    with pytest.raises(ConfigError) as refused:
        load_settings(config, ENV)
    assert f"`gpus[0].vram_gb` {says}" in refused.value.problems


def test_no_number_in_the_file_may_be_infinite(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text("[models.flux-dev]\nmax_guidance = inf\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, ENV)
    assert "`models.flux-dev.max_guidance` should be a finite number, not inf." in str(
        refused.value.problems
    )


def test_relative_local_paths_are_read_from_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    (folder / "models" / "mine").mkdir(parents=True)
    config = folder / "atelier.toml"
    config.write_text(
        '[models.mine]\nfamily = "flux"\nsource = "./models/mine"\ngguf = "models/q.gguf"\n\n'
        '[models.hub]\nfamily = "flux"\nsource = "someone/flux-finetune"\n\n'
        '[loras.style]\nsource = "loras/style.safetensors"\nfamily = "flux"\n'
    )
    monkeypatch.chdir(tmp_path)  # elsewhere: the bot started from another folder

    settings = load_settings(config, ENV)

    mine = settings.catalogue["mine"]
    assert (mine.source, mine.gguf) == (str(folder / "models/mine"), str(folder / "models/q.gguf"))
    assert settings.catalogue["hub"].source == "someone/flux-finetune"  # a Hub id stays one
    assert settings.loras["style"].path() == folder / "loras/style.safetensors"


def test_the_command_line_tools_read_relative_paths_from_the_config_files_folder_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from generation.config_file import read_loras_tables, read_models_tables

    config = tmp_path / "conf" / "atelier.toml"
    config.parent.mkdir()
    config.write_text(
        '[models.mine]\nfamily = "flux"\nsource = "../models/mine"\ngguf = "q.gguf"\n\n'
        '[loras.style]\nsource = "style.safetensors"\nfamily = "flux"\n'
    )
    monkeypatch.chdir(tmp_path)
    mine = read_models_tables(config)["mine"]
    assert (mine["source"], mine["gguf"]) == (
        str(config.parent / "../models/mine"),
        str(config.parent / "q.gguf"),
    )
    assert read_loras_tables(config)["style"]["source"] == str(config.parent / "style.safetensors")
