"""Interactions: the INTERACTION_CREATE payloads a test dispatches, and the routes a bot answers them on.

An interaction must get its initial response (``POST /interactions/{id}/{token}/callback``) within 3 seconds
of dispatch; its token then serves follow-ups and edits (``/webhooks/{application_id}/{token}...``) for
15 minutes. Both are measured on the double's ``Clock``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .gateway import Events
from .models import ALL_PERMISSIONS, CHANNEL_DM, EPHEMERAL, JSON, LOADING, Channel, Interaction, Message, UploadedFile
from .models import User as DiscordUser
from .rules import DiscordError, Rule, check_modal, invalid_form, not_found
from .state import World
from .wire import NO_CONTENT, ApiRequest, Endpoint, Handler, Reply

APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 2, 3, 4, 5
PONG, MESSAGE, DEFERRED_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, AUTOCOMPLETE_RESULT, MODAL = 1, 4, 5, 6, 7, 8, 9


class InteractionApi:
    def __init__(self, world: World, events: Events) -> None:
        self.world = world
        self.events = events

    def endpoints(self) -> list[Endpoint]:
        webhook = "/webhooks/{application_id}/{token}"
        message = webhook + "/messages/{message_id}"

        def limited(method: str, route: str, handler: Handler) -> Endpoint:
            return Endpoint(method, route, handler, auth=False, bucket="interaction_webhook", major="token")

        return [
            Endpoint("POST", "/interactions/{interaction_id}/{token}/callback", self.callback, auth=False),
            limited("POST", webhook, self.followup),
            Endpoint("GET", message, self.get_message, auth=False),
            limited("PATCH", message, self.edit_message),
            limited("DELETE", message, self.delete_message),
        ]

    # -- the initial response

    async def callback(self, request: ApiRequest) -> Reply:
        interaction = self.world.interactions.get(request.id("interaction_id", "interaction", 10062))
        if interaction is None or interaction.token != request.params["token"]:
            raise DiscordError(404, 10062, "Unknown interaction", rule=Rule.UNKNOWN_INTERACTION)
        if interaction.acknowledged:
            raise DiscordError(
                400,
                40060,
                "Interaction has already been acknowledged.",
                rule=Rule.ALREADY_ACKNOWLEDGED,
                detail=f"a second initial response (type {request.body().get('type')})",
            )
        elapsed = self.world.clock.now() - interaction.created_at
        if interaction.failed or elapsed > self.world.limits.interaction_deadline:
            interaction.failed = True
            raise DiscordError(
                404,
                10062,
                "Unknown interaction",
                rule=Rule.LATE_RESPONSE,
                detail=f"initial response {elapsed:.2f} s after dispatch; Discord waits "
                f"{self.world.limits.interaction_deadline} s",
            )
        kind = int(request.body().get("type") or 0)
        data: JSON = request.body().get("data") or {}
        resource = await self._respond(interaction, kind, data, request.files)
        interaction.response_type = kind
        interaction.responded_at = self.world.clock.now()
        original = interaction.original
        callback: JSON = {"id": str(interaction.id), "type": interaction.type}
        if original is not None and kind in (MESSAGE, DEFERRED_MESSAGE, UPDATE_MESSAGE):
            callback |= {
                "response_message_id": str(original.id),
                "response_message_loading": original.loading,
                "response_message_ephemeral": original.ephemeral,
            }
        return Reply({"interaction": callback, "resource": resource})

    async def _respond(self, interaction: Interaction, kind: int, data: JSON, files: Sequence[UploadedFile]) -> JSON:
        world, bot = self.world, self.world.bot
        on_message = interaction.message is not None
        if kind == MESSAGE:
            flags = int(data.get("flags") or 0) & EPHEMERAL
            message = world.create_message(
                interaction.channel, bot, data, files, where=["data"], flags=flags, interaction=interaction
            )
            interaction.original = message
            await self.events.message_created(message)
            return {"type": kind, "message": message.payload(bot.id)}
        if kind == DEFERRED_MESSAGE:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            message = world.create_message(
                interaction.channel, bot, {}, [], flags=flags, interaction=interaction, allow_empty=True
            )
            interaction.original = message
            await self.events.message_created(message)
            return {"type": kind, "message": message.payload(bot.id)}
        if kind == DEFERRED_UPDATE and on_message:
            interaction.original = interaction.message
            return {"type": kind}
        if kind == UPDATE_MESSAGE and on_message:
            assert interaction.message is not None
            world.edit_message(interaction.message, data, files, where=["data"])
            interaction.original = interaction.message
            await self.events.message_updated(interaction.message)
            return {"type": kind, "message": interaction.message.payload(bot.id)}
        if kind == AUTOCOMPLETE_RESULT and interaction.type == AUTOCOMPLETE:
            return {"type": kind}
        if kind == MODAL and interaction.type in (APPLICATION_COMMAND, MESSAGE_COMPONENT):
            check_modal(data, world.limits)
            interaction.modal = data
            return {"type": kind}
        raise invalid_form(
            Rule.INVALID_RESPONSE,
            ["type"],
            "INTERACTION_RESPONSE_TYPE_INVALID",
            f"Response type {kind} is not valid for an interaction of type {interaction.type}"
            + ("" if on_message or kind not in (DEFERRED_UPDATE, UPDATE_MESSAGE) else " without a message"),
        )

    # -- follow-ups and edits through the interaction's token

    def _interaction(self, request: ApiRequest) -> Interaction:
        if request.params["application_id"] != str(self.world.application_id):
            raise not_found(10015, "Webhook")
        interaction = self.world.interactions_by_token.get(request.params["token"])
        if interaction is None:
            raise DiscordError(401, 50027, "Invalid Webhook Token", rule=Rule.UNKNOWN_INTERACTION)
        age = self.world.clock.now() - interaction.created_at
        if age > self.world.limits.token_lifetime:
            raise DiscordError(
                401,
                50027,
                "Invalid Webhook Token",
                rule=Rule.TOKEN_EXPIRED,
                detail=f"token used {age / 60:.1f} min after the interaction; it lives "
                f"{self.world.limits.token_lifetime / 60:.0f} min",
            )
        if not interaction.acknowledged:
            late = " (the initial response came too late)" if interaction.failed else ""
            raise DiscordError(
                404,
                10015,
                "Unknown Webhook",
                rule=Rule.NOT_ACKNOWLEDGED,
                detail=f"follow-up or edit before any initial response{late}",
            )
        return interaction

    def _target(self, interaction: Interaction, message_id: str) -> Message:
        if message_id == "@original":
            message = interaction.original
        else:
            message = next(
                (m for m in [interaction.original, *interaction.followups] if m and str(m.id) == message_id), None
            )
        if message is None or message.deleted:
            raise not_found(10008, "Message")
        return message

    async def followup(self, request: ApiRequest) -> Reply:
        interaction = self._interaction(request)
        data = request.body()
        original = interaction.original
        if interaction.response_type == DEFERRED_MESSAGE and original is not None and original.loading:
            # Discord fills the "thinking..." message with the first follow-up after a deferred response.
            self.world.edit_message(original, data, request.files)
            message = original
            await self.events.message_updated(message)
        else:
            flags = int(data.get("flags") or 0) & EPHEMERAL
            message = self.world.create_message(
                interaction.channel, self.world.bot, data, request.files, flags=flags, interaction=interaction
            )
            interaction.followups.append(message)
            await self.events.message_created(message)
        if request.query.get("wait", "").lower() in ("1", "true"):
            return Reply(message.payload(self.world.bot.id))
        return NO_CONTENT

    async def get_message(self, request: ApiRequest) -> Reply:
        message = self._target(self._interaction(request), request.params["message_id"])
        return Reply(message.payload(self.world.bot.id))

    async def edit_message(self, request: ApiRequest) -> Reply:
        message = self._target(self._interaction(request), request.params["message_id"])
        self.world.edit_message(message, request.body(), request.files)
        await self.events.message_updated(message)
        return Reply(message.payload(self.world.bot.id))

    async def delete_message(self, request: ApiRequest) -> Reply:
        message = self._target(self._interaction(request), request.params["message_id"])
        message.deleted = True
        await self.events.message_deleted(message)
        return NO_CONTENT


# -- what a test dispatches


def interaction_payload(world: World, interaction: Interaction) -> JSON:
    """INTERACTION_CREATE as discord.py 2.7 needs it (``attachment_size_limit`` is required since 2.6)."""
    channel = interaction.channel
    payload: JSON = {
        "id": str(interaction.id),
        "application_id": str(world.application_id),
        "type": interaction.type,
        "token": interaction.token,
        "version": 1,
        "data": interaction.data,
        "channel_id": str(channel.id),
        "channel": {**channel.payload(), "permissions": str(ALL_PERMISSIONS)},
        "attachment_size_limit": world.limits.attachment_size_limit,
        "app_permissions": str(ALL_PERMISSIONS),
        "locale": "en-US",
        "entitlements": [],
    }
    if channel.type == CHANNEL_DM:
        payload |= {"user": interaction.user.payload(), "context": 1, "authorizing_integration_owners": {"1": "0"}}
    else:
        guild = world.guild
        payload |= {
            "guild_id": str(guild.id),
            "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
            "guild_locale": "en-US",
            "member": guild.member_payload(interaction.user, permissions=True),
            "context": 0,
            "authorizing_integration_owners": {"0": str(guild.id)},
        }
    if interaction.message is not None:
        payload["message"] = interaction.message.payload(world.bot.id)
    return payload


def find_command(world: World, name: str) -> tuple[int | None, JSON]:
    """A synced chat-input command by name: this guild's commands first, then the global ones."""
    for scope in (world.guild.id, None):
        for command in world.commands.get(scope, []):
            if command["name"] == name and command.get("type", 1) == 1:
                return scope, command
    synced = sorted({c["name"] for commands in world.commands.values() for c in commands})
    raise LookupError(f"/{name} is not synced, so Discord cannot offer it (synced: {synced or 'nothing'})")


