"""``FakeDiscord``: a local Discord (REST + gateway over real HTTP) for the real discord.py client.

Start it, point the bot at it (``tests.discord.harness``), then drive the bot like people would
and check what it did::

    async with FakeDiscord() as fake, run_bot(fake, make_bot):
        alice = fake.user("alice")
        ix = await fake.slash(alice, "imagine", {"prompt": "a fox", "count": 2},
                              attachments=[("init.png", png_bytes, "image/png")])
        first = await fake.interaction_response(ix)          # Callback(type, data, at)
        result = await fake.wait_for_message(lambda m: m.interaction is ix and m.attachments)
        rerun = await fake.click(alice, result, result.custom_ids[0])
        await fake.react(alice, result, "🔁")

Driving (each waits for a connected bot and returns the ``InteractionRecord`` at once, without
waiting for the answer; a command must have been synced by the bot, which ``slash`` waits for):
``slash(user, "admin ban", {...}, channel=, attachments=)``, ``autocomplete(user, cmd, {...},
focused=)`` (returns the choices), ``click(user, message, custom_id, values=)``,
``submit_modal(user, interaction, {custom_id: value})``, ``react`` / ``unreact(user, message,
emoji)``, ``dispatch(event, data)`` (any raw gateway event).

Reading (all plain attributes, see ``records``): ``messages`` (every message, oldest first),
``channel_messages(channel)``, ``dms(user)``, ``interactions``, ``commands`` (synced, per guild id
or ``None`` for global), ``command(name)``, ``attachments``, ``requests`` (every REST call with
its status), ``unhandled`` (REST routes the fake does not implement).

Waiting (no polling: woken by every change; raises ``BotCrashed`` at once if the bot crashed):
``wait_for(predicate)``, ``wait_for_message(predicate, channel=)``, ``interaction_response(ix)``,
``wait_until_connected(identifies=)``. Timeouts default to ``default_timeout`` (10 s).

Faults: ``fail_next(method, path_regex, status=429|500, times=, retry_after=)``,
``expire_tokens()`` (webhook calls then get 401 / 50027), ``close_dms(user)`` (DMs get 403 /
50007), ``attachment_size_limit`` (uploads above it get 413 / 40005; sent in every interaction),
``attachment_serving[filename] = status | other bytes | None`` (a CDN download that fails, lies
about its size, or never answers).

Strictness: every body is checked against Discord's documented limits (``limits``: content,
embeds, components, attachments, allowed mentions, flags, callbacks, autocomplete, modals,
application commands) and against Discord's OpenAPI spec where a copy is present (``spec``);
a refusal answers like Discord (400 / 50035 with an ``errors`` object, 413 / 40005). Time rules
run on ``clock``, which only ``advance(seconds)`` moves: first answers more than 3 s after the
interaction get 404 / 10062, follow-ups and edits 15 min after it 401 / 50027.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from tests.discord.clock import FakeClock
from tests.discord.faults import Dropped, Fault, Faults, RestError, error_response
from tests.discord.gateway import Gateway
from tests.discord.interactions import interaction_payload, modal_answer, modal_inputs
from tests.discord.options import InvalidOptions, OptionBuilder, Upload, attachment_option_names
from tests.discord.records import (
    Attachment,
    Callback,
    InteractionRecord,
    InteractionType,
    Message,
)
from tests.discord.rest import RestApi
from tests.discord.state import FakeState
from tests.discord.waiting import ChangeSignal
from tests.discord.world import Channel, User, World

T = TypeVar("T")
API_PREFIX = "/api/v10"
DEFAULT_TOKEN = "fake-bot-token"
TOKENLESS_ROUTES = ("/interactions/", "/webhooks/")
MAX_REQUEST_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class RequestRecord:
    """One REST request the bot made: ``path`` is relative to ``/api/v10``."""

    method: str
    path: str
    status: int
    at: float


class FakeDiscord:
    """A fake Discord on ``127.0.0.1`` (random port); see the module docstring for the API."""

    def __init__(
        self,
        world: World | None = None,
        *,
        token: str = DEFAULT_TOKEN,
        default_timeout: float = 10.0,
    ) -> None:
        self.world = world or World.default()
        self.token = token
        self.default_timeout = default_timeout
        self.port = 0
        self.requests: list[RequestRecord] = []
        self.unhandled: list[str] = []
        self.faults = Faults()
        self._signal = ChangeSignal()
        self.gateway = Gateway(self.world, token, lambda: self.gateway_url, self._signal.notify)
        self.state = FakeState(self.world, self.gateway, lambda: self.base_url, self._signal.notify)
        self._options = OptionBuilder(self.world, self.state.store_attachment)
        self._runner: web.AppRunner | None = None
        # By file name: how the CDN serves a person's upload instead of its bytes: an HTTP
        # status, other bytes (a size that lies), or None (no answer until the fake closes).
        self.attachment_serving: dict[str, int | bytes | None] = {}
        self._closing = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES, middlewares=[self._middleware])
        app.add_routes(RestApi(self.state, self.token).routes())
        app.add_routes(
            [
                web.get("/gateway", self.gateway.handle),
                web.get("/attachments/{id}/{filename}", self._serve_attachment),
            ]
        )
        app.router.add_route("*", "/{tail:.*}", self._unhandled)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self.gateway.close()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        """What ``discord.http.Route.BASE`` must be set to."""
        return self.base_url + API_PREFIX

    @property
    def gateway_url(self) -> str:
        """What ``DiscordWebSocket.DEFAULT_GATEWAY`` must be set to."""
        return f"ws://127.0.0.1:{self.port}/gateway"

    def child_env(self) -> dict[str, str]:
        """Environment for a bot in another process: the bot reads these two optional settings."""
        return {
            "DISCORD_API_BASE": self.api_base,
            "DISCORD_GATEWAY_URL": self.gateway_url,
            "DISCORD_TOKEN": self.token,
        }

    # -- people and places ---------------------------------------------------------------------

    def user(self, name: str) -> User:
        return self.world.user(name)

    def channel(self, name: str) -> Channel:
        return self.world.channel(name)

    def dm_channel(self, user: User) -> Channel:
        return self.world.dm_channel(user)

    # -- what was recorded ---------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        return list(self.state.messages.values())

    @property
    def interactions(self) -> list[InteractionRecord]:
        return list(self.state.interactions.values())

    @property
    def attachments(self) -> dict[int, Attachment]:
        return self.state.attachments

    @property
    def commands(self) -> dict[int | None, list[dict[str, Any]]]:
        return self.state.commands

    def channel_messages(self, channel: Channel) -> list[Message]:
        """Messages everyone sees in ``channel`` (not deleted, not ephemeral), oldest first."""
        return self.state.channel_messages(channel.id)

    def dms(self, user: User) -> list[Message]:
        """Messages the bot sent to ``user`` by DM, oldest first."""
        return self.state.channel_messages(self.world.dm_channel(user).id)

    def command(self, name: str, *, guild: bool = True) -> dict[str, Any] | None:
        """The synced command ``name`` (guild commands first, then global), or None."""
        scopes = [self.world.guild_id, None] if guild else [None]
        for scope in scopes:
            for command in self.state.commands.get(scope, []):
                if command["name"] == name:
                    return command
        return None

    # -- faults --------------------------------------------------------------------------------

    @property
    def attachment_size_limit(self) -> int:
        return self.state.attachment_size_limit

    @attachment_size_limit.setter
    def attachment_size_limit(self, limit: int) -> None:
        self.state.attachment_size_limit = limit

    def fail_next(
        self,
        method: str,
        path_regex: str,
        *,
        status: int = 429,
        times: int = 1,
        retry_after: float = 0.05,
    ) -> Fault:
        """Fail the next ``times`` requests whose path (after ``/api/v10``) matches; ``*`` = any
        method; ``status=DROPPED`` (0): the connection closes unanswered. Returns the ``Fault``,
        whose ``served`` counts the failures given out."""
        return self.faults.add(method, path_regex, status, times, retry_after)

    @property
    def clock(self) -> FakeClock:
        """Discord's clock for the 3 s and 15 min rules; only ``advance`` moves it."""
        return self.state.clock

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on Discord's side: a first answer later than 3 s after its
        interaction gets 404 / 10062, a follow-up or edit 15 min after it 401 / 50027."""
        self.state.clock.advance(seconds)
        self._signal.notify()

    def expire_tokens(self, interactions: Iterable[InteractionRecord] | None = None) -> None:
        """Expire interaction tokens (default: all so far), as Discord does after 15 minutes."""
        for ix in self.interactions if interactions is None else interactions:
            ix.expired = True
        self._signal.notify()

    def close_dms(self, user: User, closed: bool = True) -> None:
        """Make the bot's DMs to ``user`` fail with 403 / 50007 (or work again)."""
        if closed:
            self.state.closed_dms.add(user.id)
        else:
            self.state.closed_dms.discard(user.id)

    def report_crash(self, error: BaseException) -> None:
        """Called by the harness when the bot dies; every wait then raises ``BotCrashed``."""
        self._signal.report_crash(error)

    @property
    def crash(self) -> BaseException | None:
        return self._signal.crash

    # -- driving the bot -----------------------------------------------------------------------

    async def slash(
        self,
        user: User,
        command: str,
        options: Mapping[str, Any] | None = None,
        *,
        channel: Channel | None = None,
        attachments: Sequence[Upload] = (),
    ) -> InteractionRecord:
        """Invoke ``/command`` (``"admin ban"`` for subcommands) with typed ``options``.

        ``attachments`` fill the command's attachment options not given in ``options``, in order.
        """
        name, *path = command.split()
        definition = await self._synced_command(name, channel)
        values = dict(options or {})
        free = [n for n in attachment_option_names(definition, path) if n not in values]
        if len(attachments) > len(free):
            raise InvalidOptions(f"/{command} has no room for {len(attachments)} attachment(s)")
        values.update(zip(free, attachments, strict=False))
        data = self._options.build(definition, path, values)
        return await self._interact(InteractionType.COMMAND, user, channel, data)

    async def autocomplete(
        self,
        user: User,
        command: str,
        options: Mapping[str, Any],
        *,
        focused: str,
        channel: Channel | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[dict[str, Any]]:
        """Send an autocomplete request as the user types ``options[focused]``; the choices."""
        name, *path = command.split()
        definition = await self._synced_command(name, channel)
        data = self._options.build(definition, path, options, focused=focused)
        ix = await self._interact(InteractionType.AUTOCOMPLETE, user, channel, data)
        await self.interaction_response(ix, timeout=timeout)
        if ix.choices is None:
            raise AssertionError(f"the bot answered autocomplete with {ix.response}")
        return ix.choices

    async def click(
        self, user: User, message: Message, custom_id: str, *, values: Sequence[str] = ()
    ) -> InteractionRecord:
        """Click a button (or pick ``values`` in a select menu) on ``message``."""
        if message.deleted:
            raise ValueError(f"message {message.id} was deleted; nobody can click on it")
        component = message.component(custom_id)
        if component.get("disabled"):
            raise ValueError(f"component {custom_id!r} is disabled")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if component["type"] != 2:
            data["values"] = list(values)
        channel = self.world.channel_by_id(message.channel_id)
        return await self._interact(InteractionType.COMPONENT, user, channel, data, message)

    async def submit_modal(
        self, user: User, interaction: InteractionRecord, values: Mapping[str, Any]
    ) -> InteractionRecord:
        """Submit the modal the bot opened in answer to ``interaction``; ``values`` by custom_id
        (a str for text inputs, a list of str for selects)."""
        modal = interaction.modal
        if modal is None:
            raise ValueError(f"the bot did not open a modal for interaction {interaction.id}")
        unknown = set(values) - {c["custom_id"] for c in modal_inputs(modal["components"])}
        if unknown:
            raise InvalidOptions(f"modal {modal['custom_id']!r} has no inputs {sorted(unknown)}")
        data = {
            "custom_id": modal["custom_id"],
            "components": [modal_answer(c, values) for c in modal["components"]],
        }
        channel = self.world.channel_by_id(interaction.channel_id)
        return await self._interact(
            InteractionType.MODAL_SUBMIT, user, channel, data, interaction.message
        )

    async def react(self, user: User, message: Message, emoji: str) -> None:
        """``user`` adds ``emoji`` (unicode, or ``name:id`` for custom) to ``message``."""
        await self._require_visible(message)
        await self.state.add_reaction(message, user, emoji)

    async def unreact(self, user: User, message: Message, emoji: str) -> None:
        await self._require_visible(message)
        await self.state.remove_reaction(message, user, emoji)

    async def dispatch(self, event: str, data: Any) -> None:
        """Send any raw gateway event to the connected bot."""
        await self.wait_until_connected()
        await self.gateway.dispatch(event, data)

    async def _require_visible(self, message: Message) -> None:
        if message.deleted or message.ephemeral:
            raise ValueError(f"message {message.id} is deleted or ephemeral; nobody can react")
        await self.wait_until_connected()

    async def _synced_command(self, name: str, channel: Channel | None) -> dict[str, Any]:
        in_guild = channel is None or not channel.is_dm
        return await self.wait_for(
            lambda: self.command(name, guild=in_guild), what=f"the bot to sync command /{name}"
        )

    async def _interact(
        self,
        kind: InteractionType,
        user: User,
        channel: Channel | None,
        data: dict[str, Any],
        message: Message | None = None,
    ) -> InteractionRecord:
        await self.wait_until_connected()
        channel = channel or self.world.channel("general")
        interaction_id = self.world.ids.next()
        token = f"interaction-{interaction_id}-{secrets.token_urlsafe(16)}"
        payload = interaction_payload(
            self.world, self.state.upload_limit(channel), interaction_id, token, kind, user, channel
        )
        payload["data"] = data
        if message is not None:
            payload["message"] = self.state.message_payload(message)
        record = InteractionRecord(
            id=interaction_id,
            application_id=self.world.application_id,
            token=token,
            type=kind,
            user=user,
            channel_id=channel.id,
            payload=payload,
            dispatched_at=time.monotonic(),
            created_at=self.state.clock.now(),
            message=message,
        )
        self.state.interactions[interaction_id] = record
        if not await self.gateway.dispatch("INTERACTION_CREATE", payload):
            raise RuntimeError("the bot disconnected before the interaction could be sent")
        return record

    # -- waiting -------------------------------------------------------------------------------

    async def wait_for(
        self,
        predicate: Callable[[], T],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        what: str = "condition",
    ) -> T:
        """Wait until ``predicate()`` is truthy; return its value (re-checked on each change)."""
        return await self._signal.wait_for(predicate, timeout or self.default_timeout, what)

    async def wait_for_message(
        self,
        predicate: Callable[[Message], bool] | None = None,
        *,
        channel: Channel | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Message:
        """The oldest message (ephemeral ones included, deleted ones not) matching ``predicate``."""

        def find() -> Message | None:
            for message in self.state.messages.values():
                if message.deleted or (channel is not None and message.channel_id != channel.id):
                    continue
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.wait_for(find, timeout=timeout, what="a matching message")

    async def interaction_response(
        self,
        interaction: InteractionRecord,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Callback:
        """The bot's first callback to ``interaction`` (waits for it)."""
        return await self.wait_for(
            lambda: interaction.response,
            timeout=timeout,
            what=f"a response to interaction {interaction.id} ({interaction.data.get('name')})",
        )

    async def wait_until_connected(
        self,
        *,
        identifies: int | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Wait for a live gateway session (and at least ``identifies`` IDENTIFYs ever)."""
        gateway = self.gateway
        await self.wait_for(
            lambda: gateway.current is not None and gateway.identify_count >= (identifies or 0),
            timeout=timeout,
            what="the bot to connect to the gateway",
        )

    # -- HTTP plumbing -------------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX):
            return await handler(request)
        path = request.path[len(API_PREFIX) :]
        try:
            response = self.faults.take(request.method, path)
        except Dropped:
            assert request.transport is not None
            request.transport.close()
            self._signal.notify()
            return web.Response(status=499)  # never sent: the connection is gone
        authorized = request.headers.get("Authorization") == f"Bot {self.token}"
        if response is None and not authorized and not path.startswith(TOKENLESS_ROUTES):
            response = error_response(401, 0, "401: Unauthorized")
        if response is None:
            try:
                response = await handler(request)
            except RestError as error:
                response = error.response
        self.requests.append(RequestRecord(request.method, path, response.status, time.monotonic()))
        self._signal.notify()
        return response

    async def _unhandled(self, request: web.Request) -> web.Response:
        self.unhandled.append(f"{request.method} {request.path}")
        return error_response(404, 0, "404: Not Found (not implemented by the fake Discord)")

    async def _serve_attachment(self, request: web.Request) -> web.Response:
        attachment = self.state.attachments.get(int(request.match_info["id"]))
        if attachment is None:
            return web.Response(status=404)
        serving = self.attachment_serving.get(attachment.filename, attachment.data)
        if serving is None:
            await self._closing.wait()
            return web.Response(status=503)
        if isinstance(serving, int):
            return web.Response(status=serving)
        return web.Response(body=serving, content_type=attachment.content_type or None)
