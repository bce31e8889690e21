"""The settings of where commands work and what is downloaded, and the one escaping helper."""

from __future__ import annotations

import re

import pytest

from bot.config import EXAMPLE_CONFIG, ConfigError, load_settings, settings_from_mapping
from bot.ui.text import plain
from generation.workers.process import worker_environment

TOKEN = "MTIz.secret-token-value"


def test_commands_are_for_servers_only_unless_the_owner_allows_dms() -> None:
    example = load_settings(EXAMPLE_CONFIG, {"DISCORD_TOKEN": TOKEN})
    allowed = settings_from_mapping(
        {"allow_dms": True, "dm_blocklist": ["gore*"], "download_timeout_s": 5}, {}
    )

    assert (example.allow_dms, example.dm_blocklist, example.download_timeout_s) == (False, (), 20)
    assert (allowed.allow_dms, allowed.dm_blocklist, allowed.download_timeout_s) == (
        True,
        ("gore*",),
        5,
    )


def test_wrong_values_for_dms_and_downloads_are_each_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(
            {"allow_dms": "yes", "dm_blocklist": ["ok", 3], "download_timeout_s": 0}, {}
        )

    assert caught.value.problems == [
        '`allow_dms` should be true or false, not "yes".',
        "`dm_blocklist[1]` should be text, not 3.",
        "`download_timeout_s` should be at least 0.1, not 0.",
    ]


MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*\]\(")


@pytest.mark.parametrize(
    "text",
    [
        "[free nitro](https://evil.example)",
        "**bold** __under__ *it* _it_ ~~gone~~ ||spoiler|| `code` ```block```",
        "<@123456789012345678> <@&123456789012345678> <#123456789012345678> <t:0:R> @everyone",
        "# heading",
        "> quote",
        "-# small",
        "</imagine:123>",
    ],
)
def test_plain_text_cannot_become_markup(text: str) -> None:
    shown = plain(text)

    assert not MASKED_LINK.search(shown)
    assert not re.search(r"(?<!\\)[*_~|`]", shown)
    assert not re.search(r"(?<!\\)<", shown)
    assert "@everyone" not in shown  # escaped with a zero-width space, as discord.py does
    assert not re.match(r"(#|>|-#)", shown)


@pytest.mark.parametrize("limit", [1, 2, 10, 50, 1024])
def test_plain_text_fits_its_limit_after_escaping(limit: int) -> None:
    text = "**[x](https://e.example)** " * 100

    shown = plain(text, limit)

    assert len(shown) <= limit
    assert shown.endswith("…")
    assert not MASKED_LINK.search(shown)


def test_short_text_is_kept_whole() -> None:
    assert plain("a lighthouse at dusk", 300) == "a lighthouse at dusk"


def test_workers_get_what_cuda_torch_and_the_hub_need_and_no_secret() -> None:
    environ = {
        "PATH": "/usr/bin",
        "HOME": "/home/atelier",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
        "HF_HOME": "/models",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "OMP_NUM_THREADS": "4",
        "DISCORD_TOKEN": "secret",
        "HF_TOKEN": "secret",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "DATABASE_PASSWORD": "secret",
        "ATELIER_CONFIG": "/etc/atelier.toml",
        "SOMETHING_ELSE": "x",
    }

    env = worker_environment(environ)

    assert set(env) == {
        "PATH",
        "HOME",
        "LC_ALL",
        "CUDA_VISIBLE_DEVICES",
        "HF_HOME",
        "PYTORCH_CUDA_ALLOC_CONF",
        "OMP_NUM_THREADS",
        "PYTHONPATH",
    }
