"""The fake gateway: one websocket endpoint speaking the part of Discord's protocol a bot needs.

HELLO on connect; IDENTIFY (with the right token) → READY + GUILD_CREATE; HEARTBEAT → ACK;
RESUME → INVALID_SESSION (so the client identifies afresh: the fake keeps no resumable sessions).
A wrong token closes the socket with 4004, as Discord does. Only the newest identified connection
receives dispatches; when it drops (bot stopped or SIGKILLed) a new one is accepted at any time.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from tests.discord.world import World

HEARTBEAT, IDENTIFY, RESUME, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 1, 2, 6, 9, 10, 11
HEARTBEAT_INTERVAL_MS = 41250
AUTHENTICATION_FAILED = 4004


class GatewaySession:
    """One identified websocket connection; sends are serialised and sequence-numbered."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.session_id = uuid.uuid4().hex
        self._sequence = 0
        self._lock = asyncio.Lock()

    async def send(self, frame: dict[str, Any]) -> None:
        async with self._lock:
            await self.ws.send_str(json.dumps(frame))

    async def dispatch(self, event: str, data: Any) -> None:
        async with self._lock:
            self._sequence += 1
            frame = {"op": 0, "t": event, "s": self._sequence, "d": data}
            await self.ws.send_str(json.dumps(frame))


class Gateway:
    """Accepts bot connections at ``/gateway`` and sends events to the live one."""

    def __init__(
        self, world: World, token: str, url: Callable[[], str], changed: Callable[[], None]
    ):
        self._world = world
        self._token = token
        self._url = url
        self._changed = changed
        self.current: GatewaySession | None = None
        self.identify_count = 0
        self._sockets: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session = GatewaySession(ws)
        try:
            await session.send({"op": HELLO, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(message.data)
                await self._on_frame(session, frame)
        finally:
            self._sockets.discard(ws)
            if self.current is session:
                self.current = None
                self._changed()
        return ws

    async def _on_frame(self, session: GatewaySession, frame: dict[str, Any]) -> None:
        op = frame.get("op")
        if op == HEARTBEAT:
            await session.send({"op": HEARTBEAT_ACK})
        elif op == RESUME:
            await session.send({"op": INVALID_SESSION, "d": False})
        elif op == IDENTIFY:
            if frame["d"].get("token") != self._token:
                await session.ws.close(
                    code=AUTHENTICATION_FAILED, message=b"Authentication failed."
                )
                return
            await session.dispatch("READY", self._ready_payload(session))
            await session.dispatch("GUILD_CREATE", self._world.guild_payload())
            self.identify_count += 1
            self.current = session
            self._changed()

    def _ready_payload(self, session: GatewaySession) -> dict[str, Any]:
        return {
            "v": 10,
            "user": self._world.bot.payload(),
            "session_id": session.session_id,
            "resume_gateway_url": self._url(),
            "guilds": [{"id": str(self._world.guild_id), "unavailable": True}],
            "application": {"id": str(self._world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
        }

    async def dispatch(self, event: str, data: Any) -> bool:
        """Send an event to the live connection; False when no bot is connected."""
        session = self.current
        if session is None:
            return False
        try:
            await session.dispatch(event, data)
        except ConnectionResetError:
            return False
        return True

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"fake Discord shutting down")