def command_data(world: World, channel: Channel, name: str, options: Mapping[str, object]) -> JSON:
    """``data`` of a slash command: ``name`` may name a subcommand (``"settings reset"``); values are checked
    against the synced option schema as Discord's client checks them (types, choices, ranges, required).
    """
    root, *path = name.split()
    scope, command = find_command(world, root)
    data: JSON = {"id": command["id"], "name": root, "type": 1}
    if scope is not None:
        data["guild_id"] = str(scope)
    node, schema = data, list(command.get("options") or [])
    for part in path:
        sub = next((o for o in schema if o["name"] == part and o["type"] in (1, 2)), None)
        if sub is None:
            raise LookupError(f"/{root} has no subcommand {part!r}")
        child: JSON = {"name": part, "type": sub["type"]}
        node["options"] = [child]
        node, schema = child, list(sub.get("options") or [])
    resolved: JSON = {}
    by_name = {option["name"]: option for option in schema}
    unknown = set(options) - set(by_name)
    if unknown:
        raise LookupError(f"/{name} has no option {sorted(unknown)} (it has {sorted(by_name)})")
    missing = [o["name"] for o in schema if o.get("required") and o["name"] not in options]
    if missing:
        raise ValueError(f"/{name} needs {missing}: Discord's client would not send it without them")
    node["options"] = [_option(world, channel, by_name[key], value, resolved) for key, value in options.items()]
    if resolved:
        data["resolved"] = resolved
    return data


