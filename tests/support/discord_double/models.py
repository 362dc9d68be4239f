"""What the double remembers: users, channels, messages, interactions and every call, with their wire payloads.

Payload methods return what Discord's API v10 sends, as far as discord.py 2.7 reads it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

ALL_PERMISSIONS = (1 << 50) - 1
EPHEMERAL = 1 << 6
LOADING = 1 << 7
COMPONENTS_V2 = 1 << 15

CHANNEL_TEXT = 0
CHANNEL_DM = 1


def iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat()


@dataclass
class User:
    id: int
    username: str
    bot: bool = False
    dms_open: bool = True
    """False plays a member who blocks DMs from server members: sends to their DM channel fail with 50007."""

    def payload(self) -> JSON:
        return {
            "id": str(self.id),
            "username": self.username,
            "global_name": None if self.bot else self.username.title(),
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
            "flags": 0,
        }


@dataclass
class Channel:
    id: int
    name: str
    type: int = CHANNEL_TEXT
    guild_id: int | None = None
    position: int = 0
    recipient: User | None = None
    """The other party of a DM channel."""

    def payload(self) -> JSON:
        if self.type == CHANNEL_DM:
            assert self.recipient is not None
            return {"id": str(self.id), "type": CHANNEL_DM, "recipients": [self.recipient.payload()], "flags": 0}
        return {
            "id": str(self.id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "guild_id": str(self.guild_id),
            "parent_id": None,
            "topic": None,
            "nsfw": False,
            "permission_overwrites": [],
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    joined_at: float
    members: list[User] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)

    def member_payload(self, user: User, *, permissions: bool = False) -> JSON:
        member: JSON = {
            "user": user.payload(),
            "roles": [],
            "joined_at": iso(self.joined_at),
            "nick": None,
            "deaf": False,
            "mute": False,
            "pending": False,
            "flags": 0,
        }
        if permissions:
            member["permissions"] = str(ALL_PERMISSIONS)
        return member

    def payload(self, *, with_members: bool = True) -> JSON:
        everyone = {"id": str(self.id), "name": "@everyone", "permissions": str(ALL_PERMISSIONS), "position": 0}
        data: JSON = {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner_id),
            "roles": [{**everyone, "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "channels": [channel.payload() for channel in self.channels],
            "emojis": [],
            "stickers": [],
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "afk_timeout": 300,
            "system_channel_id": None,
            "unavailable": False,
        }
        if with_members:
            data |= {
                "joined_at": iso(self.joined_at),
                "large": False,
                "member_count": len(self.members),
                "members": [self.member_payload(user) for user in self.members],
                "threads": [],
                "presences": [],
                "voice_states": [],
                "stage_instances": [],
                "guild_scheduled_events": [],
                "soundboard_sounds": [],
            }
        return data


@dataclass(frozen=True)
class UploadedFile:
    """A file as it crossed the wire (``field`` is the multipart name, e.g. ``files[0]``), or one a test uploads."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"
    field: str = ""

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes
    url: str
    content_type: str | None = None
    description: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def payload(self) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.url,
        }
        if self.content_type:
            data["content_type"] = self.content_type
        if self.description:
            data["description"] = self.description
        return data


def walk_components(components: list[JSON]) -> Iterator[JSON]:
    """Every component, depth first, through action rows, sections, containers and labels."""
    for component in components:
        yield component
        yield from walk_components(component.get("components") or [])
        for key in ("accessory", "component"):
            if isinstance(component.get(key), dict):
                yield from walk_components([component[key]])


@dataclass
class Message:
    id: int
    channel_id: int
    guild_id: int | None
    author: User
    created_at: float
    content: str = ""
    embeds: list[JSON] = field(default_factory=list)
    components: list[JSON] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    edited_at: float | None = None
    webhook_id: int | None = None
    interaction_id: int | None = None
    interaction_type: int | None = None
    interaction_user: User | None = None
    reactions: dict[str, list[int]] = field(default_factory=dict)
    """Emoji (unicode, or ``name:id`` for a custom one) -> ids of the users who reacted, in order."""
    deleted: bool = False
    edits: int = 0

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        """A deferred response still showing "Bot is thinking...": no follow-up or edit has filled it yet."""
        return bool(self.flags & LOADING)

    def walk_components(self) -> list[JSON]:
        return list(walk_components(self.components))

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def buttons(self) -> list[JSON]:
        return [c for c in walk_components(self.components) if c.get("type") == 2]

    def component(self, custom_id: str) -> JSON | None:
        return next((c for c in walk_components(self.components) if c.get("custom_id") == custom_id), None)

    def payload(self, bot_user_id: int) -> JSON:
        data: JSON = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.payload(),
            "content": self.content,
            "timestamp": iso(self.created_at),
            "edited_timestamp": None if self.edited_at is None else iso(self.edited_at),
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [attachment.payload() for attachment in self.attachments],
            "embeds": self.embeds,
            "components": self.components,
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
        }
        if self.guild_id is not None:
            data["guild_id"] = str(self.guild_id)
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
            data["application_id"] = str(self.webhook_id)
        if self.interaction_id is not None and self.interaction_user is not None:
            data["interaction_metadata"] = {
                "id": str(self.interaction_id),
                "type": self.interaction_type,
                "user": self.interaction_user.payload(),
                "authorizing_integration_owners": {"0": str(self.guild_id)} if self.guild_id else {"1": "0"},
            }
        if self.reactions:
            data["reactions"] = [
                {
                    "emoji": emoji_payload(emoji),
                    "count": len(users),
                    "count_details": {"normal": len(users), "burst": 0},
                    "me": bot_user_id in users,
                    "me_burst": False,
                    "burst_colors": [],
                }
                for emoji, users in self.reactions.items()
                if users
            ]
        return data


def emoji_payload(emoji: str) -> JSON:
    """``"⭐"`` or a custom ``"name:id"``, as Discord's partial emoji object."""
    name, _, emoji_id = emoji.partition(":")
    return {"id": emoji_id or None, "name": name}


@dataclass
class Interaction:
    """One interaction the test dispatched, and everything the bot answered to it."""

    id: int
    token: str
    type: int
    user: User
    channel: Channel
    data: JSON
    created_at: float
    message: Message | None = None
    """For a component click (and a modal opened from one): the message that carries the component."""
    response_type: int | None = None
    responded_at: float | None = None
    original: Message | None = None
    followups: list[Message] = field(default_factory=list)
    modal: JSON | None = None
    """The modal the bot answered with (callback type 9), ready for ``DiscordDouble.submit_modal``."""
    failed: bool = False
    """Discord showed "This interaction failed": no initial response in time."""

    @property
    def acknowledged(self) -> bool:
        return self.response_type is not None

    @property
    def deferred(self) -> bool:
        return self.response_type in (5, 6)

    @property
    def messages(self) -> list[Message]:
        """The original response (if it is a message of its own) and the follow-ups, oldest first."""
        first = [] if self.original is None or self.original is self.message else [self.original]
        return [m for m in first + self.followups if not m.deleted]


@dataclass
class Call:
    """One HTTP request the bot made, as the double saw it."""

    method: str
    path: str
    """The concrete path under /api/v10, e.g. ``/channels/123/messages``."""
    route: str
    """The route template, e.g. ``/channels/{channel_id}/messages``; ``?`` for a route the double does not play."""
    query: dict[str, str]
    json: Any
    """The JSON body, or the multipart ``payload_json``; None when there was none."""
    files: list[UploadedFile]
    at: float
    status: int = 0
    response: Any = None
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"
