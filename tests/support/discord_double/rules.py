"""Discord's rules, the errors it answers when a bot breaks them, and the limits a test may tune.

A broken rule is answered with Discord's status and JSON error body, and recorded as a ``Violation``
so that a test can assert that a bot broke none (``DiscordDouble.assert_no_violations``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .models import COMPONENTS_V2, JSON, UploadedFile, walk_components
from .ratelimits import RateLimits

MIB = 1024 * 1024


class Rule(enum.StrEnum):
    LATE_RESPONSE = "interaction.late_response"
    ALREADY_ACKNOWLEDGED = "interaction.already_acknowledged"
    NOT_ACKNOWLEDGED = "interaction.not_acknowledged"
    TOKEN_EXPIRED = "interaction.token_expired"
    UNKNOWN_INTERACTION = "interaction.unknown"
    INVALID_RESPONSE = "interaction.invalid_response"
    TOO_MANY_ROWS = "components.too_many_rows"
    TOO_MANY_IN_ROW = "components.too_many_in_row"
    CUSTOM_ID_TOO_LONG = "components.custom_id_too_long"
    CUSTOM_ID_DUPLICATED = "components.custom_id_duplicated"
    INVALID_COMPONENT = "components.invalid"
    CONTENT_TOO_LONG = "message.content_too_long"
    TOO_MANY_EMBEDS = "message.too_many_embeds"
    EMPTY_MESSAGE = "message.empty"
    NOT_AUTHOR = "message.not_author"
    ATTACHMENT_TOO_LARGE = "attachments.too_large"
    INVALID_COMMAND = "commands.invalid"
    RATE_LIMITED = "rate_limit"
    UNAUTHORIZED = "auth.unauthorized"
    UNKNOWN_ROUTE = "double.unknown_route"
    """A route the double does not play: extend the double rather than the bot."""


@dataclass(frozen=True)
class Violation:
    rule: Rule
    detail: str
    method: str
    path: str
    status: int
    code: int

    def __str__(self) -> str:
        return f"{self.rule.value}: {self.detail} ({self.method} {self.path} -> {self.status}, code {self.code})"


@dataclass(frozen=True)
class Limits:
    """Discord's limits, with its defaults; a test shrinks them to stay fast (e.g. a 1 KiB attachment limit)."""

    attachment_size_limit: int = 10 * MIB
    interaction_deadline: float = 3.0
    token_lifetime: float = 15 * 60.0
    max_content: int = 2000
    max_embeds: int = 10
    max_action_rows: int = 5
    max_per_row: int = 5
    max_custom_id: int = 100
    max_v2_components: int = 40
    rate_limits: RateLimits = field(default_factory=RateLimits)


class DiscordError(Exception):
    """An error Discord answers; ``rule`` set means the bot broke a rule and a violation is recorded."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        rule: Rule | None = None,
        errors: JSON | None = None,
        detail: str = "",
        headers: dict[str, str] | None = None,
        extra: JSON | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.rule = rule
        self.errors = errors
        self.detail = detail or message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> JSON:
        body: JSON = {"message": self.message, "code": self.code, **self.extra}
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def not_found(code: int, what: str) -> DiscordError:
    """Discord's 404 for an unknown resource (not a violation: a bot may meet deleted messages)."""
    return DiscordError(404, code, f"Unknown {what}")


def invalid_form(rule: Rule, path: Sequence[str | int], error_code: str, message: str) -> DiscordError:
    """Discord's 400 Invalid Form Body (code 50035) with its nested ``errors`` tree."""
    errors: JSON = {"_errors": [{"code": error_code, "message": message}]}
    for key in reversed(path):
        errors = {str(key): errors}
    where = ".".join(str(key) for key in path)
    return DiscordError(400, 50035, "Invalid Form Body", rule=rule, errors=errors, detail=f"{where}: {message}")


def check_files(files: Sequence[UploadedFile], limits: Limits) -> None:
    for file in files:
        if file.size > limits.attachment_size_limit:
            raise DiscordError(
                413,
                40005,
                "Request entity too large",
                rule=Rule.ATTACHMENT_TOO_LARGE,
                detail=f"{file.filename} is {file.size} bytes, the limit is {limits.attachment_size_limit}",
            )