def _option(world: World, channel: Channel, schema: JSON, value: object, resolved: JSON) -> JSON:
    kind, name = schema["type"], schema["name"]
    converted: Any
    if kind == 3:
        if not isinstance(value, str):
            raise TypeError(f"option {name!r} is a string and cannot take {value!r}")
        converted = value
        _check_range(name, len(converted), schema.get("min_length"), schema.get("max_length"), "length")
    elif kind == 4:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"option {name!r} is an integer and cannot take {value!r}")
        converted = value
        _check_range(name, value, schema.get("min_value"), schema.get("max_value"), "value")
    elif kind == 5:
        converted = bool(value)
    elif kind == 10:
        if not isinstance(value, int | float):
            raise TypeError(f"option {name!r} is a number and cannot take {value!r}")
        converted = float(value)
        _check_range(name, converted, schema.get("min_value"), schema.get("max_value"), "value")
    elif kind == 6 and isinstance(value, DiscordUser):
        converted = str(value.id)
        member = {k: v for k, v in world.guild.member_payload(value, permissions=True).items() if k != "user"}
        resolved.setdefault("users", {})[converted] = value.payload()
        resolved.setdefault("members", {})[converted] = member
    elif kind == 7 and isinstance(value, Channel):
        converted = str(value.id)
        resolved.setdefault("channels", {})[converted] = {**value.payload(), "permissions": str(ALL_PERMISSIONS)}
    elif kind == 11 and isinstance(value, UploadedFile):
        attachment = world.upload(channel, value)
        converted = str(attachment.id)
        resolved.setdefault("attachments", {})[converted] = attachment.payload()
    else:
        raise TypeError(f"option {name!r} of type {kind} cannot take {value!r} in the double")
    choices = schema.get("choices")
    if choices and converted not in [choice["value"] for choice in choices]:
        raise ValueError(f"option {name!r} offers only {[c['value'] for c in choices]}, not {converted!r}")
    return {"name": name, "type": kind, "value": converted}


