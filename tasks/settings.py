"""The job system's configuration, read once from the environment, typed, with secrets that never print."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from engine.errors import ConfigError

__all__ = ["DEFAULT_LOAD_SECONDS", "MAX_LOAD_ALLOWANCE_SECONDS", "Secret", "Settings", "read_switch", "redacted_url"]

# Seconds a worker may need to load a model of each family from its own disk before it has ever loaded it
# (tasks.routing adds them to a job's time limits when the job may have to wait for a load): generous, since
# a first job that fails "too slow" costs more than a limit that is too long. DREAMLOOM_MODEL_LOAD_SECONDS
# overrides them; a recorded load time replaces them once a worker has loaded the model.
DEFAULT_LOAD_SECONDS = {
    "sd15": 90.0, "sd2-base": 90.0, "sd2": 90.0, "sd-turbo": 90.0, "sdxl": 180.0, "sdxl-turbo": 180.0,
    "sd3": 300.0, "flux": 420.0, "demo": 30.0,
}  # fmt: skip
_UNKNOWN_FAMILY_LOAD_SECONDS = 420.0
# The most loading a job's limits include; the broker's visibility timeout counts it in.
MAX_LOAD_ALLOWANCE_SECONDS = 600


class Secret:
    """A value that is never shown: ``repr`` and ``str`` print ``'***'``."""

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class Settings:
    """Everything the job system reads from the environment (the names are in ``ENVIRONMENT``)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    data_dir: Path = Path("dreamloom-data")
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_prefix: str = ""
    s3_addressing_style: str = "auto"
    s3_access_key_id: Secret | None = None
    s3_secret_access_key: Secret | None = None
    max_running_per_user: int = 2
    max_queued_per_user: int = 10
    max_attempts: int = 3
    max_job_seconds: int = 1800
    seconds_per_megapixel_step: float = 1.0
    progress_interval: float = 1.0
    storage_retry_seconds: float = 60.0
    url_expiry_seconds: int = 3600
    # a finished job's record, per-user lists and message maps expire after this (0: never); buttons on older
    # results keep working from the job's job.json in storage
    record_retention_days: float = 7.0
    # a worker refreshes its running job's heartbeat; a second delivery takes the job over only once it is
    # this stale (or its process is gone)
    heartbeat_seconds: float = 30.0
    # 0: never recycle on a count; a recycled process reloads its models and repeats its compile warm-up
    worker_max_tasks_per_child: int = 0
    worker_max_memory_mb: int = 0
    spool_dir: Path = field(default_factory=lambda: Path(os.environ.get("TMPDIR", "/tmp")) / "dreamloom-spool")
    engine_factory: str = "engine.generate:Engine.from_env"
    metrics_port: int = 0  # a worker's /metrics and /healthz (0: off)
    metrics_host: str = "127.0.0.1"  # workers' and the bot's; deployments open it (0.0.0.0) for probes
    log_level: str = "INFO"
    log_format: str = "text"  # or "json", one object per line
    # Image prompts (tasks.fetch): hosts besides Discord's CDN, "host", "host:port" or "*.domain", comma-separated
    image_hosts: str = ""
    image_any_public_host: bool = False  # any host on a public address (ports 80 and 443)
    image_private_networks: str = ""  # CIDRs allowed although private, e.g. "10.1.2.0/24" (never metadata)
    image_fetch_seconds: float = 15.0  # one download, from lookup to last byte
    image_max_mb: int = 20
    image_max_pixels: int = 40_000_000
    # seconds to allow for loading a model, by family: "sdxl=240,flux=600", or one number for every family
    # ("" : DEFAULT_LOAD_SECONDS)
    model_load_seconds: str = ""

    def __repr__(self) -> str:
        """Every field, the Redis password shown as ``***`` (the S3 keys are ``Secret``s already)."""
        values = {item.name: getattr(self, item.name) for item in fields(self)}
        values["redis_url"] = redacted_url(self.redis_url)
        return f"Settings({', '.join(f'{name}={value!r}' for name, value in values.items())})"

    @property
    def record_retention_seconds(self) -> float:
        return self.record_retention_days * 86_400

    @property
    def visibility_timeout(self) -> int:
        """Seconds before Redis hands an unacknowledged job to another worker: above the longest job's
        hard time limit, which may include time to load the model (see tasks.routing.time_limits)."""
        return int((self.max_job_seconds + MAX_LOAD_ALLOWANCE_SECONDS) * 1.5) + 600

    def model_load_seconds_for(self, family: str) -> float:
        """The seconds to allow for loading a model of ``family`` that no worker has loaded yet."""
        table = _load_table(ENVIRONMENT["model_load_seconds"], self.model_load_seconds)
        if family in table:
            return table[family]
        if "*" in table:
            return table["*"]
        return DEFAULT_LOAD_SECONDS.get(family, _UNKNOWN_FAMILY_LOAD_SECONDS)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for item in fields(cls):
            name = ENVIRONMENT[item.name]
            raw = env.get(name)
            if raw is None or raw == "":
                continue
            values[item.name] = _convert(item.name, name, raw)
        return cls(**values)  # type: ignore[arg-type]

    def to_env(self) -> dict[str, str]:
        """These settings as the environment ``from_env`` reads (secrets revealed): for a child process, such
        as a worker a benchmark or a test starts with them."""
        env = {}
        for name, variable in ENVIRONMENT.items():
            value = getattr(self, name)
            if value is not None:
                env[variable] = value.reveal() if isinstance(value, Secret) else str(value)
        return env


