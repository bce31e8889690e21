import pytest

from tests.discord.plugin import fake_discord as fake_discord

SPEC_CHECK = "tests/discord/test_spec.py::test_every_body_the_bots_sent_matches_the_spec"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The spec check validates the bodies every test made the bots send: it runs last."""
    last = [item for item in items if item.nodeid == SPEC_CHECK]
    items[:] = [item for item in items if item.nodeid != SPEC_CHECK] + last
