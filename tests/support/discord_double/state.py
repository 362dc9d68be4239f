"""The double's world: one guild with its channels and members, DM channels, messages, interactions, commands.

It outlives every bot connection, so a bot that restarts finds its old messages where it left them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from typing import Any

from .clock import Clock, Snowflakes
from .models import (
    CHANNEL_DM,
    COMPONENTS_V2,
    EPHEMERAL,
    JSON,
    LOADING,
    Attachment,
    Call,
    Channel,
    Guild,
    Interaction,
    Message,
    UploadedFile,
    User,
)
from .rules import DiscordError, Limits, Violation, check_files, check_message, not_found

SUPPRESS_EMBEDS = 1 << 2
SUPPRESS_NOTIFICATIONS = 1 << 12
SETTABLE_FLAGS = SUPPRESS_EMBEDS | SUPPRESS_NOTIFICATIONS | COMPONENTS_V2


class World:
    def __init__(self, clock: Clock, limits: Limits, *, token: str) -> None:
        self.clock = clock
        self.limits = limits
        self.token = token
        self.ids = Snowflakes(clock)
        self.base_url = ""
        """``http://127.0.0.1:PORT``, known once the server listens."""
        self.users: dict[int, User] = {}
        self.channels: dict[int, Channel] = {}
        self.messages: dict[int, Message] = {}
        self.attachments: dict[int, Attachment] = {}
        """Every uploaded file by attachment id, served at its ``url`` as Discord's CDN would."""
        self.interactions: dict[int, Interaction] = {}
        self.interactions_by_token: dict[str, Interaction] = {}
        self.commands: dict[int | None, list[JSON]] = {}
        """Synced application commands: None for the global ones, else per guild id."""
        self.calls: list[Call] = []
        self.violations: list[Violation] = []

        self.bot = self._new_user("dreamloom", bot=True)
        self.application_id = self.bot.id
        self.owner = self._new_user("owner")
        self.guild = Guild(id=self.ids.next(), name="dreamloom test", owner_id=self.owner.id, joined_at=clock.wall())
        self.guild.members += [self.owner, self.bot]
        self.channel = self.add_channel("imagine")
        self.user = self.add_user("alice")

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/gw"

    # -- people and places

    def _new_user(self, username: str, *, bot: bool = False) -> User:
        user = User(id=self.ids.next(), username=username, bot=bot)
        self.users[user.id] = user
        return user

    def add_user(self, username: str) -> User:
        """A new member of the guild."""
        user = self._new_user(username)
        self.guild.members.append(user)
        return user

    def add_channel(self, name: str) -> Channel:
        channel = Channel(id=self.ids.next(), name=name, guild_id=self.guild.id, position=len(self.guild.channels))
        self.guild.channels.append(channel)
        self.channels[channel.id] = channel
        return channel

    def dm_channel(self, user: User) -> Channel:
        for channel in self.channels.values():
            if channel.type == CHANNEL_DM and channel.recipient is user:
                return channel
        channel = Channel(id=self.ids.next(), name="", type=CHANNEL_DM, recipient=user)
        self.channels[channel.id] = channel
        return channel

    def get_user(self, user_id: int) -> User:
        try:
            return self.users[user_id]
        except KeyError:
            raise not_found(10013, "User") from None

    def get_channel(self, channel_id: int) -> Channel:
        try:
            return self.channels[channel_id]
        except KeyError:
            raise not_found(10003, "Channel") from None

    def get_message(self, channel_id: int, message_id: int) -> Message:
        message = self.messages.get(message_id)
        if message is None or message.deleted or message.channel_id != channel_id or message.ephemeral:
            raise not_found(10008, "Message")
        return message

    def channel_messages(self, channel_id: int, *, include_ephemeral: bool = False) -> list[Message]:
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id and not m.deleted and (include_ephemeral or not m.ephemeral)
        ]

    # -- interactions

    def new_interaction(
        self, kind: int, user: User, channel: Channel, data: JSON, message: Message | None = None
    ) -> Interaction:
        interaction = Interaction(
            id=self.ids.next(),
            token="aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48),
            type=kind,
            user=user,
            channel=channel,
            data=data,
            created_at=self.clock.now(),
            message=message,
        )
        self.interactions[interaction.id] = interaction
        self.interactions_by_token[interaction.token] = interaction
        return interaction

    # -- messages

    def create_message(
        self,
        channel: Channel,
        author: User,
        payload: JSON,
        files: Sequence[UploadedFile],
        *,
        where: Sequence[str] = (),
        flags: int = 0,
        interaction: Interaction | None = None,
        allow_empty: bool = False,
    ) -> Message:
        check_files(files, self.limits)
        flags |= int(payload.get("flags") or 0) & SETTABLE_FLAGS
        content = str(payload.get("content") or "")
        embeds = list(payload.get("embeds") or [])
        components = list(payload.get("components") or [])
        attachments = self._attachments(channel, payload, files, existing=[])
        if not allow_empty:
            check_message(
                content, embeds, components, flags, self.limits, has_attachments=bool(attachments), where=where
            )
        message = Message(
            id=self.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            created_at=self.clock.wall(),
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            flags=flags,
        )
        if interaction is not None:
            message.webhook_id = self.application_id
            message.interaction_id = interaction.id
            message.interaction_type = interaction.type
            message.interaction_user = interaction.user
            message.type = 20 if interaction.type == 2 else 0
        self.messages[message.id] = message
        return message

    def edit_message(
        self, message: Message, payload: JSON, files: Sequence[UploadedFile], *, where: Sequence[str] = ()
    ) -> None:
        """Apply an edit as Discord does: fields left out stay, ``attachments`` lists those to keep."""
        check_files(files, self.limits)
        content = str(payload.get("content") or "") if "content" in payload else message.content
        embeds = list(payload.get("embeds") or []) if "embeds" in payload else message.embeds
        components = list(payload.get("components") or []) if "components" in payload else message.components
        flags = message.flags & ~LOADING
        if "flags" in payload:
            flags = (flags & EPHEMERAL) | (int(payload.get("flags") or 0) & SETTABLE_FLAGS)
        attachments = self._attachments(self.get_channel(message.channel_id), payload, files, message.attachments)
        check_message(content, embeds, components, flags, self.limits, has_attachments=bool(attachments), where=where)
        message.content, message.embeds, message.components = content, embeds, components
        message.attachments, message.flags = attachments, flags
        message.edited_at = self.clock.wall()
        message.edits += 1

    def _attachments(
        self, channel: Channel, payload: JSON, files: Sequence[UploadedFile], existing: list[Attachment]
    ) -> list[Attachment]:
        uploads = {_file_index(file.field, position): file for position, file in enumerate(files)}
        metadata: list[Any] | None = payload.get("attachments")
        if metadata is None:
            return [*existing, *(self._attachment(channel, file, {}) for file in uploads.values())]
        kept = {attachment.id: attachment for attachment in existing}
        result: list[Attachment] = []
        for meta in metadata:
            ref = int(meta["id"])
            if ref in uploads:
                result.append(self._attachment(channel, uploads.pop(ref), meta))
            elif ref in kept:
                result.append(kept[ref])
        result += [self._attachment(channel, file, {}) for file in uploads.values()]
        return result

    def upload(self, channel: Channel, file: UploadedFile) -> Attachment:
        """A file a member attaches to a slash command option."""
        return self._attachment(channel, file, {})

    def _attachment(self, channel: Channel, file: UploadedFile, meta: JSON) -> Attachment:
        attachment_id = self.ids.next()
        filename = str(meta.get("filename") or file.filename)
        attachment = Attachment(
            id=attachment_id,
            filename=filename,
            data=file.data,
            url=f"{self.base_url}/attachments/{channel.id}/{attachment_id}/{filename}",
            content_type=file.content_type,
            description=meta.get("description"),
        )
        self.attachments[attachment.id] = attachment
        return attachment

    def violate(self, error: DiscordError, method: str, path: str) -> None:
        assert error.rule is not None
        self.violations.append(Violation(error.rule, error.detail, method, path, error.status, error.code))


def _file_index(field: str, position: int) -> int:
    match = re.fullmatch(r"files\[(\d+)\]", field)
    return int(match.group(1)) if match else position
