"""``dreamloom up``: everything on one machine, from the same code as a production deployment.

The job system on this machine (``LocalJobSystem``: a private Redis unless REDIS_URL is set, and a worker
subprocess), the web playground, and the Discord bot when DISCORD_TOKEN is set, until Ctrl-C or SIGTERM;
then everything stops in order (a second Ctrl-C: at once). While it runs, other commands find it through
its data folder (``bot.cli.services``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from collections.abc import Coroutine, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from redis.exceptions import RedisError

from bot.cli.local_system import LocalJobSystem
from bot.cli.services import Say, ServiceRecord, say
from bot.cli.settings import ServiceSettings
from bot.stopping import cancel_and_wait
from engine.errors import DreamloomError
from tasks.client import JobClient

__all__ = ["StopSignal", "run_up", "stop_on_signals"]

log = logging.getLogger(__name__)

RECOVER_EVERY_SECONDS = 60.0
CLOSE_GRACE = 15.0  # seconds for the bot and the watchers to close in order before they are cancelled again


def run_up(service: ServiceSettings, environ: Mapping[str, str] | None = None, say: Say = say) -> int:
    """Everything on one machine until Ctrl-C (or SIGTERM); then stop it all, in order."""
    env = dict(os.environ if environ is None else environ)
    system = LocalJobSystem(service, env, say)
    hurry = threading.Event()
    previous_term = signal.signal(signal.SIGTERM, _interrupt)
    try:
        say(f"data folder  {system.folder.path}")
        system.start()
        return asyncio.run(_up(system, service, env, say))
    except KeyboardInterrupt:
        say("interrupted while starting")
        return 130
    except DreamloomError as exc:
        say(f"{exc.title}: {exc}")
        return exc.exit_code
    finally:
        previous_int = signal.signal(signal.SIGINT, lambda *_: hurry.set())  # a second Ctrl-C: no waiting
        signal.signal(signal.SIGTERM, lambda *_: hurry.set())
        system.stop(hurry)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
        if system.started:  # a second `up` on a folder already served started nothing, so stops nothing
            say("stopped")


def _interrupt(_signal: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _up(system: LocalJobSystem, service: ServiceSettings, env: Mapping[str, str], say: Say) -> int:
    from bot.web.app import create_app
    from bot.web.guard import AllowedHosts
    from bot.web.server import PortInUse, serve

    assert system.registry is not None
    assert system.settings is not None
    stopping = stop_on_signals()
    failed = False
    with system.client() as client:
        app = create_app(
            client,
            user=service.user,
            notice=system.registry.notice,
            allowed_hosts=AllowedHosts(service.web_host, service.web_allowed_hosts),
        )
        try:
            async with serve(app, service.web_host, service.web_port) as url:
                record = ServiceRecord(os.getpid(), system.settings.redis_url, str(system.folder.path), url,
                                       _models_file(system.environ))  # fmt: skip
                system.folder.publish(record)
                if not service.web_is_local:
                    say(f"warning      the playground has no login and listens on {service.web_host}")
                background = [
                    asyncio.create_task(_watch_worker(system, stopping, say)),
                    asyncio.create_task(_recover(client)),
                ]
                bot = _discord_bot(client, env, say)
                if bot is not None:
                    background.append(asyncio.create_task(_keep_going(bot, "the Discord bot", say)))
                say("")
                say(f"Open {url} in your browser. Ctrl-C stops everything.")
                await stopping.wait()
                failed = stopping.failed
                say("stopping ...")
                await cancel_and_wait(*background, grace=CLOSE_GRACE)
                await asyncio.gather(*background, return_exceptions=True)  # ended: this only collects them
        except PortInUse as exc:
            say(f"Cannot start: {exc.strerror}: set DREAMLOOM_WEB_PORT (or --port) to another port")
            return 1
        finally:
            system.folder.unpublish()
    return 1 if failed else 0


class StopSignal(asyncio.Event):
    """Set by SIGINT or SIGTERM, or by ``fail`` when a part of the service died."""

    failed = False

    def fail(self) -> None:
        self.failed = True
        self.set()


def stop_on_signals() -> StopSignal:
    stopping = StopSignal()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(number, stopping.set)
    return stopping


async def _watch_worker(system: LocalJobSystem, stopping: StopSignal, say: Say) -> None:
    """Say when the worker is warming (loading its models; jobs wait in the queue) and when it is ready."""
    announced = warming = False
    while True:
        if not warming and system.worker_warming():  # its log says so before it says ready
            say("worker       warming: loading its models; jobs wait until it is ready")
            warming = True
        if warming and not announced and system.worker_ready():
            say("worker       ready")
            announced = True
        failure = system.worker_failure()
        if failure is not None:
            say(f"dreamloom: {failure}")
            stopping.fail()
            return
        await asyncio.sleep(0.5)


async def _recover(client: JobClient) -> None:
    """Send again the jobs whose sender died between admitting and sending them."""
    while True:
        try:
            await asyncio.to_thread(client.recover)
        except RedisError as exc:
            log.warning("could not look for unsent jobs: %s", exc)
        await asyncio.sleep(RECOVER_EVERY_SECONDS)


async def _keep_going(work: Coroutine[Any, Any, Any], what: str, say: Say) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("%s stopped", what)
        say(f"dreamloom: {what} stopped: {exc}; everything else goes on")


def _discord_bot(client: JobClient, env: Mapping[str, str], say: Say) -> Coroutine[Any, Any, Any] | None:
    """The bot on the service's own client, when DISCORD_TOKEN is set (imported only then)."""
    if not env.get("DISCORD_TOKEN"):
        say("discord bot  off (set DISCORD_TOKEN to start it)")
        return None
    from bot.discord.launcher import run_discord_bot
    from bot.discord.settings import BotSettings

    try:
        settings = BotSettings.from_env(env)
    except DreamloomError as exc:
        say(f"discord bot  not started: {exc}")
        return None
    say("discord bot  starting")
    return run_discord_bot(settings, client)


def _models_file(env: Mapping[str, str]) -> str | None:
    models = env.get("DREAMLOOM_MODELS")
    return str(Path(models).resolve()) if models else None
