"""The bot-token REST routes: login, command sync, channels, messages, reactions, DMs, guild and member fetches."""

from __future__ import annotations

import re

from .gateway import Events
from .models import CHANNEL_DM, JSON, Channel, Message
from .rules import DiscordError, Rule, invalid_form, not_found
from .state import World
from .wire import NO_CONTENT, ApiRequest, Endpoint, Reply

COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


class RestApi:
    def __init__(self, world: World, events: Events) -> None:
        self.world = world
        self.events = events

    def endpoints(self) -> list[Endpoint]:
        commands = "/applications/{application_id}/commands"
        guild_commands = "/applications/{application_id}/guilds/{guild_id}/commands"
        message = "/channels/{channel_id}/messages/{message_id}"
        reaction = message + "/reactions/{emoji}"
        return [
            Endpoint("GET", "/users/@me", self.me),
            Endpoint("GET", "/oauth2/applications/@me", self.application),
            Endpoint("GET", "/applications/@me", self.application),
            Endpoint("GET", "/gateway", self.gateway, auth=False),
            Endpoint("GET", "/gateway/bot", self.gateway),
            Endpoint("GET", "/users/{user_id}", self.get_user),
            Endpoint("POST", "/users/@me/channels", self.open_dm),
            Endpoint("GET", commands, self.get_commands),
            Endpoint("PUT", commands, self.put_commands),
            Endpoint("POST", commands, self.post_command),
            Endpoint("GET", guild_commands, self.get_commands),
            Endpoint("PUT", guild_commands, self.put_commands),
            Endpoint("POST", guild_commands, self.post_command),
            Endpoint("GET", "/guilds/{guild_id}", self.get_guild),
            Endpoint("GET", "/guilds/{guild_id}/channels", self.get_guild_channels),
            Endpoint("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member),
            Endpoint("GET", "/channels/{channel_id}", self.get_channel),
            Endpoint("POST", "/channels/{channel_id}/typing", self.typing),
            Endpoint("GET", "/channels/{channel_id}/messages", self.history),
            Endpoint(
                "POST",
                "/channels/{channel_id}/messages",
                self.create_message,
                bucket="message_create",
                major="channel_id",
            ),
            Endpoint("GET", message, self.get_message),
            Endpoint("PATCH", message, self.edit_message, bucket="message_edit", major="channel_id"),
            Endpoint("DELETE", message, self.delete_message, bucket="message_delete", major="channel_id"),
            Endpoint("PUT", reaction + "/@me", self.add_reaction, bucket="reaction", major="channel_id"),
            Endpoint("DELETE", reaction + "/{user_id}", self.remove_reaction, bucket="reaction", major="channel_id"),
        ]

    # -- login

    async def me(self, request: ApiRequest) -> Reply:
        return Reply({**self.world.bot.payload(), "verified": True, "mfa_enabled": False, "locale": "en-US"})

    async def application(self, request: ApiRequest) -> Reply:
        world = self.world
        return Reply(
            {
                "id": str(world.application_id),
                "name": world.bot.username,
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": world.owner.payload(),
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": world.bot.payload(),
                "summary": "",
                "redirect_uris": [],
            }
        )

    async def gateway(self, request: ApiRequest) -> Reply:
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        return Reply({"url": self.world.gateway_url, "shards": 1, "session_start_limit": limit})

    # -- users and DMs

    async def get_user(self, request: ApiRequest) -> Reply:
        return Reply(self.world.get_user(request.id("user_id", "User", 10013)).payload())

    async def open_dm(self, request: ApiRequest) -> Reply:
        try:
            user = self.world.users[int(request.body().get("recipient_id") or 0)]
        except (KeyError, ValueError):
            raise DiscordError(400, 50033, "Invalid Recipient(s)") from None
        return Reply(self.world.dm_channel(user).payload())

    # -- application commands

    def _scope(self, request: ApiRequest) -> int | None:
        if request.params["application_id"] != str(self.world.application_id):
            raise DiscordError(403, 50001, "Missing Access")
        if "guild_id" not in request.params:
            return None
        guild_id = request.id("guild_id", "Guild", 10004)
        if guild_id != self.world.guild.id:
            raise DiscordError(403, 50001, "Missing Access")
        return guild_id

    async def get_commands(self, request: ApiRequest) -> Reply:
        return Reply(self.world.commands.get(self._scope(request), []))

    async def put_commands(self, request: ApiRequest) -> Reply:
        scope = self._scope(request)
        if not isinstance(request.json, list):
            raise invalid_form(Rule.INVALID_COMMAND, [], "BASE_TYPE_ARRAY", "Must be an array.")
        self.world.commands[scope] = [self._stored(scope, command, index) for index, command in enumerate(request.json)]
        return Reply(self.world.commands[scope])

    async def post_command(self, request: ApiRequest) -> Reply:
        scope = self._scope(request)
        stored = self._stored(scope, request.body(), 0)
        others = [
            c for c in self.world.commands.get(scope, []) if (c["name"], c["type"]) != (stored["name"], stored["type"])
        ]
        self.world.commands[scope] = [*others, stored]
        return Reply(stored, status=201)

    def _stored(self, scope: int | None, command: JSON, index: int) -> JSON:
        kind = int(command.get("type") or 1)
        _check_command(command, kind, index)
        earlier = next(
            (c for c in self.world.commands.get(scope, []) if (c["name"], c["type"]) == (command["name"], kind)), None
        )
        stored: JSON = {
            "default_member_permissions": None,
            "dm_permission": True,
            "nsfw": False,
            "description": "",
            "options": [],
            **command,
            "id": earlier["id"] if earlier else str(self.world.ids.next()),
            "application_id": str(self.world.application_id),
            "type": kind,
            "version": str(self.world.ids.next()),
        }
        if scope is not None:
            stored["guild_id"] = str(scope)
        return stored

    # -- guild

    def _guild(self, request: ApiRequest) -> None:
        if request.id("guild_id", "Guild", 10004) != self.world.guild.id:
            raise not_found(10004, "Guild")

    async def get_guild(self, request: ApiRequest) -> Reply:
        self._guild(request)
        return Reply(self.world.guild.payload(with_members=False))

    async def get_guild_channels(self, request: ApiRequest) -> Reply:
        self._guild(request)
        return Reply([channel.payload() for channel in self.world.guild.channels])

    async def get_member(self, request: ApiRequest) -> Reply:
        self._guild(request)
        user = self.world.users.get(request.id("user_id", "Member", 10007))
        if user is None or user not in self.world.guild.members:
            raise not_found(10007, "Member")
        return Reply(self.world.guild.member_payload(user))

    # -- channels and messages

    def _channel(self, request: ApiRequest) -> Channel:
        return self.world.get_channel(request.id("channel_id", "Channel", 10003))

    def _message(self, request: ApiRequest) -> Message:
        channel = self._channel(request)
        return self.world.get_message(channel.id, request.id("message_id", "Message", 10008))

    async def get_channel(self, request: ApiRequest) -> Reply:
        return Reply(self._channel(request).payload())

    async def typing(self, request: ApiRequest) -> Reply:
        self._channel(request)
        return NO_CONTENT

    async def history(self, request: ApiRequest) -> Reply:
        messages = self.world.channel_messages(self._channel(request).id)
        before, after = int(request.query.get("before") or 0), int(request.query.get("after") or 0)
        messages = [m for m in messages if (not before or m.id < before) and m.id > after]
        limit = min(int(request.query.get("limit") or 50), 100)
        newest_first = sorted(messages, key=lambda m: m.id, reverse=True)
        chosen = newest_first[-limit:] if after and not before else newest_first[:limit]
        return Reply([m.payload(self.world.bot.id) for m in chosen])

    async def create_message(self, request: ApiRequest) -> Reply:
        channel = self._channel(request)
        if channel.type == CHANNEL_DM and channel.recipient is not None and not channel.recipient.dms_open:
            # Not a violation: a bot cannot know beforehand, it has to handle this answer.
            raise DiscordError(403, 50007, "Cannot send messages to this user")
        message = self.world.create_message(channel, self.world.bot, request.body(), request.files)
        await self.events.message_created(message)
        return Reply(message.payload(self.world.bot.id))

    async def get_message(self, request: ApiRequest) -> Reply:
        return Reply(self._message(request).payload(self.world.bot.id))

    async def edit_message(self, request: ApiRequest) -> Reply:
        message = self._message(request)
        if message.author is not self.world.bot:
            raise DiscordError(
                403,
                50005,
                "Cannot edit a message authored by another user",
                rule=Rule.NOT_AUTHOR,
                detail=f"message {message.id} is {message.author.username}'s",
            )
        self.world.edit_message(message, request.body(), request.files)
        await self.events.message_updated(message)
        return Reply(message.payload(self.world.bot.id))

    async def delete_message(self, request: ApiRequest) -> Reply:
        message = self._message(request)
        message.deleted = True
        await self.events.message_deleted(message)
        return NO_CONTENT

    async def add_reaction(self, request: ApiRequest) -> Reply:
        message, emoji = self._message(request), request.params["emoji"]
        users = message.reactions.setdefault(emoji, [])
        if self.world.bot.id not in users:
            users.append(self.world.bot.id)
            await self.events.reaction(message, self.world.bot, emoji, added=True)
        return NO_CONTENT

    async def remove_reaction(self, request: ApiRequest) -> Reply:
        message, emoji = self._message(request), request.params["emoji"]
        raw_user = request.params["user_id"]
        user = self.world.bot if raw_user == "@me" else self.world.get_user(request.id("user_id", "User", 10013))
        users = message.reactions.get(emoji, [])
        if user.id in users:
            users.remove(user.id)
            await self.events.reaction(message, user, emoji, added=False)
        return NO_CONTENT


def _check_command(command: JSON, kind: int, index: int) -> None:
    name = str(command.get("name") or "")
    pattern_ok = COMMAND_NAME.match(name) and (kind != 1 or name == name.lower())
    if kind == 1 and not pattern_ok:
        raise invalid_form(
            Rule.INVALID_COMMAND,
            [index, "name"],
            "APPLICATION_COMMAND_INVALID_NAME",
            f"Command name {name!r} is invalid: 1-32 lowercase letters, digits, - or _.",
        )
    if kind == 1 and not 1 <= len(str(command.get("description") or "")) <= 100:
        raise invalid_form(
            Rule.INVALID_COMMAND, [index, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."
        )
    if len(command.get("options") or []) > 25:
        raise invalid_form(
            Rule.INVALID_COMMAND, [index, "options"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length."
        )