def redacted_url(url: str) -> str:
    """``url`` with its password, in the user part or a ``password=`` parameter, shown as ``***``."""
    head, mark, query = url.partition("?")
    try:
        parts = urlsplit(head)
        if parts.password is not None:
            shown = f"{parts.username or ''}:***@{parts.netloc.rpartition('@')[2]}"
            head = head.replace(parts.netloc, shown, 1)
    except ValueError:
        return "***"
    if "password" in query.lower():
        pairs = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
    return head + mark + query


# Settings field -> environment variable.
ENVIRONMENT = {
    "redis_url": "REDIS_URL",
    "data_dir": "DREAMLOOM_DATA_DIR",
    "s3_bucket": "DREAMLOOM_S3_BUCKET",
    "s3_endpoint_url": "DREAMLOOM_S3_ENDPOINT_URL",
    "s3_region": "DREAMLOOM_S3_REGION",
    "s3_prefix": "DREAMLOOM_S3_PREFIX",
    "s3_addressing_style": "DREAMLOOM_S3_ADDRESSING_STYLE",
    "s3_access_key_id": "AWS_ACCESS_KEY_ID",
    "s3_secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "max_running_per_user": "DREAMLOOM_MAX_RUNNING_PER_USER",
    "max_queued_per_user": "DREAMLOOM_MAX_QUEUED_PER_USER",
    "max_attempts": "DREAMLOOM_MAX_ATTEMPTS",
    "max_job_seconds": "DREAMLOOM_MAX_JOB_SECONDS",
    "seconds_per_megapixel_step": "DREAMLOOM_SECONDS_PER_MEGAPIXEL_STEP",
    "progress_interval": "DREAMLOOM_PROGRESS_INTERVAL",
    "storage_retry_seconds": "DREAMLOOM_STORAGE_RETRY_SECONDS",
    "url_expiry_seconds": "DREAMLOOM_URL_EXPIRY_SECONDS",
    "record_retention_days": "DREAMLOOM_RECORD_RETENTION_DAYS",
    "heartbeat_seconds": "DREAMLOOM_HEARTBEAT_SECONDS",
    "worker_max_tasks_per_child": "DREAMLOOM_WORKER_MAX_TASKS_PER_CHILD",
    "worker_max_memory_mb": "DREAMLOOM_WORKER_MAX_MEMORY_MB",
    "spool_dir": "DREAMLOOM_SPOOL_DIR",
    "engine_factory": "DREAMLOOM_ENGINE_FACTORY",
    "metrics_port": "DREAMLOOM_METRICS_PORT",
    "metrics_host": "DREAMLOOM_METRICS_HOST",
    "log_level": "DREAMLOOM_LOG_LEVEL",
    "log_format": "DREAMLOOM_LOG_FORMAT",
    "image_hosts": "DREAMLOOM_IMAGE_HOSTS",
    "image_any_public_host": "DREAMLOOM_IMAGE_ANY_PUBLIC_HOST",
    "image_private_networks": "DREAMLOOM_IMAGE_PRIVATE_NETWORKS",
    "image_fetch_seconds": "DREAMLOOM_IMAGE_FETCH_SECONDS",
    "image_max_mb": "DREAMLOOM_IMAGE_MAX_MB",
    "image_max_pixels": "DREAMLOOM_IMAGE_MAX_PIXELS",
    "model_load_seconds": "DREAMLOOM_MODEL_LOAD_SECONDS",
}

