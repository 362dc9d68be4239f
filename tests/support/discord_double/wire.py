"""The HTTP plumbing every REST route shares: read the body, record the call, check auth and rate limits,
answer JSON with ``Content-Type: application/json`` exactly (discord.py ignores a body whose type has a charset).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from .models import JSON, Call, UploadedFile
from .ratelimits import RateLimit, RateLimiter, RateLimits
from .rules import DiscordError, Rule, check_files
from .state import World

API_PREFIX = "/api/v10"


@dataclass
class ApiRequest:
    call: Call
    params: Mapping[str, str]
    query: Mapping[str, str]
    json: Any
    files: list[UploadedFile]

    def body(self) -> JSON:
        return self.json if isinstance(self.json, dict) else {}

    def id(self, name: str, what: str, code: int) -> int:
        """A snowflake path parameter; one that is not a number is unknown to Discord."""
        try:
            return int(self.params[name])
        except ValueError:
            raise DiscordError(404, code, f"Unknown {what}") from None


@dataclass
class Reply:
    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


NO_CONTENT = Reply(status=204)

Handler = Callable[[ApiRequest], Awaitable[Reply]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str
    """Under /api/v10, in aiohttp's syntax; the parameter names are Discord's (channel_id, message_id...)."""
    handler: Handler
    auth: bool = True
    """Needs ``Authorization: Bot <token>``; interaction callbacks and webhook-token routes do not."""
    bucket: str | None = None
    """A field of ``RateLimits``; the bucket is per value of ``major``."""
    major: str = ""


class Router:
    def __init__(self, world: World, rate_limits: RateLimits) -> None:
        self.world = world
        self.rate_limits = rate_limits
        self.limiter = RateLimiter(world.clock)

    def mount(self, app: web.Application, endpoints: Sequence[Endpoint]) -> None:
        for endpoint in endpoints:
            app.router.add_route(endpoint.method, API_PREFIX + endpoint.route, self._wrap(endpoint))

    def _wrap(self, endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.serve(request, endpoint)

        return handle

    async def serve(self, request: web.Request, endpoint: Endpoint | None) -> web.StreamResponse:
        path = request.path.removeprefix(API_PREFIX)
        call = Call(
            method=request.method,
            path=path,
            route="?" if endpoint is None else endpoint.route,
            query=dict(request.query),
            json=None,
            files=[],
            at=self.world.clock.now(),
            params=dict(request.match_info),
        )
        self.world.calls.append(call)
        headers: dict[str, str] = {}
        try:
            call.json, call.files = await read_body(request)
            if endpoint is None:
                raise DiscordError(
                    404, 0, "404: Not Found", rule=Rule.UNKNOWN_ROUTE, detail="the double does not play this route"
                )
            if endpoint.auth and request.headers.get(hdrs.AUTHORIZATION) != f"Bot {self.world.token}":
                raise DiscordError(401, 0, "401: Unauthorized", rule=Rule.UNAUTHORIZED, detail="missing or wrong token")
            check_files(call.files, self.world.limits)
            headers = self._rate_limit(endpoint, call.params)
            reply = await endpoint.handler(ApiRequest(call, call.params, call.query, call.json, call.files))
            status, body = reply.status, reply.body
            headers |= reply.headers
        except DiscordError as error:
            status, body, headers = error.status, error.body(), error.headers
            if error.rule is not None:
                self.world.violate(error, call.method, call.path)
        call.status, call.response = status, body
        return respond(status, body, headers)

    def _rate_limit(self, endpoint: Endpoint, params: Mapping[str, str]) -> dict[str, str]:
        if endpoint.auth and (limit := self.rate_limits.global_limit) is not None:
            self._hit("global_limit", "", limit)
        if endpoint.bucket is None or (route_limit := self.rate_limits.of(endpoint.bucket)) is None:
            return {}
        return self._hit(endpoint.bucket, params.get(endpoint.major, ""), route_limit)

    def _hit(self, bucket: str, major: str, limit: RateLimit) -> dict[str, str]:
        verdict = self.limiter.hit(bucket, major, limit)
        if verdict.allowed:
            return verdict.headers
        is_global = bucket == "global_limit"
        where = f"{bucket} {major}".strip()
        raise DiscordError(
            429,
            0,
            "You are being rate limited.",
            rule=Rule.RATE_LIMITED,
            detail=f"{where} ({limit.limit} per {limit.per} s): retry after {verdict.retry_after:.3f} s",
            headers=verdict.headers,
            extra={"retry_after": verdict.retry_after, "global": is_global},
        )


async def read_body(request: web.Request) -> tuple[Any, list[UploadedFile]]:
    """The JSON body, or a multipart body's ``payload_json`` and its files (``files[n]``)."""
    if not request.body_exists:
        return None, []
    if request.content_type == "multipart/form-data":
        payload: Any = None
        files: list[UploadedFile] = []
        async for part in await request.multipart():
            if not isinstance(part, BodyPartReader):
                continue
            if part.name == "payload_json":
                payload = _parse_json(await part.read())
            elif part.filename is not None:
                data = bytes(await part.read())
                content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                files.append(UploadedFile(part.filename, data, content_type, part.name or ""))
        return payload, files
    raw = await request.read()
    return (_parse_json(raw) if raw else None), []


def _parse_json(raw: bytes | bytearray) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        raise DiscordError(400, 50109, "The request body contains invalid JSON.") from None


def respond(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    if status == 204:
        return web.Response(status=204, headers=dict(headers or {}))
    encoded = json.dumps(body).encode()
    return web.Response(status=status, body=encoded, headers={**(headers or {}), "Content-Type": "application/json"})
