"""Expected errors of a job request, as people see them: a short title and one line that says what to change.

The playground shows them as an error card, the CLI prints ``Title: line`` and exits with ``exit_code``
(2 for a request that cannot run as written, such as a bad parameter).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine import errors as engine_errors
from engine.prompt import PromptError
from tasks import errors as job_errors

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True)
class Explanation:
    title: str
    message: str
    http_status: int
    exit_code: int

    def __str__(self) -> str:
        return f"{self.title}: {self.message}"

    def to_dict(self) -> dict[str, str]:
        return {"title": self.title, "error": self.message}


def explain(exc: Exception) -> Explanation | None:
    """The explanation of an expected error, or None for a bug (which the caller lets propagate)."""
    message = str(exc)
    if isinstance(exc, PromptError):
        return Explanation("Invalid parameter" if exc.param else "Invalid prompt", message, 400, 2)
    if isinstance(exc, engine_errors.UnknownModel):
        return Explanation("Invalid parameter", f"{message}; pick one with --v or --niji", 400, 2)
    if isinstance(exc, engine_errors.Blocked):
        return Explanation("Banned prompt", message.removeprefix("Banned prompt: "), 400, 2)
    if isinstance(exc, job_errors.InvalidFollowUp | engine_errors.InvalidFollowUp):
        return Explanation("Not possible", message, 400, 2)
    if isinstance(exc, job_errors.UnknownJob):
        return Explanation("Unknown job", message, 404, 2)
    if isinstance(exc, job_errors.NotAllowed):
        return Explanation("Not allowed", message, 403, 1)
    if isinstance(exc, job_errors.QueueFull):
        return Explanation("Queue full", message.removeprefix("Queue full: "), 429, 1)
    if isinstance(exc, job_errors.StorageError):
        return Explanation("Storage unavailable", message, 503, 1)
    if isinstance(exc, engine_errors.ConfigError):
        return Explanation("Configuration error", message, 500, 1)
    if isinstance(exc, job_errors.JobError | engine_errors.EngineError):
        return Explanation("Job failed", message, 500, 1)
    return None
