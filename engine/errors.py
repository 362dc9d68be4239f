"""dreamloom's one error vocabulary: every error a person may see, and what each front door does with it.

Every expected failure is a ``DreamloomError``. Its class carries the short title people see ("Invalid
parameter", "Queue full"), the HTTP status the web front doors answer with and the exit status of the
command line, so no front door maps errors by hand. ``public`` is the line a member of a community server
may see: it never names a path, a host or a bucket; ``str(error)`` keeps those details for the operator
(the log, the command line).

    DreamloomError                  title                 HTTP  exit
    ├── Refusal                     a request that cannot run as asked; nothing was started    400   2
    │   ├── PromptError             Invalid parameter     400   2   a bad prompt or parameter (.param)
    │   ├── UnknownModel            Invalid parameter     400   2   --v/--niji names no model
    │   ├── BannedPrompt            Banned prompt         400   2   the prompt uses a blocked phrase
    │   ├── InvalidFollowUp         Not possible          400   2   that image cannot be followed up so
    │   ├── UnknownJob              Unknown job           404   2
    │   ├── NotAllowed              Not allowed           403   2   someone else's job
    │   └── QueueFull               Queue full            429   2   the owner has the most jobs waiting
    ├── JobFailed                   Job failed            500   1   a started job could not finish
    │   ├── ImagePromptError        Job failed            500   1   an image prompt could not be used
    │   ├── UnsafeImages            Blocked by the safety check      the safety check withheld images
    │   └── Cancelled               Cancelled             500   1   within one step of the request
    ├── StorageError                Storage unavailable   503   1   (.transient: a retry may help;
    │                                                               .missing: nothing under that key)
    ├── ModelLoadError              Model unavailable     503   1   a model's weights cannot be loaded
    └── ConfigError                 Configuration error   500   1   a setting or the model registry is wrong

Front doors add a few of their own under the same root (``bot.discord``'s ``NotHere``, the command line's
``ServiceError``); ``tasks.embedded_redis`` adds ``EmbeddedRedisError``. Anything that is not a
``DreamloomError`` is a bug: front doors log it and say "Something went wrong".
"""

from __future__ import annotations

__all__ = [
    "BannedPrompt",
    "Cancelled",
    "ConfigError",
    "DreamloomError",
    "ImagePromptError",
    "InvalidFollowUp",
    "JobFailed",
    "ModelLoadError",
    "NotAllowed",
    "PromptError",
    "QueueFull",
    "Refusal",
    "StorageError",
    "UnknownJob",
    "UnknownModel",
    "UnsafeImages",
]

EXIT_FAILED = 1
EXIT_REFUSED = 2


class DreamloomError(Exception):
    """The root of every error dreamloom raises on purpose; the message says what to change."""

    title: str = "Something went wrong"  # what people see above the message
    http_status: int = 500  # what the web front doors answer with
    exit_code: int = EXIT_FAILED  # what the command line exits with

    @property
    def public(self) -> str:
        """What a member of a community may be told: the message, unless it holds internal details."""
        return str(self)


class Refusal(DreamloomError):
    """A request that cannot run as asked. Nothing was started: no job exists for it."""

    title = "Not possible"
    http_status = 400
    exit_code = EXIT_REFUSED


class PromptError(Refusal, ValueError):
    """A prompt that cannot be run. ``param`` names the parameter at fault (``"--chaos"``), or is None when
    the prompt text itself is at fault."""

    def __init__(self, param: str | None, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message
        self.title = "Invalid parameter" if param else "Invalid prompt"

    def __reduce__(self) -> tuple[object, ...]:  # both fields survive pickling (Celery, multiprocessing)
        return (type(self), (self.param, self.message))


class UnknownModel(Refusal):
    title = "Invalid parameter"

    def __init__(self, alias: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none (configure DREAMLOOM_MODEL or DREAMLOOM_MODELS)"
        super().__init__(f"Unknown model '{alias}': known models are {listed}; pick one with --v or --niji")
        self.alias = alias
        self.known = known

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.alias, self.known))


class BannedPrompt(Refusal):
    title = "Banned prompt"


class InvalidFollowUp(Refusal):
    title = "Not possible"


class UnknownJob(Refusal):
    title = "Unknown job"
    http_status = 404

    def __init__(self, job_id: str) -> None:
        shown = job_id if len(job_id) <= 64 else job_id[:61] + "..."
        super().__init__(f"Unknown job {shown!r}: it does not exist or was deleted")
        self.job_id = job_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id,))


class NotAllowed(Refusal):
    title = "Not allowed"
    http_status = 403


class QueueFull(Refusal):
    title = "Queue full"
    http_status = 429


class JobFailed(DreamloomError):
    """A job that started could not finish; the message says why and, where there is something to do, what."""

    title = "Job failed"


class ImagePromptError(JobFailed):
    """An image prompt that could not be used. ``public`` is one line for every reason: the reason itself
    (an address refused, a connection refused, not an image) would tell a member what listens where on the
    worker's network, so only ``str(error)`` (the operator's log) has it."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"Could not use the image at {url}: {reason}")
        self.url = url
        self.reason = reason

    @property
    def public(self) -> str:
        shown = self.url if len(self.url) <= 200 else self.url[:199] + "…"
        return f"Could not use the image at {shown}; link a PNG, JPEG, GIF or WebP image uploaded to Discord"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.url, self.reason))


class UnsafeImages(JobFailed):
    title = "Blocked by the safety check"


class Cancelled(JobFailed):
    title = "Cancelled"

    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"Cancelled at step {step} of {total}")
        self.step = step
        self.total = total

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.step, self.total))


class StorageError(DreamloomError):
    """Artifacts could not be read or written. ``transient``: a retry may help; ``missing``: nothing is
    stored under that key. The message names the folder or bucket, so members get ``public`` instead."""

    title = "Storage unavailable"
    http_status = 503

    def __init__(self, message: str, transient: bool = False, missing: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.missing = missing

    @property
    def public(self) -> str:
        if self.missing:
            return "The images of that job are no longer stored"
        return "The image store could not be reached just now; try again in a moment"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.transient, self.missing))


class ModelLoadError(DreamloomError):
    title = "Model unavailable"
    http_status = 503

    @property
    def public(self) -> str:
        return "The model could not be loaded on this server; its operator's log says why"


class ConfigError(DreamloomError):
    title = "Configuration error"

    @property
    def public(self) -> str:
        return "This server's configuration has a problem; its operator's log says what to fix"
