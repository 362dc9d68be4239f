"""Discord's gateway for discord.py: HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME, dispatches.

Frames are plain JSON text (discord.py asks for zlib-stream but reads text frames as they come).
Sessions outlive their socket: a dropped connection can RESUME and receives what it missed; a bot that
closes cleanly (code 1000/1001) ends its session, and the next bot process IDENTIFYs afresh.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .models import CHANNEL_DM, JSON, Channel, Message, User, emoji_payload
from .state import World

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_MS = 41_250

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_DIRECT_MESSAGE_REACTIONS = 1 << 13
INTENT_MESSAGE_CONTENT = 1 << 15


@dataclass
class Session:
    id: str
    intents: int
    ws: web.WebSocketResponse | None
    seq: int = 0
    sent: list[JSON] = field(default_factory=list)
    """Every dispatch in order, so a RESUME can replay what a dropped connection missed."""
    resumable: bool = True
    resumes: int = 0
    heartbeats: int = 0

    @property
    def live(self) -> bool:
        return self.ws is not None and not self.ws.closed


class Gateway:
    def __init__(self, world: World) -> None:
        self.world = world
        self.sessions: list[Session] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._dropped: set[web.WebSocketResponse] = set()

    @property
    def live_sessions(self) -> list[Session]:
        return [session for session in self.sessions if session.live]

    @property
    def identifies(self) -> int:
        return len(self.sessions)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        session: Session | None = None
        try:
            await ws.send_str(
                json.dumps({"op": 10, "s": None, "t": None, "d": {"heartbeat_interval": HEARTBEAT_INTERVAL_MS}})
            )
            async for message in ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                frame: JSON = json.loads(message.data)
                op, data = frame.get("op"), frame.get("d")
                if op == 1:
                    if session is not None:
                        session.heartbeats += 1
                    await ws.send_str(json.dumps({"op": 11, "s": None, "t": None, "d": None}))
                elif op == 2:
                    session = await self._identify(ws, data or {})
                elif op == 6:
                    session = await self._resume(ws, data or {})
                else:
                    log.debug("gateway op %s ignored: %s", op, data)
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
                # The client's close code, or for a drop ours (aiohttp reports the code of the client's reply).
                session.resumable = ws in self._dropped or ws.close_code not in (1000, 1001)
            self._dropped.discard(ws)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: JSON) -> Session | None:
        if data.get("token") not in (self.world.token, f"Bot {self.world.token}"):
            await ws.close(code=4004, message=b"Authentication failed.")
            return None
        session = Session(id=secrets.token_hex(16), intents=int(data.get("intents") or 0), ws=None)
        self.sessions.append(session)
        world = self.world
        ready = {
            "v": 10,
            "user": {**world.bot.payload(), "verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(world.guild.id), "unavailable": True}],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": world.gateway_url,
            "application": {"id": str(world.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
        }
        if "shard" in data:
            ready["shard"] = data["shard"]
        await self._send(session, "READY", ready, ws)
        await self._send(session, "GUILD_CREATE", world.guild.payload(), ws)
        session.ws = ws
        return session

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> Session | None:
        session = next((s for s in self.sessions if s.id == data.get("session_id")), None)
        token_ok = data.get("token") in (self.world.token, f"Bot {self.world.token}")
        if session is None or not session.resumable or session.live or not token_ok:
            await ws.send_str(json.dumps({"op": 9, "s": None, "t": None, "d": False}))
            return None
        last_seen = int(data.get("seq") or 0)
        for frame in session.sent:
            if frame["s"] > last_seen:
                await ws.send_str(json.dumps(frame))
        session.resumes += 1
        await self._send(session, "RESUMED", {}, ws)
        session.ws = ws
        return session

    async def _send(self, session: Session, event: str, data: JSON, ws: web.WebSocketResponse | None = None) -> None:
        session.seq += 1
        frame = {"op": 0, "s": session.seq, "t": event, "d": data}
        session.sent.append(frame)
        socket = ws or session.ws
        if socket is None or socket.closed:
            return  # kept for a RESUME
        try:
            await socket.send_str(json.dumps(frame))
        except ConnectionResetError:
            log.debug("gateway session %s dropped while sending %s", session.id, event)

    async def dispatch(self, event: str, data: JSON, *, intent: int | None = None, content_intent: bool = False) -> int:
        """Send an event to every session that may hear it (live, or resumable and so buffered); returns how many.

        ``content_intent``: without MESSAGE_CONTENT, the message's content, embeds, attachments and components
        arrive empty, as Discord sends them to a bot without that privileged intent.
        """
        delivered = 0
        for session in self.sessions:
            if not (session.live or session.resumable):
                continue
            if intent is not None and not session.intents & intent:
                continue
            payload = data
            if content_intent and not session.intents & INTENT_MESSAGE_CONTENT:
                payload = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
            await self._send(session, event, payload)
            delivered += 1
        return delivered

    async def reconnect(self) -> None:
        """Ask every live connection to reconnect (op 7); discord.py RESUMEs."""
        for session in self.live_sessions:
            assert session.ws is not None
            await session.ws.send_str(json.dumps({"op": 7, "s": None, "t": None, "d": None}))

    async def drop(self) -> None:
        """Cut every connection as a network fault would (close code 4000: the client RESUMEs)."""
        for ws in list(self._sockets):
            self._dropped.add(ws)
            await ws.close(code=4000, message=b"dropped by the test")

    async def close(self) -> None:
        for session in self.sessions:
            session.resumable = False
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"double stopping")
        await asyncio.sleep(0)


class Events:
    """Gateway events that follow from what happens in the world, with the intents Discord requires."""

    def __init__(self, world: World, gateway: Gateway) -> None:
        self.world = world
        self.gateway = gateway

    def _message_intent(self, channel_id: int) -> int:
        channel = self.world.channels.get(channel_id)
        is_dm = channel is not None and channel.type == CHANNEL_DM
        return INTENT_DIRECT_MESSAGES if is_dm else INTENT_GUILD_MESSAGES

    def _message_payload(self, message: Message) -> JSON:
        data = message.payload(self.world.bot.id)
        if message.guild_id is not None:
            data["member"] = {k: v for k, v in self.world.guild.member_payload(message.author).items() if k != "user"}
        return data

    def _needs_content_intent(self, message: Message) -> bool:
        channel = self.world.channels.get(message.channel_id)
        in_dm = channel is not None and channel.type == CHANNEL_DM
        mentioned = f"<@{self.world.bot.id}>" in message.content
        return not (message.author is self.world.bot or in_dm or mentioned)

    async def message_created(self, message: Message) -> None:
        if message.ephemeral:
            return
        await self.gateway.dispatch(
            "MESSAGE_CREATE",
            self._message_payload(message),
            intent=self._message_intent(message.channel_id),
            content_intent=self._needs_content_intent(message),
        )

    async def message_updated(self, message: Message) -> None:
        if message.ephemeral:
            return
        await self.gateway.dispatch(
            "MESSAGE_UPDATE",
            self._message_payload(message),
            intent=self._message_intent(message.channel_id),
            content_intent=self._needs_content_intent(message),
        )

    async def message_deleted(self, message: Message) -> None:
        if message.ephemeral:
            return
        data: JSON = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
        await self.gateway.dispatch("MESSAGE_DELETE", data, intent=self._message_intent(message.channel_id))

    async def reaction(self, message: Message, user: User, emoji: str, *, added: bool) -> None:
        data: dict[str, Any] = {
            "user_id": str(user.id),
            "channel_id": str(message.channel_id),
            "message_id": str(message.id),
            "emoji": emoji_payload(emoji),
            "burst": False,
            "type": 0,
        }
        if message.guild_id is not None:
            data["guild_id"] = str(message.guild_id)
            if added:
                data["member"] = self.world.guild.member_payload(user)
        if added:
            data |= {"message_author_id": str(message.author.id), "burst_colors": []}
        channel = self.world.channels.get(message.channel_id)
        in_dm = channel is not None and channel.type == CHANNEL_DM
        intent = INTENT_DIRECT_MESSAGE_REACTIONS if in_dm else INTENT_GUILD_MESSAGE_REACTIONS
        event = "MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE"
        await self.gateway.dispatch(event, data, intent=intent)

    async def channel_created(self, channel: Channel) -> None:
        await self.gateway.dispatch("CHANNEL_CREATE", channel.payload(), intent=INTENT_GUILDS)
