"""Each part of dreamloom alone, for production, configured from the environment:

worker   a Celery worker for the models and families of the registry (the process becomes ``celery worker``)
web      the playground alone, against the job system of REDIS_URL
bot      the Discord bot alone, against the job system of REDIS_URL
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Iterable

from bot.cli.services import say
from bot.cli.settings import ServiceSettings
from bot.cli.up import stop_on_signals
from engine.registry import Registry
from tasks.client import JobClient
from tasks.processes import PRIVATE_UMASK, worker_environment
from tasks.records import MODES
from tasks.settings import Settings
from tasks.worker_process import served_models, worker_command

__all__ = ["run_bot", "run_web", "run_worker"]


def run_worker(
    service: ServiceSettings,
    families: list[str] | None,
    loglevel: str,
    modes: Iterable[str] = MODES,
    models: Iterable[str] | None = None,
) -> int:
    """Become ``celery worker`` for the registry's families (or ``families``) and their models (or ``models``,
    else DREAMLOOM_WORKER_MODELS), fast and relax queues (or ``modes``); the models' own queues come first
    (``tasks.worker_process.served_models``). With DREAMLOOM_METRICS_PORT set, its pool processes share
    Prometheus files in a fresh folder.
    It keeps none of the front ends' secrets (the Discord token: compose gives every container deploy/.env)
    and writes its files for its owner only (the spool holds members' images, by default under /tmp)."""
    families, served = served_models(Registry.from_env(), families, models or service.worker_models)
    command = worker_command(families, service.worker_concurrency, loglevel=loglevel, modes=modes, models=served)
    say(f"dreamloom worker: queues {command[command.index('-Q') + 1]}")
    if os.environ.get("DREAMLOOM_METRICS_PORT", "0") not in ("", "0") and not os.environ.get(
        "PROMETHEUS_MULTIPROC_DIR"
    ):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="dreamloom-metrics-")
    os.umask(PRIVATE_UMASK)
    os.execve(command[0], command, worker_environment(os.environ, s3=bool(Settings.from_env().s3_bucket)))


def run_web(service: ServiceSettings) -> int:
    """The playground alone, on the job system of the environment."""
    from bot.web.app import create_app
    from bot.web.guard import AllowedHosts
    from bot.web.server import PortInUse, serve

    async def main(client: JobClient) -> int:
        stopping = stop_on_signals()
        app = create_app(
            client,
            user=service.user,
            notice=client.registry.notice,
            allowed_hosts=AllowedHosts(service.web_host, service.web_allowed_hosts),
        )
        try:
            async with serve(app, service.web_host, service.web_port) as url:
                say(f"dreamloom web: open {url} (Ctrl-C stops it)")
                await stopping.wait()
        except PortInUse as exc:
            say(f"Cannot start: {exc.strerror}: set DREAMLOOM_WEB_PORT (or --port) to another port")
            return 1
        return 0

    with JobClient.from_env() as client:
        return asyncio.run(main(client))


def run_bot() -> int:
    """The Discord bot alone, on the job system of the environment."""
    from bot.discord.launcher import main

    return main()
