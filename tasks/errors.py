"""The job system's exceptions; each message says what to do.

JobError
├── UnknownJob        no such job (a typo, or a job that was deleted)
├── NotAllowed        the job belongs to someone else
├── QueueFull         the user already has the most jobs waiting that they may
├── InvalidFollowUp   the parent cannot be followed up that way (not finished, wrong tile or action)
└── StorageError      artifacts could not be read or written (``transient``: a retry may help;
                      ``missing``: there is nothing under that key)
"""

from __future__ import annotations


class JobError(Exception):
    """Base class of the job system's expected errors."""


class UnknownJob(JobError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"Unknown job {job_id!r}: it does not exist or was deleted")
        self.job_id = job_id

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id,))


class NotAllowed(JobError):
    pass


class QueueFull(JobError):
    pass


class InvalidFollowUp(JobError):
    pass


class StorageError(JobError):
    def __init__(self, message: str, transient: bool = False, missing: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
        self.missing = missing

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.transient, self.missing))