_INTS = {"max_running_per_user", "max_queued_per_user", "max_attempts", "max_job_seconds", "url_expiry_seconds",
         "worker_max_tasks_per_child", "worker_max_memory_mb", "metrics_port", "image_max_mb",
         "image_max_pixels"}  # fmt: skip
_FLOATS = {"seconds_per_megapixel_step", "progress_interval", "storage_retry_seconds", "record_retention_days",
           "heartbeat_seconds", "image_fetch_seconds"}  # fmt: skip
_PATHS = {"data_dir", "spool_dir"}
_SECRETS = {"s3_access_key_id", "s3_secret_access_key"}
_SWITCHES = {"image_any_public_host"}
_ON, _OFF = ("on", "1", "true", "yes"), ("off", "0", "false", "no")


def read_switch(variable: str, raw: str) -> bool:
    """An on/off setting (``on``/``off``, ``1``/``0``, ``true``/``false``, ``yes``/``no``), or ``ConfigError``."""
    value = raw.strip().lower()
    if value not in _ON + _OFF:
        raise ConfigError(f"{variable} must be on or off (or 1 or 0; got {raw!r})")
    return value in _ON


_MAX_LOAD_TABLE = 64  # entries: there are a handful of families


def _load_table(variable: str, raw: str) -> dict[str, float]:
    """``"sdxl=240,flux=600"`` -> {family: seconds}; a bare number applies to every family (key ``*``)."""
    text = raw.strip()
    if not text:
        return {}
    items = [item.strip() for item in text.split(",") if item.strip()]
    if len(items) > _MAX_LOAD_TABLE:
        raise ConfigError(f"{variable} names at most {_MAX_LOAD_TABLE} families (got {len(items)})")
    table: dict[str, float] = {}
    for item in items:
        family, equals, seconds = item.rpartition("=") if "=" in item else ("*", "=", item)
        family = family.strip()
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not equals or not family or not 0 <= value <= MAX_LOAD_ALLOWANCE_SECONDS or value != value:
            raise ConfigError(
                f"{variable} takes family=seconds pairs such as 'sdxl=240,flux=600', or one number of seconds, "
                f"each 0-{MAX_LOAD_ALLOWANCE_SECONDS} (got {item[:40]!r})"
            )
        table[family] = value
    return table


def _convert(field_name: str, variable: str, raw: str) -> object:
    if field_name == "model_load_seconds":
        _load_table(variable, raw)  # refused here, at start, rather than at the first job
        return raw
    if field_name in _SWITCHES:
        return read_switch(variable, raw)
    try:
        if field_name in _INTS:
            value: object = int(raw)
            if int(raw) < 0:
                raise ValueError
        elif field_name in _FLOATS:
            value = float(raw)
            if float(raw) < 0:
                raise ValueError
        else:
            value = raw
    except ValueError:
        kind = "a whole number" if field_name in _INTS else "a number"
        raise ConfigError(f"{variable} must be {kind}, 0 or more (got {raw!r})") from None
    if field_name in _PATHS:
        return Path(raw)
    if field_name in _SECRETS:
        return Secret(raw)
    return value
