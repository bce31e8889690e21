"""The fake's REST API (``/api/v10/...``): the routes a discord.py bot calls, over real HTTP.

Requests are checked like Discord checks them: the bot token on authenticated routes,
interaction tokens (unknown → 10062/10015; a first answer after 3 s → 404 10062; 15 min old →
401 50027), double acknowledgement (40060), empty messages (50006), every body against the
documented limits (``limits``) and the OpenAPI spec (``spec``) → 400 50035 with an ``errors``
object, uploads over the per-file limit or 25 MiB per request (413, 40005), DMs to a user who
closed them (50007).
Anything not implemented answers 404 and is listed in ``FakeDiscord.unhandled``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.discord.clock import FIRST_RESPONSE_S, TOKEN_LIFETIME_S
from tests.discord.command_limits import check_commands
from tests.discord.faults import RestError, json_response
from tests.discord.limits import (
    FormErrors,
    Route,
    check_callback,
    check_file_count,
    check_message,
    check_upload,
)
from tests.discord.message_rules import is_unicode_emoji
from tests.discord.options import content_type_for
from tests.discord.records import (
    Attachment,
    Callback,
    CallbackType,
    InteractionRecord,
    Message,
    MessageFlag,
    MessageVersion,
)
from tests.discord.spec import PROBE_HEADER, RECORDED_BODIES, RecordedBody, spec_validator
from tests.discord.state import FakeState
from tests.discord.world import Channel, Permission

API_PREFIX = "/api/v10"
FILE_FIELD = re.compile(r"files\[(\d+)\]")
Upload = tuple[str, bytes]


UNKNOWN_CHANNEL = (404, 10003, "Unknown Channel")
UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")
UNKNOWN_INTERACTION = (404, 10062, "Unknown interaction")
INVALID_WEBHOOK_TOKEN = (401, 50027, "Invalid Webhook Token")


async def read_body(request: web.Request) -> tuple[Any, dict[int, Upload], int]:
    """The JSON payload, the uploaded files (multipart ``payload_json`` + ``files[n]``) and the
    request's size in bytes."""
    if request.content_type.startswith("multipart/"):
        payload: Any = {}
        files: dict[int, Upload] = {}
        size = 0
        reader = await request.multipart()
        async for part in reader:
            name = part.name or ""
            data = bytes(await part.read())
            size += len(data)
            if name == "payload_json":
                payload = json.loads(data)
            elif match := FILE_FIELD.fullmatch(name):
                files[int(match[1])] = (part.filename or f"file{match[1]}", data)
        return payload, files, size
    if request.body_exists:
        raw = await request.read()
        return json.loads(raw), {}, len(raw)
    return {}, {}, 0


