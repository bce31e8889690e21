"""Running a real discord.py bot against a ``FakeDiscord``: in this process or in a child process.

In-process (fast; the test can look at the bot object)::

    async with run_bot(fake, make_bot) as runner:    # make_bot() -> commands.Bot (or a coroutine)
        ...                                           # runner.bot is the running client
        await runner.restart()                        # close it, build a NEW bot, wait until ready

``run_bot`` points discord.py at the fake (``point_discord_at``), starts ``bot.start(token)`` as
a task, waits for ``on_ready`` and watches the task: if the gateway loop dies (for instance on a
payload discord.py cannot parse) every wait on the fake raises ``BotCrashed`` at once, and so does
leaving the block. A bot whose ``guild_ready_timeout`` is left at discord.py's 2 s default gets
0.01 s (else every start costs 2 s).

Separate process (for SIGKILL tests): ``BotProcess(fake, [sys.executable, "-m", "bot"])``. The
child gets ``fake.child_env()`` in its environment: ``DISCORD_API_BASE``, ``DISCORD_GATEWAY_URL``
and ``DISCORD_TOKEN``. The bot must not import tests, so it applies the two optional settings
itself, before connecting::

    discord.http.Route.BASE = api_base                                    # DISCORD_API_BASE
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)  # DISCORD_GATEWAY_URL

``start()`` returns once the child has identified on the gateway; ``kill()`` sends SIGKILL;
an exit nobody asked for is reported as a crash (with the child's output) like above.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import discord
import yarl
from discord.gateway import DiscordWebSocket

from tests.discord.server import FakeDiscord
from tests.discord.waiting import BotCrashed

BotFactory = Callable[[], discord.Client | Awaitable[discord.Client]]
DISCORD_PY_DEFAULT_GUILD_READY_TIMEOUT = 2.0
TEST_GUILD_READY_TIMEOUT = 0.01


@contextlib.contextmanager
def point_discord_at(fake: FakeDiscord) -> Iterator[None]:
    """Send discord.py's REST calls and gateway connections to ``fake``; restore on exit."""
    real_base, real_gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = fake.api_base
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = real_base, real_gateway


class BotRunner:
    """Starts, stops and restarts bots made by ``factory`` against ``fake``, in this process."""

    def __init__(self, fake: FakeDiscord, factory: BotFactory) -> None:
        self.fake = fake
        self.factory = factory
        self.bot: discord.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, timeout: float | None = None) -> discord.Client:  # noqa: ASYNC109
        """Build a bot, log it in and wait until it is ready (guild received)."""
        if self._task is not None:
            raise RuntimeError("a bot is already running; stop() it first")
        bot = self.factory()
        if inspect.isawaitable(bot):
            bot = await bot
        if bot._connection.guild_ready_timeout == DISCORD_PY_DEFAULT_GUILD_READY_TIMEOUT:
            bot._connection.guild_ready_timeout = TEST_GUILD_READY_TIMEOUT
        self.bot = bot
        self._task = asyncio.create_task(bot.start(self.fake.token), name="discord bot")
        self._task.add_done_callback(self._on_exit)
        await asyncio.sleep(0)  # lets login() create the ready event wait_until_ready() needs
        ready = asyncio.ensure_future(bot.wait_until_ready())
        await asyncio.wait(
            {ready, self._task},
            timeout=timeout or self.fake.default_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not ready.done():
            ready.cancel()
            self.fake._signal.raise_if_crashed()
            raise TimeoutError("the bot did not become ready")
        return bot

    async def stop(self) -> None:
        """Close the bot (as a clean shutdown would) and wait for its task to end."""
        task, bot = self._task, self.bot
        self._task = None
        if bot is not None and not bot.is_closed():
            await bot.close()
        if task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task

    async def restart(self, *, timeout: float | None = None) -> discord.Client:  # noqa: ASYNC109
        """Stop the bot and start a fresh one (a new object, empty caches) like a redeploy."""
        await self.stop()
        return await self.start(timeout=timeout)

    def _on_exit(self, task: asyncio.Task[None]) -> None:
        if task is not self._task:
            return  # stopped on purpose
        if task.cancelled():
            error: BaseException = asyncio.CancelledError("the bot task was cancelled")
        else:
            error = task.exception() or RuntimeError("bot.start() returned: the client closed")
        self.fake.report_crash(error)


@contextlib.asynccontextmanager
async def run_bot(fake: FakeDiscord, factory: BotFactory) -> AsyncIterator[BotRunner]:
    """Run a bot from ``factory`` against ``fake`` for the block; see the module docstring."""
    with point_discord_at(fake):
        runner = BotRunner(fake, factory)
        try:
            await runner.start()
            yield runner
        finally:
            await runner.stop()
    fake._signal.raise_if_crashed()


class BotProcess:
    """The bot as a child process (``args``), its output collected in ``log_path``."""

    def __init__(
        self,
        fake: FakeDiscord,
        args: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.fake = fake
        self.args = list(args)
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **fake.child_env(), **(env or {})}
        self.cwd = cwd
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="bot-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._watcher: asyncio.Task[None] | None = None

    async def start(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Spawn the bot and wait until it has identified on the fake's gateway."""
        if self.process is not None:
            raise RuntimeError("the bot process is already running")
        identified = self.fake.gateway.identify_count
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.args, env=self.env, cwd=self.cwd, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        self._watcher = asyncio.create_task(self._watch(self.process))
        await self.fake.wait_until_connected(identifies=identified + 1, timeout=timeout)

    async def kill(self) -> int:
        """SIGKILL the bot (no cleanup of any kind) and return its exit code."""
        return await self._end(signal.SIGKILL)

    async def terminate(self) -> int:
        """SIGTERM the bot (a clean shutdown) and return its exit code."""
        return await self._end(signal.SIGTERM)

    def output(self) -> str:
        """Everything the bot printed so far (all runs)."""
        return self.log_path.read_text(errors="replace")

    async def _end(self, how: signal.Signals) -> int:
        process, self.process = self.process, None
        if process is None:
            raise RuntimeError("the bot process is not running")
        if process.returncode is None:
            process.send_signal(how)
        return await process.wait()

    async def _watch(self, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if process is self.process:
            tail = self.output()[-4000:]
            self.fake.report_crash(BotCrashed(f"bot process exited with code {code}:\n{tail}"))


@contextlib.asynccontextmanager
async def run_bot_process(
    fake: FakeDiscord, args: Sequence[str], **options: object
) -> AsyncIterator[BotProcess]:
    """Start a ``BotProcess`` for the block; it is terminated (or killed) at the end."""
    bot = BotProcess(fake, args, **options)  # type: ignore[arg-type]
    try:
        await bot.start()
        yield bot
    finally:
        if bot.process is not None:
            await bot.terminate()