def _check_range(name: str, value: float, low: float | None, high: float | None, what: str) -> None:
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"option {name!r}: {what} {value} is outside [{low}, {high}]; Discord's client refuses it")


def component_data(message: Message, custom_id: str, values: Sequence[str] | None) -> JSON:
    component = message.component(custom_id)
    if component is None:
        raise LookupError(f"message {message.id} has no component {custom_id!r} (it has {message.custom_ids()})")
    if component.get("disabled"):
        raise ValueError(f"{custom_id!r} is disabled: Discord does not let a member use it")
    data: JSON = {"custom_id": custom_id, "component_type": component["type"]}
    if component["type"] != 2:
        data["values"] = list(values or [])
    elif values is not None:
        raise ValueError("a button has no values; use select() for a select menu")
    return data


def modal_submit_data(modal: JSON, values: Mapping[str, str | Sequence[str]]) -> JSON:
    """``data`` of a modal submit, mirroring the modal's layout (action rows or labels) as Discord does."""
    used: set[str] = set()

    def submitted(component: JSON) -> JSON | None:
        custom_id = component.get("custom_id")
        if custom_id is None:
            return None
        used.add(custom_id)
        if component["type"] == 4:
            value = values.get(custom_id, component.get("value") or "")
            if not isinstance(value, str):
                raise TypeError(f"text input {custom_id!r} takes a string")
            if component.get("required", True) and not value:
                raise ValueError(f"text input {custom_id!r} is required: Discord's client would not submit it")
            _check_range(custom_id, len(value), component.get("min_length"), component.get("max_length"), "length")
            return {"type": 4, "custom_id": custom_id, "value": value}
        chosen = values.get(custom_id, [])
        return {
            "type": component["type"],
            "custom_id": custom_id,
            "values": [chosen] if isinstance(chosen, str) else list(chosen),
        }

    layout: list[JSON] = []
    for component in modal.get("components") or []:
        if component["type"] == 1:
            row = [c for c in (submitted(child) for child in component.get("components") or []) if c]
            layout.append({"type": 1, "components": row})
        elif component["type"] == 18 and (inner := submitted(component["component"])) is not None:
            layout.append({"type": 18, "component": inner})
        elif (single := submitted(component)) is not None:
            layout.append(single)
    unknown = set(values) - used
    if unknown:
        raise LookupError(f"the modal has no input {sorted(unknown)} (it has {sorted(used)})")
    return {"custom_id": modal["custom_id"], "components": layout}