class RestApi:
    """aiohttp handlers over a ``FakeState``; ``routes()`` lists them for the application."""

    def __init__(self, state: FakeState, token: str) -> None:
        self.state = state
        self.world = state.world
        self.token = token

    async def body(
        self,
        request: web.Request,
        check: Callable[[Any, FormErrors], None] | None = None,
        upload_limit: int | None = None,
    ) -> tuple[Any, dict[int, Upload]]:
        """Read a request body as Discord does: the upload limits first (413 / 40005; each file
        at most ``upload_limit``, by default the server's), then the spec's schema and ``check``
        (400 / 50035). Every body is recorded (``spec``)."""
        payload, files, size = await read_body(request)
        per_file = self.state.attachment_size_limit if upload_limit is None else upload_limit
        check_upload((len(data) for _, data in files.values()), size, per_file)
        path = request.path.removeprefix(API_PREFIX)
        content_type = (
            "multipart/form-data"
            if files or request.content_type.startswith("multipart/")
            else "application/json"
        )
        validator = spec_validator()
        route = validator.route(path) if validator else None
        probe = PROBE_HEADER in request.headers
        record = RecordedBody(request.method, path, route, content_type, payload, probe)
        RECORDED_BODIES.append(record)
        errors = FormErrors()
        if validator is not None and route is not None:
            for where, why in validator.errors(request.method, route, content_type, payload):
                errors.add(where, "SCHEMA_INVALID", why)
        if check is not None:
            check(payload, errors)
        check_file_count(len(files), errors)
        errors.raise_if_any()
        return payload, files

    def routes(self) -> list[web.RouteDef]:
        p = API_PREFIX
        hook = p + "/webhooks/{app}/{token}"
        message = p + "/channels/{channel}/messages/{message}"
        return [
            web.get(p + "/users/@me", self.get_me),
            web.get(p + "/oauth2/applications/@me", self.get_application),
            web.get(p + "/gateway", self.get_gateway),
            web.get(p + "/gateway/bot", self.get_gateway),
            web.get(p + "/applications/{app}/commands", self.get_commands),
            web.put(p + "/applications/{app}/commands", self.put_commands),
            web.get(p + "/applications/{app}/guilds/{guild}/commands", self.get_commands),
            web.put(p + "/applications/{app}/guilds/{guild}/commands", self.put_commands),
            web.post(p + "/interactions/{id}/{token}/callback", self.interaction_callback),
            web.post(hook, self.post_followup),
            web.get(hook + "/messages/{message}", self.get_webhook_message),
            web.patch(hook + "/messages/{message}", self.edit_webhook_message),
            web.delete(hook + "/messages/{message}", self.delete_webhook_message),
            web.get(p + "/channels/{channel}", self.get_channel),
            web.post(p + "/channels/{channel}/typing", self.no_content),
            web.get(p + "/channels/{channel}/messages", self.get_history),
            web.post(p + "/channels/{channel}/messages", self.post_message),
            web.get(message, self.get_message),
            web.patch(message, self.edit_message),
            web.delete(message, self.delete_message),
            web.get(message + "/reactions/{emoji}", self.get_reactions),
            web.put(message + "/reactions/{emoji}/{user}", self.put_reaction),
            web.delete(message + "/reactions/{emoji}/{user}", self.delete_reaction),
            web.post(p + "/users/@me/channels", self.open_dm),
            web.get(p + "/users/{user}", self.get_user),
            web.get(p + "/guilds/{guild}", self.get_guild),
            web.get(p + "/guilds/{guild}/members/{user}", self.get_member),
        ]

    # -- login, gateway, commands ------------------------------------------------------------

    async def get_me(self, request: web.Request) -> web.Response:
        return json_response(self.world.bot.payload())

    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(self.world.application_id),
                "name": self.world.bot.name,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.world.owner.payload(),
                "verify_key": "0" * 64,
                "flags": 0,
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        url = str(request.url.with_path("/gateway").with_query(None)).replace("http", "ws", 1)
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return json_response({"url": url, "shards": 1, "session_start_limit": limit})

    async def get_commands(self, request: web.Request) -> web.Response:
        return json_response(self.state.commands.get(self._guild_key(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        """Bulk overwrite, as ``CommandTree.sync``: ids are kept for commands that stay."""
        guild = self._guild_key(request)
        previous = {c["name"]: c for c in self.state.commands.get(guild, [])}
        synced = []
        commands, _ = await self.body(request, check_commands)
        for command in commands:
            old = previous.get(command["name"])
            record = dict(command)
            record.update(
                id=old["id"] if old else str(self.world.ids.next()),
                application_id=str(self.world.application_id),
                version=str(self.world.ids.next()),
                type=command.get("type", 1),
                description=command.get("description", ""),
            )
            if guild is not None:
                record["guild_id"] = str(guild)
            synced.append(record)
        self.state.commands[guild] = synced
        self.state.changed()
        return json_response(synced)

    @staticmethod
    def _guild_key(request: web.Request) -> int | None:
        guild = request.match_info.get("guild")
        return int(guild) if guild else None

    # -- interactions --------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        ix = self.state.interactions.get(int(request.match_info["id"]))
        if ix is None or ix.token != request.match_info["token"] or ix.expired:
            raise RestError(*UNKNOWN_INTERACTION)
        if ix.callbacks:
            raise RestError(400, 40060, "Interaction has already been acknowledged.")
        if self.state.clock.now() - ix.created_at > FIRST_RESPONSE_S:
            raise RestError(*UNKNOWN_INTERACTION)
        payload, files = await self.body(
            request,
            lambda body, errors: check_callback(ix.type, body, errors, ix.payload.get("data")),
            ix.payload["attachment_size_limit"],
        )
        kind = CallbackType(payload["type"])
        data = payload.get("data") or {}
        message = await self._apply_callback(ix, kind, data, files)
        ix.callbacks.append(Callback(kind, data, arrived))
        self.state.changed()
        resource: dict[str, Any] = {"type": int(kind)}
        if message is not None and kind != CallbackType.DEFERRED_UPDATE:
            resource["message"] = self.state.message_payload(message)
        interaction = {
            "id": str(ix.id),
            "type": int(ix.type),
            "response_message_loading": kind == CallbackType.DEFERRED_MESSAGE,
            "response_message_ephemeral": bool(message and message.ephemeral),
        }
        if message is not None:
            interaction["response_message_id"] = str(message.id)
        return json_response({"interaction": interaction, "resource": resource})

    async def _apply_callback(
        self,
        ix: InteractionRecord,
        kind: CallbackType,
        data: dict[str, Any],
        files: dict[int, Upload],
    ) -> Message | None:
        channel = self._channel(ix.channel_id)
        bot = self.world.bot
        if kind == CallbackType.MESSAGE:
            version = self._compose(data, files, None)
            ix.original = await self.state.create_message(channel, bot, version, interaction=ix)
        elif kind == CallbackType.DEFERRED_MESSAGE:
            flags = MessageFlag.LOADING | (data.get("flags", 0) & MessageFlag.EPHEMERAL)
            loading = MessageVersion("", (), (), (), flags)
            ix.original = await self.state.create_message(channel, bot, loading, interaction=ix)
        elif kind in (CallbackType.UPDATE, CallbackType.DEFERRED_UPDATE):
            if ix.message is None:
                raise RestError(400, 50035, "Invalid Form Body: no message to update")
            ix.original = ix.message
            if kind == CallbackType.UPDATE:
                await self.state.edit_message(
                    ix.message, self._compose(data, files, ix.message.current)
                )
        return ix.original

    def _webhook_interaction(self, request: web.Request) -> InteractionRecord:
        ix = self.state.interaction_by_token(request.match_info["token"])
        if ix is None or not ix.callbacks:
            raise RestError(*UNKNOWN_WEBHOOK)
        if ix.expired or self.state.clock.now() - ix.created_at >= TOKEN_LIFETIME_S:
            raise RestError(*INVALID_WEBHOOK_TOKEN)
        return ix

    def _webhook_message(self, request: web.Request) -> tuple[InteractionRecord, Message]:
        ix = self._webhook_interaction(request)
        wanted = request.match_info["message"]
        for message in ix.messages:
            original = wanted == "@original" and message is ix.original
            if (original or wanted == str(message.id)) and not message.deleted:
                return ix, message
        raise RestError(*UNKNOWN_MESSAGE)

    async def post_followup(self, request: web.Request) -> web.Response:
        """A follow-up; the first one after a deferred response fills the "thinking…" message."""
        ix = self._webhook_interaction(request)
        payload, files = await self.body(
            request, _message_check(Route.INTERACTION), ix.payload["attachment_size_limit"]
        )
        if ix.original is not None and ix.original.loading and not ix.original.deleted:
            version = self._compose(payload, files, None, keep_flags=ix.original.flags)
            message = ix.original
            await self.state.edit_message(message, version)
        else:
            channel = self._channel(ix.channel_id)
            version = self._compose(payload, files, None)
            message = await self.state.create_message(
                channel, self.world.bot, version, interaction=ix, webhook_id=ix.application_id
            )
            ix.followups.append(message)
            self.state.changed()
        if request.query.get("wait", "").lower() in ("1", "true"):
            return json_response(self.state.message_payload(message))
        return web.Response(status=204)

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        return json_response(self.state.message_payload(message))

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        ix, message = self._webhook_message(request)
        payload, files = await self.body(
            request, _message_check(Route.WEBHOOK_EDIT), ix.payload["attachment_size_limit"]
        )
        version = self._compose(payload, files, message.current, keep_flags=message.flags)
        await self.state.edit_message(message, version)
        return json_response(self.state.message_payload(message))

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        _, message = self._webhook_message(request)
        await self.state.delete_message(message)
        return web.Response(status=204)

    # -- channels and messages -----------------------------------------------------------------

    def _channel(self, channel_id: int | str) -> Channel:
        channel = self.world.channel_by_id(int(channel_id))
        if channel is None:
            raise RestError(*UNKNOWN_CHANNEL)
        return channel

    def _require_permissions(self, channel: Channel, needed: int) -> None:
        """docs/topics/permissions.md: the bot's own permissions in ``channel`` (roles and
        overwrites) must hold ``needed``; else 403 / 50013 "Missing Permissions"
        (docs/topics/opcodes-and-status-codes.md). Interaction answers and follow-ups need
        none (they are webhooks)."""
        if ~self.world.channel_permissions(self.world.bot, channel) & needed:
            raise RestError(403, 50013, "Missing Permissions")

    def _require_content_permissions(
        self, channel: Channel, payload: dict[str, Any], files: dict[int, Upload]
    ) -> None:
        """Uploads need ATTACH_FILES, embeds EMBED_LINKS."""
        needed = (Permission.ATTACH_FILES if files else 0) | (
            Permission.EMBED_LINKS if payload.get("embeds") else 0
        )
        self._require_permissions(channel, needed)

    def _check_reference(self, channel: Channel, reference: dict[str, Any] | None) -> None:
        """docs/resources/message.md, "Message Reference Structure": a reply's message must exist
        in the same channel unless ``fail_if_not_exists`` is false (then it is a plain message);
        else 400 / 50035 (MESSAGE_REFERENCE_UNKNOWN_MESSAGE)."""
        if not reference or reference.get("fail_if_not_exists") is False:
            return
        target = self.state.messages.get(int(reference["message_id"]))
        in_channel = int(reference.get("channel_id") or channel.id) == channel.id
        if target is None or target.deleted or target.channel_id != channel.id or not in_channel:
            errors = FormErrors()
            errors.add(
                ("message_reference",), "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
            )
            errors.raise_if_any()

    def _message(self, request: web.Request) -> Message:
        channel = self._channel(request.match_info["channel"])
        message = self.state.messages.get(int(request.match_info["message"]))
        if (
            message is None
            or message.channel_id != channel.id
            or message.deleted
            or message.ephemeral
        ):
            raise RestError(*UNKNOWN_MESSAGE)
        return message

    async def get_channel(self, request: web.Request) -> web.Response:
        return json_response(self._channel(request.match_info["channel"]).payload())

    async def no_content(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def get_history(self, request: web.Request) -> web.Response:
        """Newest first, with ``limit`` and ``before`` / ``after`` message ids."""
        channel = self._channel(request.match_info["channel"])
        messages = self.state.channel_messages(channel.id)
        if "before" in request.query:
            messages = [m for m in messages if m.id < int(request.query["before"])]
        if "after" in request.query:
            messages = [m for m in messages if m.id > int(request.query["after"])]
        limit = min(int(request.query.get("limit", 50)), 100)
        newest = messages[::-1][:limit] if "after" not in request.query else messages[:limit][::-1]
        return json_response([self.state.message_payload(m) for m in newest])

    async def post_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request.match_info["channel"])
        if channel.recipient is not None and channel.recipient.id in self.state.closed_dms:
            raise RestError(403, 50007, "Cannot send messages to this user")
        self._require_permissions(channel, Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES)
        payload, files = await self.body(
            request, _message_check(Route.CREATE), self.state.upload_limit(channel)
        )
        self._require_content_permissions(channel, payload, files)
        self._check_reference(channel, payload.get("message_reference"))
        version = self._compose(payload, files, None)
        message = await self.state.create_message(channel, self.world.bot, version)
        return json_response(self.state.message_payload(message))

    async def get_message(self, request: web.Request) -> web.Response:
        return json_response(self.state.message_payload(self._message(request)))

    async def edit_message(self, request: web.Request) -> web.Response:
        message = self._message(request)
        if message.author != self.world.bot:
            raise RestError(403, 50005, "Cannot edit a message authored by another user")
        channel = self._channel(message.channel_id)
        payload, files = await self.body(
            request, _message_check(Route.EDIT), self.state.upload_limit(channel)
        )
        self._require_content_permissions(channel, payload, files)
        version = self._compose(payload, files, message.current, keep_flags=message.flags)
        await self.state.edit_message(message, version)
        return json_response(self.state.message_payload(message))

    async def delete_message(self, request: web.Request) -> web.Response:
        await self.state.delete_message(self._message(request))
        return web.Response(status=204)

    async def get_reactions(self, request: web.Request) -> web.Response:
        message = self._message(request)
        users = message.reaction_users(request.match_info["emoji"])
        return json_response([user.payload() for user in users])

    async def put_reaction(self, request: web.Request) -> web.Response:
        if request.match_info["user"] != "@me":
            raise RestError(405, 0, "405: Method Not Allowed")
        message = self._message(request)
        emoji = request.match_info["emoji"]
        # docs/resources/message.md, "Create Reaction": an emoji Discord does not know (or one
        # not URL-encoded) answers 10014 Unknown Emoji; the fake's server has no custom emoji.
        if not is_unicode_emoji(emoji):
            raise RestError(400, 10014, "Unknown Emoji")
        self._require_permissions(
            self._channel(message.channel_id),
            Permission.ADD_REACTIONS | Permission.READ_MESSAGE_HISTORY,
        )
        await self.state.add_reaction(message, self.world.bot, emoji)
        return web.Response(status=204)

    async def delete_reaction(self, request: web.Request) -> web.Response:
        message = self._message(request)
        raw_user = request.match_info["user"]
        user = self.world.bot if raw_user == "@me" else self.world.user_by_id(int(raw_user))
        if user is None:
            raise RestError(404, 10013, "Unknown User")
        await self.state.remove_reaction(message, user, request.match_info["emoji"])
        return web.Response(status=204)

    # -- users and guild -----------------------------------------------------------------------

    async def open_dm(self, request: web.Request) -> web.Response:
        payload, _ = await self.body(request)
        user = self.world.user_by_id(int(payload["recipient_id"]))
        if user is None:
            raise RestError(404, 10013, "Unknown User")
        return json_response(self.world.dm_channel(user).payload())

    async def get_user(self, request: web.Request) -> web.Response:
        user = self.world.user_by_id(int(request.match_info["user"]))
        if user is None:
            raise RestError(404, 10013, "Unknown User")
        return json_response(user.payload())

    async def get_guild(self, request: web.Request) -> web.Response:
        if int(request.match_info["guild"]) != self.world.guild_id:
            raise RestError(404, 10004, "Unknown Guild")
        guild = self.world.guild_payload()
        for key in ("channels", "members", "threads", "presences", "voice_states"):
            guild.pop(key)
        return json_response(guild)

    async def get_member(self, request: web.Request) -> web.Response:
        user = self.world.user_by_id(int(request.match_info["user"]))
        if user is None or int(request.match_info["guild"]) != self.world.guild_id:
            raise RestError(404, 10007, "Unknown Member")
        return json_response(self.world.member_payload(user))

    # -- message bodies ------------------------------------------------------------------------

    def _compose(
        self,
        payload: dict[str, Any],
        files: dict[int, Upload],
        previous: MessageVersion | None,
        *,
        keep_flags: int | None = None,
    ) -> MessageVersion:
        """The message version a create (``previous`` None) or edit request produces (its body
        already checked by ``body``)."""

        def field(key: str, default: Any) -> Any:
            if key in payload:
                return payload[key] or default
            return default if previous is None else getattr(previous, key)

        content = field("content", "")
        embeds = tuple(field("embeds", ()))
        components = tuple(field("components", ()))
        attachments = self._attachments(payload, files, previous)
        if keep_flags is None:
            flags = payload.get("flags") or 0
        else:
            flags = (keep_flags & ~MessageFlag.LOADING) | (payload.get("flags") or 0)
        # whitespace alone is no content (Discord strips it): 50006 as for an empty message
        if not (content.strip() or embeds or attachments or components):
            raise RestError(400, 50006, "Cannot send an empty message")
        return MessageVersion(content, embeds, attachments, components, flags)

    def _attachments(
        self, payload: dict[str, Any], files: dict[int, Upload], previous: MessageVersion | None
    ) -> tuple[Attachment, ...]:
        """Discord's rule: ``attachments`` lists the ones to keep (by id) and the new uploads."""
        existing = {a.id: a for a in previous.attachments} if previous else {}
        entries = payload.get("attachments")
        if entries is None:
            entries = [{"id": a_id} for a_id in existing] + [{"id": index} for index in files]
        kept: list[Attachment] = []
        for entry in entries:
            entry_id = int(entry["id"])
            if entry_id in existing:
                kept.append(existing[entry_id])
            elif entry_id in files:
                filename = entry.get("filename") or files[entry_id][0]
                kept.append(
                    self.state.store_attachment(
                        filename,
                        files[entry_id][1],
                        content_type_for(filename),
                        entry.get("description"),
                    )
                )
            else:
                raise RestError(400, 50035, f"Invalid Form Body: unknown attachment {entry_id}")
        return tuple(kept)


def _message_check(route: Route) -> Callable[[Any, FormErrors], None]:
    return lambda payload, errors: check_message(payload, route, errors)
