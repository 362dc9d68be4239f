"""Serving the playground: on its own (``dreamloom web``) or inside ``dreamloom up``."""

from __future__ import annotations

import contextlib
import errno
from collections.abc import AsyncIterator

from aiohttp import web

__all__ = ["PortInUse", "serve"]

SHUTDOWN_SECONDS = 3.0  # open event streams end at once; anything else gets this long


class PortInUse(OSError):
    pass


@contextlib.asynccontextmanager
async def serve(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) until the block ends; yields the URL to open."""
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_SECONDS, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(exc.errno, f"port {port} on {host} is already in use") from exc
            raise
        bound = runner.addresses[0]
        yield _url(host, int(bound[1]))
    finally:
        await runner.cleanup()


def _url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
