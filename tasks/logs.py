"""Logging for dreamloom processes: every line carries the id of the job it is about (or "-").

    setup_logging("INFO", "json")     # DREAMLOOM_LOG_LEVEL / DREAMLOOM_LOG_FORMAT in the commands
    with job_context(job.id):
        log.info("rendering")         # ... job=3f2a... rendering

Text lines read ``2026-11-21 09:30:00 INFO tasks.worker job=3f2a…: message``; JSON lines are one object
per line (time, level, logger, job, message, and the traceback when there is one), for log collectors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from contextvars import ContextVar

from engine.errors import ConfigError

__all__ = ["JobContextFilter", "job_context", "setup_logging"]

JOB_ID: ContextVar[str | None] = ContextVar("dreamloom_job_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s job=%(job_id)s: %(message)s"


@contextlib.contextmanager
def job_context(job_id: str) -> Iterator[None]:
    token = JOB_ID.set(job_id)
    try:
        yield
    finally:
        JOB_ID.reset(token)


class JobContextFilter(logging.Filter):
    """Adds ``record.job_id`` to every record (also records from libraries)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            record.job_id = JOB_ID.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "job": getattr(record, "job_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", fmt: str = "text", path: str | None = None) -> None:
    """Log to ``path`` (default: stderr) in ``fmt`` ("text" or "json"), every line with its job id."""
    if fmt not in ("text", "json"):
        raise ConfigError(f"DREAMLOOM_LOG_FORMAT must be text or json (got {fmt!r})")
    handler: logging.Handler = logging.FileHandler(path) if path else logging.StreamHandler(sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
