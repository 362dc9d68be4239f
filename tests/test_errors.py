"""The one error vocabulary (engine.errors): every class has a unique name, a title, an HTTP status and an exit
status; refusals exit 2; what members see never holds a path, a host or a bucket."""

from __future__ import annotations

import pickle

import pytest

import bot.cli.services
import bot.discord.messages
import bot.web.app
import tasks.embedded_redis
from engine import errors
from engine.errors import (
    Cancelled,
    ConfigError,
    DreamloomError,
    ModelLoadError,
    PromptError,
    Refusal,
    StorageError,
    UnknownJob,
    UnknownModel,
)

# Front doors and the job system add their own classes under the root.
OUTSIDE_THE_ENGINE = (
    bot.discord.messages.NotHere,
    bot.web.app.BadRequest,
    bot.cli.services.ServiceError,
    bot.cli.services.NoService,
    tasks.embedded_redis.EmbeddedRedisError,
)


def every_error_class() -> list[type[DreamloomError]]:
    found: list[type[DreamloomError]] = []
    pending: list[type[DreamloomError]] = [DreamloomError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_has_a_unique_name_a_title_and_statuses():
    classes = every_error_class()
    assert set(OUTSIDE_THE_ENGINE) <= set(classes)
    assert {name for name in errors.__all__ if name[0].isupper()} <= {cls.__name__ for cls in classes}
    names = [cls.__name__ for cls in classes]
    assert len(names) == len(set(names)), f"two error classes share a name: {sorted(names)}"
    for cls in classes:
        assert cls.title[:1].isupper(), cls
        assert 400 <= cls.http_status < 600, cls
        assert cls.exit_code == (2 if issubclass(cls, Refusal) else 1), cls
        if cls is not Refusal and issubclass(cls, Refusal):
            assert cls.http_status < 500, f"{cls.__name__} refuses a request: a 4xx status"


def test_a_prompt_error_is_a_value_error_titled_by_what_is_at_fault():
    assert isinstance(PromptError("--chaos", "bad"), ValueError)
    assert PromptError("--chaos", "bad").title == "Invalid parameter"
    assert PromptError(None, "empty").title == "Invalid prompt"


@pytest.mark.parametrize(
    "error",
    [
        PromptError("--chaos", "--chaos must be a whole number from 0 to 100 (got 150)"),
        UnknownModel("v7", ["v6", "niji"]),
        UnknownJob("0" * 32),
        Cancelled(3, 20),
        StorageError("Storage unreachable for 2 s while trying to store jobs/x/1.webp", transient=True),
    ],
)
def test_errors_cross_process_boundaries_intact(error):
    """Celery and multiprocessing pickle exceptions: custom fields and messages survive."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert vars(copy) == vars(error)


@pytest.mark.parametrize(
    "error",
    [
        StorageError("Cannot read jobs/ab/grid.jpg from /srv/dreamloom/artifacts: Permission denied"),
        StorageError(
            "Storage refused to store jobs/ab/1.webp: AccessDenied; check bucket private-bucket at http://10.0.0.5:9000"
        ),
        StorageError("Nothing stored for jobs/ab/job.json in bucket private-bucket at http://minio:9000", missing=True),
        ModelLoadError("cannot load model 'v6' from /models/sdxl: no such folder"),
        ConfigError("/etc/dreamloom/models.toml is not valid TOML: line 3"),
    ],
)
def test_what_members_see_holds_no_path_host_or_bucket(error):
    assert error.public != str(error)
    for detail in ("/srv", "/models", "/etc", "10.0.0.5", "minio", "private-bucket", "jobs/"):
        assert detail not in error.public
    assert error.public.endswith(("moment", "why", "fix", "stored"))


def test_the_message_is_the_public_line_when_it_holds_nothing_internal():
    refusal = UnknownModel("v7", ["v6", "niji"])
    assert refusal.public == str(refusal)
    assert str(refusal) == "Unknown model 'v7': known models are v6, niji; pick one with --v or --niji"