def check_message(
    content: str,
    embeds: Sequence[JSON],
    components: list[JSON],
    flags: int,
    limits: Limits,
    *,
    has_attachments: bool,
    where: Sequence[str] = (),
) -> None:
    """A message as it would stand after the request: Discord's checks on content, embeds and components."""
    if len(content) > limits.max_content:
        raise invalid_form(
            Rule.CONTENT_TOO_LONG,
            [*where, "content"],
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {limits.max_content} or fewer in length.",
        )
    if len(embeds) > limits.max_embeds:
        raise invalid_form(
            Rule.TOO_MANY_EMBEDS,
            [*where, "embeds"],
            "BASE_TYPE_MAX_LENGTH",
            f"Must be {limits.max_embeds} or fewer in length.",
        )
    check_components(components, flags, limits, where=where)
    if not (content or embeds or components or has_attachments):
        raise DiscordError(400, 50006, "Cannot send an empty message", rule=Rule.EMPTY_MESSAGE)


def check_components(components: list[JSON], flags: int, limits: Limits, *, where: Sequence[str] = ()) -> None:
    path: list[str | int] = [*where, "components"]
    if flags & COMPONENTS_V2:
        total = sum(1 for _ in walk_components(components))
        if total > limits.max_v2_components:
            raise invalid_form(
                Rule.TOO_MANY_ROWS, path, "BASE_TYPE_MAX_LENGTH", f"Must be {limits.max_v2_components} or fewer."
            )
    else:
        _check_rows(components, limits, path)
    _check_custom_ids(components, limits, path)


def _check_rows(rows: list[JSON], limits: Limits, path: list[str | int]) -> None:
    if len(rows) > limits.max_action_rows:
        raise invalid_form(
            Rule.TOO_MANY_ROWS,
            path,
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between 1 and {limits.max_action_rows} in length.",
        )
    for index, row in enumerate(rows):
        if row.get("type") != 1:
            raise invalid_form(
                Rule.INVALID_COMPONENT,
                [*path, index, "type"],
                "UNION_TYPE_CHOICES",
                "Top-level components of a message without the components v2 flag must be action rows.",
            )
        children = row.get("components") or []
        if not 1 <= len(children) <= limits.max_per_row:
            raise invalid_form(
                Rule.TOO_MANY_IN_ROW,
                [*path, index, "components"],
                "BASE_TYPE_BAD_LENGTH",
                f"Must be between 1 and {limits.max_per_row} in length.",
            )
        if len(children) > 1 and any(child.get("type") != 2 for child in children):
            raise invalid_form(
                Rule.INVALID_COMPONENT,
                [*path, index, "components"],
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )


def _check_custom_ids(components: list[JSON], limits: Limits, path: list[str | int]) -> None:
    seen: set[str] = set()
    for component in walk_components(components):
        kind = component.get("type")
        custom_id = component.get("custom_id")
        if kind == 2 and component.get("style") in (5, 6):
            continue  # link and premium buttons carry a url or sku instead
        if kind in (2, 3, 4, 5, 6, 7, 8) and not custom_id:
            raise invalid_form(
                Rule.INVALID_COMPONENT, [*path, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required"
            )
        if custom_id is None:
            continue
        if len(custom_id) > limits.max_custom_id:
            raise invalid_form(
                Rule.CUSTOM_ID_TOO_LONG,
                [*path, "custom_id"],
                "BASE_TYPE_MAX_LENGTH",
                f"Must be {limits.max_custom_id} or fewer in length ({custom_id!r} has {len(custom_id)}).",
            )
        if custom_id in seen:
            raise invalid_form(
                Rule.CUSTOM_ID_DUPLICATED,
                [*path, "custom_id"],
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                f"Component custom id cannot be duplicated ({custom_id!r}).",
            )
        seen.add(custom_id)


def check_modal(data: Mapping[str, Any], limits: Limits) -> None:
    where = ["data"]
    custom_id = str(data.get("custom_id") or "")
    if not custom_id or len(custom_id) > limits.max_custom_id:
        raise invalid_form(
            Rule.CUSTOM_ID_TOO_LONG,
            [*where, "custom_id"],
            "BASE_TYPE_BAD_LENGTH",
            f"Must be between 1 and {limits.max_custom_id} in length.",
        )
    if not 1 <= len(str(data.get("title") or "")) <= 45:
        raise invalid_form(
            Rule.INVALID_RESPONSE, [*where, "title"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length."
        )
    components = list(data.get("components") or [])
    if not 1 <= len(components) <= 5:
        raise invalid_form(
            Rule.TOO_MANY_ROWS, [*where, "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length."
        )
    _check_custom_ids(components, limits, [*where, "components"])
