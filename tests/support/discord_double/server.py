"""``DiscordDouble``: Discord's REST API and gateway on 127.0.0.1, for the real discord.py client.

    async with DiscordDouble() as double, discord_py_pointed_at(double.base_url):
        async with double.run_bot(bot):
            interaction = await double.slash("imagine", {"prompt": "a lighthouse"})
            await double.wait_for(lambda: interaction.original and not interaction.original.loading)
        double.assert_no_violations()

The test plays the members (``slash``, ``click``, ``select``, ``submit_modal``, ``react``, ``say``) and reads what
the bot did (``messages``, ``dms``, ``ephemeral_replies``, the ``Interaction`` records, ``calls``); every broken rule
is in ``violations``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Self, TypeVar

import discord
from aiohttp import web

from .clock import Clock
from .gateway import Events, Gateway
from .interactions import (
    APPLICATION_COMMAND,
    MESSAGE_COMPONENT,
    MODAL_SUBMIT,
    InteractionApi,
    command_data,
    component_data,
    interaction_payload,
    modal_submit_data,
)
from .models import JSON, Call, Channel, Interaction, Message, User
from .rest import RestApi
from .rules import MIB, Limits, Rule, Violation
from .state import World
from .wire import Router, respond

T = TypeVar("T")

DEFAULT_TOKEN = "MTIzNDU2Nzg5.double.dreamloom-test-token"


class DiscordDouble:
    def __init__(self, *, token: str = DEFAULT_TOKEN, limits: Limits | None = None, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.limits = limits or Limits()
        self.world = World(self.clock, self.limits, token=token)
        self.gateway = Gateway(self.world)
        self.events = Events(self.world, self.gateway)
        self._router = Router(self.world, self.limits.rate_limits)
        self._runner: web.AppRunner | None = None

    # -- lifecycle

    async def start(self) -> Self:
        app = web.Application(client_max_size=10 * self.limits.attachment_size_limit + MIB)
        app.router.add_get("/gw", self.gateway.handle)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._cdn)
        self._router.mount(app, [*RestApi(self.world, self.events).endpoints(), *self._interaction_api().endpoints()])
        app.router.add_route("*", "/{tail:.*}", self._unknown_route)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        port = self._runner.addresses[0][1]
        self.world.base_url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self.gateway.close()
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _interaction_api(self) -> InteractionApi:
        return InteractionApi(self.world, self.events)

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        attachment = self.world.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None:
            return respond(404, {"message": "404: Not Found", "code": 0})
        content_type = attachment.content_type or "application/octet-stream"
        return web.Response(body=attachment.data, headers={"Content-Type": content_type})

    async def _unknown_route(self, request: web.Request) -> web.StreamResponse:
        return await self._router.serve(request, None)

    # -- where it listens, and who is there

    @property
    def token(self) -> str:
        return self.world.token

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``; the REST API is under ``/api/v10``, the gateway at ``/gw``."""
        return self.world.base_url

    @property
    def api_url(self) -> str:
        return self.world.api_url

    @property
    def gateway_url(self) -> str:
        return self.world.gateway_url

    def bot_env(self) -> dict[str, str]:
        """What a bot process needs to find the double (see ``discordpy.point_discord_py_from_env``)."""
        from .discordpy import API_URL_ENV, GATEWAY_URL_ENV, TOKEN_ENV

        return {API_URL_ENV: self.api_url, GATEWAY_URL_ENV: self.gateway_url, TOKEN_ENV: self.token}

    @property
    def application_id(self) -> int:
        return self.world.application_id

    @property
    def bot_user(self) -> User:
        return self.world.bot

    @property
    def channel(self) -> Channel:
        """The guild's first text channel, ``#imagine``: where members act unless a test says otherwise."""
        return self.world.channel

    @property
    def user(self) -> User:
        """``alice``, the member who acts unless a test says otherwise."""
        return self.world.user

    def add_user(self, username: str) -> User:
        return self.world.add_user(username)

    async def add_channel(self, name: str) -> Channel:
        channel = self.world.add_channel(name)
        await self.events.channel_created(channel)
        return channel

    def dm_channel(self, user: User) -> Channel:
        return self.world.dm_channel(user)

    # -- bots

    @property
    def connected(self) -> int:
        """How many gateway connections are live and identified."""
        return len(self.gateway.live_sessions)

    async def wait_until_connected(self, *, timeout: float = 10.0) -> None:
        await self.wait_for(lambda: self.connected > 0, timeout=timeout, what="a bot connected to the gateway")

    @asynccontextmanager
    async def run_bot(self, bot: discord.Client, *, ready: bool = False, timeout: float = 10.0) -> AsyncIterator[None]:
        """Start ``bot`` (login, setup_hook, gateway) and close it on exit, waiting until its connection is gone.

        Inside, the bot has handled READY and GUILD_CREATE (its guild cache is filled); ``ready=True``
        also waits for discord.py's ``on_ready``, which comes ``guild_ready_timeout`` (2 s by default) later.
        """
        before = self.gateway.identifies
        task = asyncio.create_task(bot.start(self.token), name="discord-double-bot")

        def up() -> bool:
            connected = any(session.live for session in self.gateway.sessions[before:])
            guild = bot.get_guild(self.world.guild.id)
            return task.done() or (connected and guild is not None and not guild.unavailable)

        try:
            await self.wait_for(up, timeout=timeout, what="the bot to log in and connect")
            if task.done():
                task.result()
                raise RuntimeError("the bot stopped before it connected to the gateway")
            if ready:
                await asyncio.wait_for(bot.wait_until_ready(), timeout)
            yield
        finally:
            await bot.close()
            await asyncio.wait_for(task, timeout)
            await self.wait_for(
                lambda: not any(session.live for session in self.gateway.sessions[before:]),
                timeout=timeout,
                what="the bot's gateway connection to close",
            )

    async def request_reconnect(self) -> None:
        """Send RECONNECT (op 7): the bot reconnects and RESUMEs its session."""
        await self.gateway.reconnect()

    async def drop_connections(self) -> None:
        """Cut the gateway connections as a network fault would; the bot RESUMEs and gets what it missed."""
        await self.gateway.drop()

    # -- what members do

    async def slash(
        self,
        name: str,
        options: Mapping[str, object] | None = None,
        *,
        user: User | None = None,
        channel: Channel | None = None,
    ) -> Interaction:
        """A member runs ``/name`` (``"group sub"`` for a subcommand) with ``options`` by option name.

        Values: str, int, float, bool, a ``User``, a ``Channel``, or an ``UploadedFile`` for an attachment option.
        The command must have been synced; values are checked against its schema as Discord's client does.
        """
        channel = channel or self.world.channel
        data = command_data(self.world, channel, name, options or {})
        return await self._interact(APPLICATION_COMMAND, data, user, channel, None)

    async def click(self, message: Message | int, custom_id: str, *, user: User | None = None) -> Interaction:
        """A member clicks the button ``custom_id`` on ``message``."""
        target = self._live_message(message)
        data = component_data(target, custom_id, None)
        return await self._interact(MESSAGE_COMPONENT, data, user, self.world.get_channel(target.channel_id), target)

    async def select(
        self, message: Message | int, custom_id: str, values: Sequence[str], *, user: User | None = None
    ) -> Interaction:
        """A member picks ``values`` in the select menu ``custom_id`` on ``message``."""
        target = self._live_message(message)
        data = component_data(target, custom_id, values)
        return await self._interact(MESSAGE_COMPONENT, data, user, self.world.get_channel(target.channel_id), target)

    async def submit_modal(
        self,
        opened_by: Interaction,
        values: Mapping[str, str | Sequence[str]] | None = None,
        *,
        user: User | None = None,
    ) -> Interaction:
        """A member fills in and submits the modal the bot answered ``opened_by`` with (values by custom_id)."""
        if opened_by.modal is None:
            raise ValueError(f"interaction {opened_by.id} was not answered with a modal")
        data = modal_submit_data(opened_by.modal, values or {})
        return await self._interact(MODAL_SUBMIT, data, user or opened_by.user, opened_by.channel, opened_by.message)

    async def react(self, message: Message | int, emoji: str, *, user: User | None = None) -> None:
        """A member adds a reaction (unicode emoji, or ``name:id`` for a custom one): MESSAGE_REACTION_ADD."""
        target, who = self._live_message(message), user or self.world.user
        users = target.reactions.setdefault(emoji, [])
        if who.id not in users:
            users.append(who.id)
            await self.events.reaction(target, who, emoji, added=True)

    async def unreact(self, message: Message | int, emoji: str, *, user: User | None = None) -> None:
        """A member takes a reaction back: MESSAGE_REACTION_REMOVE."""
        target, who = self._live_message(message), user or self.world.user
        if who.id in target.reactions.get(emoji, []):
            target.reactions[emoji].remove(who.id)
            await self.events.reaction(target, who, emoji, added=False)

    async def say(self, content: str, *, channel: Channel | None = None, user: User | None = None) -> Message:
        """A member posts a message: MESSAGE_CREATE (content only with the MESSAGE_CONTENT intent, as on Discord)."""
        message = self.world.create_message(
            channel or self.world.channel, user or self.world.user, {"content": content}, []
        )
        await self.events.message_created(message)
        return message

    async def _interact(
        self, kind: int, data: JSON, user: User | None, channel: Channel, message: Message | None
    ) -> Interaction:
        await self.wait_until_connected()
        interaction = self.world.new_interaction(kind, user or self.world.user, channel, data, message)
        await self.gateway.dispatch("INTERACTION_CREATE", interaction_payload(self.world, interaction))
        return interaction

    def _live_message(self, message: Message | int) -> Message:
        found = self.world.messages.get(message if isinstance(message, int) else message.id)
        if found is None or found.deleted:
            raise LookupError(
                f"message {message if isinstance(message, int) else message.id} does not exist (any more)"
            )
        return found

    # -- what the bot did

    @property
    def calls(self) -> list[Call]:
        """Every HTTP request, in order."""
        return self.world.calls

    def calls_to(self, method: str, route: str) -> list[Call]:
        """The calls to a route template, e.g. ``calls_to("PATCH", "/channels/{channel_id}/messages/{message_id}")``."""
        return [call for call in self.world.calls if call.method == method and call.route == route]

    def messages(self, channel: Channel | None = None, *, include_ephemeral: bool = False) -> list[Message]:
        """A channel's messages (``#imagine`` by default), oldest first, without deleted ones."""
        return self.world.channel_messages((channel or self.world.channel).id, include_ephemeral=include_ephemeral)

    def message(self, message_id: int) -> Message:
        return self.world.messages[message_id]

    def dms(self, user: User) -> list[Message]:
        """Messages in the bot's DM channel with ``user``."""
        return self.world.channel_messages(self.world.dm_channel(user).id)

    def ephemeral_replies(self, user: User | None = None) -> list[Message]:
        """Ephemeral responses and follow-ups (only their member sees them), to ``user`` or anyone."""
        return [
            m
            for m in self.world.messages.values()
            if m.ephemeral and not m.deleted and (user is None or m.interaction_user is user)
        ]

    @property
    def interactions(self) -> list[Interaction]:
        return list(self.world.interactions.values())

    def unanswered(self) -> list[Interaction]:
        """Interactions with no initial response yet (past 3 s a member sees "This interaction failed")."""
        return [interaction for interaction in self.world.interactions.values() if not interaction.acknowledged]

    def commands(self, *, guild: bool = False) -> list[JSON]:
        """The synced commands: global ones, or with ``guild=True`` the guild's."""
        return self.world.commands.get(self.world.guild.id if guild else None, [])

    @property
    def violations(self) -> list[Violation]:
        return self.world.violations

    def take_violations(self) -> list[Violation]:
        """The violations so far, cleared (for a test that provokes them on purpose)."""
        taken = list(self.world.violations)
        self.world.violations.clear()
        return taken

    def rules_broken(self) -> list[Rule]:
        return [violation.rule for violation in self.world.violations]

    def assert_no_violations(self) -> None:
        if self.world.violations:
            listed = "\n  ".join(str(violation) for violation in self.world.violations)
            raise AssertionError(f"the bot broke Discord's rules:\n  {listed}")

    async def wait_for(
        self, predicate: Callable[[], T | None], *, timeout: float = 10.0, what: str = "", interval: float = 0.01
    ) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that; TimeoutError after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if loop.time() >= deadline:
                raise TimeoutError(self.describe(f"waited {timeout} s for {what or predicate}"))
            await asyncio.sleep(interval)

    def describe(self, headline: str) -> str:
        """A headline with the last calls, the violations and the connections, for a failure message."""
        calls = "\n  ".join(str(call) for call in self.world.calls[-12:]) or "none"
        broken = "\n  ".join(str(v) for v in self.world.violations) or "none"
        return (
            f"{headline}\nlast calls:\n  {calls}\nviolations:\n  {broken}\nlive gateway connections: {self.connected}"
        )

    def __repr__(self) -> str:
        return f"<DiscordDouble {self.base_url or '(stopped)'} connected={self.connected}>"
