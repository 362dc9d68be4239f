"""What the one-machine service, the web playground and the command line read from the environment.

The job system's own variables (``REDIS_URL``, storage, limits) are read by ``tasks.settings.Settings``;
the bot's (``DISCORD_TOKEN`` ...) by ``bot.discord.settings.BotSettings``. These are the rest:

    DREAMLOOM_DATA_DIR            dreamloom-data   local storage, the embedded Redis's data, logs
    DREAMLOOM_WEB_HOST            127.0.0.1        where the playground listens (it has no login: keep it local)
    DREAMLOOM_WEB_PORT            8188             its port
    DREAMLOOM_WEB_ALLOWED_HOSTS                    host names it answers to, besides the loopback names and
                                                   DREAMLOOM_WEB_HOST (comma-separated; a proxy's public name)
    DREAMLOOM_USER                local            who the playground's and the CLI's jobs belong to
    DREAMLOOM_WORKER_CONCURRENCY  1                jobs a worker runs at once (one per GPU)
    DREAMLOOM_WORKER_MODELS                        models a worker serves from their own queues (comma-separated
                                                   registry names; default: every model of its families)
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ConfigError

__all__ = ["ENVIRONMENT", "ServiceSettings"]

# ServiceSettings field -> environment variable.
ENVIRONMENT = {
    "data_dir": "DREAMLOOM_DATA_DIR",
    "web_host": "DREAMLOOM_WEB_HOST",
    "web_port": "DREAMLOOM_WEB_PORT",
    "web_allowed_hosts": "DREAMLOOM_WEB_ALLOWED_HOSTS",
    "user": "DREAMLOOM_USER",
    "worker_concurrency": "DREAMLOOM_WORKER_CONCURRENCY",
    "worker_models": "DREAMLOOM_WORKER_MODELS",
}


@dataclass(frozen=True)
class ServiceSettings:
    data_dir: Path = Path("dreamloom-data")
    web_host: str = "127.0.0.1"
    web_port: int = 8188
    user: str = "local"
    # jobs a worker holds at once, sharing one engine: one renders while the others encode and upload
    # (tasks.worker); 1: no overlap
    worker_concurrency: int = 2
    # Host names the playground answers to besides the loopback names and web_host (bot.web.guard).
    web_allowed_hosts: tuple[str, ...] = ()
    # Whether the data folder was named (DREAMLOOM_DATA_DIR or --data-dir) rather than the default: a command
    # then uses that folder's service only (bot.cli.services.find_running). Provenance, not a setting.
    data_dir_given: bool = field(default=False, compare=False)
    # Registry names of the models a worker serves (empty: every model of its families); checked against the
    # registry when the worker starts.
    worker_models: tuple[str, ...] = ()

    @property
    def web_is_local(self) -> bool:
        """True when only this machine can reach the playground."""
        if self.web_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.web_host).is_loopback
        except ValueError:
            return False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if environ is None else environ
        defaults = cls()
        data_dir = Path(env.get(ENVIRONMENT["data_dir"]) or defaults.data_dir)
        user = env.get(ENVIRONMENT["user"]) or defaults.user
        if not user.replace("-", "").replace("_", "").isalnum() or len(user) > 64:
            raise ConfigError(f"DREAMLOOM_USER must be 1-64 letters, digits, '-' or '_' (got {user!r})")
        return cls(
            data_dir=data_dir,
            web_host=env.get(ENVIRONMENT["web_host"]) or defaults.web_host,
            web_port=_whole(env, "web_port", defaults.web_port, 0, 65535),
            web_allowed_hosts=_host_names(env.get(ENVIRONMENT["web_allowed_hosts"], "")),
            user=user,
            worker_concurrency=_whole(env, "worker_concurrency", defaults.worker_concurrency, 1, 256),
            data_dir_given=bool(env.get(ENVIRONMENT["data_dir"])),
            worker_models=model_names(env.get(ENVIRONMENT["worker_models"], ""), ENVIRONMENT["worker_models"]),
        )


_MAX_WORKER_MODELS = 32


def model_names(raw: str, where: str) -> tuple[str, ...]:
    """Comma-separated model names (``v6,niji``): each as registry aliases are written, at most 32 of them.
    Whether the registry has them is checked where the registry is read."""
    names = tuple(dict.fromkeys(name.strip() for name in raw.split(",") if name.strip()))
    if len(names) > _MAX_WORKER_MODELS:
        raise ConfigError(f"{where} names at most {_MAX_WORKER_MODELS} models (got {len(names)})")
    for name in names:
        if not _MODEL_NAME.fullmatch(name):
            raise ConfigError(f"{where}: '{name[:40]}' is not a model name (1-32 lower-case letters, digits, '.', "
                              "'_' or '-')")  # fmt: skip
    return names


_MODEL_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")


def _host_names(raw: str) -> tuple[str, ...]:
    """Comma- or space-separated host names: ``play.example.org, 192.168.1.5, [fd00::5], *``; no ports."""
    names = []
    for item in raw.replace(",", " ").split():
        name = item.lower().rstrip(".")
        bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
        if bare != "*" and (not bare or any(c in "/@?#\\" for c in bare) or (":" in bare and not _is_ip(bare))):
            raise ConfigError(
                f"DREAMLOOM_WEB_ALLOWED_HOSTS lists host names without scheme or port, comma-separated (got {item!r})"
            )
        names.append(bare)
    return tuple(names)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _whole(env: Mapping[str, str], field: str, default: int, low: int, high: int) -> int:
    variable = ENVIRONMENT[field]
    raw = env.get(variable)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ConfigError(f"{variable} must be a whole number from {low} to {high} (got {raw!r})")
    return value
