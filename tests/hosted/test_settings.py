"""The key stays a secret: from the environment only, hidden from repr, not given to worker
processes, sent only to the API's own hosts."""

from __future__ import annotations

import pytest

from generation.hosted.settings import DEFAULT_URL, ApiSettings, SettingsError
from generation.workers.process import worker_environment


def test_settings_come_from_the_environment_and_hide_the_key() -> None:
    assert ApiSettings.from_environment({}) is None
    settings = ApiSettings.from_environment({"BFL_API_KEY": " bfl_secret "})
    assert settings is not None
    assert settings.key == "bfl_secret"
    assert settings.base_url == DEFAULT_URL
    assert "bfl_secret" not in repr(settings)
    local = ApiSettings.from_environment(
        {"BFL_API_KEY": "k", "BFL_API_URL": "http://127.0.0.1:8080/"}
    )
    assert local is not None
    assert local.base_url == "http://127.0.0.1:8080"


@pytest.mark.parametrize("url", ["api.bfl.ai", "ftp://api.bfl.ai", "https://"])
def test_an_unusable_base_url_is_refused_with_a_sentence(url: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL should look like"):
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})


def test_worker_processes_never_get_the_key() -> None:
    env = worker_environment({"BFL_API_KEY": "bfl_secret", "BFL_API_URL": "x", "PATH": "/bin"})
    assert "BFL_API_KEY" not in env
    assert "bfl_secret" not in env.values()
    assert env["PATH"] == "/bin"


@pytest.mark.parametrize(
    ("url", "trusted"),
    [
        ("https://api.bfl.ai/v1/get_result?id=1", True),
        ("https://api.eu2.bfl.ai/v1/get_result?id=1", True),
        ("http://api.eu2.bfl.ai/v1/get_result?id=1", False),  # the key never travels in clear
        ("https://bfl.ai.evil.example/v1/get_result", False),
        ("https://evilbfl.ai/v1/get_result", False),
        ("https://delivery-eu1.bfl.ai.example/x", False),
    ],
)
def test_the_key_goes_only_to_the_apis_own_hosts(url: str, trusted: bool) -> None:
    assert ApiSettings(key="k").trusts(url) is trusted


@pytest.mark.parametrize(
    ("base", "url", "trusted"),
    [
        # BFL's regional base URLs hand out polling hosts anywhere under bfl.ai
        ("https://api.eu.bfl.ai", "https://api.eu2.bfl.ai/v1/get_result?id=1", True),
        ("https://api.eu.bfl.ai", "https://api.us1.bfl.ai/v1/get_result?id=1", True),
        ("https://api.us.bfl.ai", "https://gateway.bfl.ai/v1/get_result?id=1", True),
        ("https://api.eu.bfl.ai", "https://bfl.ai.evil.example/v1/get_result", False),
        # an IP address trusts itself only (any port), never a "sibling" address
        ("http://127.0.0.1:8080", "http://127.0.0.1:9090/v1/get_result", True),
        ("http://127.0.0.1:8080", "http://10.0.0.1/v1/get_result", False),
        ("http://127.0.0.1:8080", "http://0.0.1/v1/get_result", False),
        ("http://10.0.0.1", "http://1.0.0.1/v1/get_result", False),
        ("http://localhost:8080", "http://other/v1/get_result", False),
        # a custom host trusts its parent's subtree; a two-label host its own
        ("https://bfl.proxy.example.com", "https://poll.proxy.example.com/x", True),
        ("https://bfl.proxy.example.com", "https://example.com/x", False),
        ("https://example.com", "https://poll.example.com/x", True),
        ("https://example.com", "https://com/x", False),
    ],
)
def test_the_trusted_hosts_follow_the_documented_rule(base: str, url: str, trusted: bool) -> None:
    assert ApiSettings(key="k", base_url=base).trusts(url) is trusted


@pytest.mark.parametrize(
    ("url", "use"),
    [
        ("https://api.bfl.ai/v1", "https://api.bfl.ai"),
        ("https://api.eu.bfl.ai/v1/", "https://api.eu.bfl.ai"),
        ("http://127.0.0.1:8080/V1", "http://127.0.0.1:8080"),
        ("https://api.bfl.ai?region=eu", "https://api.bfl.ai"),
    ],
)
def test_a_base_url_with_v1_or_a_query_is_refused_naming_the_variable(url: str, use: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL should end before /v1") as refused:
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})
    assert f"Use {use!r}" in str(refused.value)


@pytest.mark.parametrize("url", ["https://api.bfl.ai:port", "http://[::1"])
def test_a_url_that_does_not_parse_is_refused_with_a_sentence(url: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL should look like"):
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})


def test_a_proxy_under_a_path_is_still_taken() -> None:
    proxied = ApiSettings.from_environment(
        {"BFL_API_KEY": "k", "BFL_API_URL": "https://gateway.example.com/bfl/"}
    )
    assert proxied is not None
    assert proxied.base_url == "https://gateway.example.com/bfl"


@pytest.mark.parametrize(
    ("url", "use"),
    [
        ("https://api.bfl.ai/v1/flux-pro-1.1", "https://api.bfl.ai"),
        ("https://api.bfl.ai/api", "https://api.bfl.ai"),  # BFL serves the API at the root
        ("https://api.eu.bfl.ai/x/", "https://api.eu.bfl.ai"),
        ("https://gateway.example.com/bfl/v1/flux-2-pro", "https://gateway.example.com/bfl"),
        ("https://api.bfl.ai#x", "https://api.bfl.ai"),
    ],
)
def test_a_base_url_with_a_path_the_api_lacks_is_refused(url: str, use: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL should end before /v1") as refused:
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})
    assert f"Use {use!r}" in str(refused.value)


@pytest.mark.parametrize(
    "url", ["https://api .bfl.ai", "https://api.bfl.ai;x", "https://-api.bfl.ai", "https://a..b"]
)
def test_a_base_url_whose_host_is_not_a_host_name_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL should look like"):
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})


@pytest.mark.parametrize("url", ["https://u:p@api.bfl.ai", "https://token@proxy.example.com"])
def test_a_base_url_with_a_user_or_password_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL must not hold a user name") as refused:
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})
    assert "u:p" not in str(refused.value)


@pytest.mark.parametrize("url", ["http://api.bfl.ai", "http://proxy.example.com:8080"])
def test_plain_http_to_a_host_off_this_network_is_refused(url: str) -> None:
    with pytest.raises(SettingsError, match="BFL_API_URL must use https"):
        ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080",
        "http://127.0.0.1:9",
        "http://[::1]:9",
        "http://10.0.0.5",
        "http://bfl-proxy",
    ],
)
def test_plain_http_to_this_machine_or_network_is_taken(url: str) -> None:
    settings = ApiSettings.from_environment({"BFL_API_KEY": "k", "BFL_API_URL": url})
    assert settings is not None
    assert settings.base_url == url
