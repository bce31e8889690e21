"""A fake Discord that the REAL discord.py client connects to, for end-to-end bot tests.

- ``server.FakeDiscord``: REST + gateway on 127.0.0.1 (random port); drive the bot (``slash``,
  ``click``, ``react``, ``autocomplete``, ``submit_modal``), read what it did (``messages``,
  ``interactions``), wait for it (``wait_for``...), inject faults (``fail_next``,
  ``expire_tokens``). Its module docstring is the reference.
- ``world``: the simulated guild, roles, channels and people (``fake.user("alice")``).
- ``records``: ``Message``, ``Attachment``, ``InteractionRecord``, ``Callback`` as tests see them.
- ``harness``: ``run_bot`` (in-process bot, restartable) and ``BotProcess`` (child process, for
  SIGKILL tests; configured through ``DISCORD_API_BASE`` / ``DISCORD_GATEWAY_URL``).
- ``plugin``: the ``fake_discord`` pytest fixture.
- ``limits``: Discord's documented limits (each with its source), checked on every body;
  ``spec``: every body validated against Discord's OpenAPI spec where a copy is present;
  ``clock``: the clock the tests advance for the 3 s and 15 min rules (``fake.advance``).
"""

from tests.discord.harness import BotProcess, BotRunner, point_discord_at, run_bot, run_bot_process
from tests.discord.options import InvalidOptions
from tests.discord.records import (
    Attachment,
    Callback,
    CallbackType,
    InteractionRecord,
    Message,
    MessageFlag,
)
from tests.discord.server import FakeDiscord
from tests.discord.waiting import BotCrashed
from tests.discord.world import Permission, World

__all__ = [
    "Attachment",
    "BotCrashed",
    "BotProcess",
    "BotRunner",
    "Callback",
    "CallbackType",
    "FakeDiscord",
    "InteractionRecord",
    "InvalidOptions",
    "Message",
    "MessageFlag",
    "Permission",
    "World",
    "point_discord_at",
    "run_bot",
    "run_bot_process",
]
