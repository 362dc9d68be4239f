"""The engine's exceptions. Every message says what to change.

    EngineError
    ├── ConfigError        the model registry or an engine setting is wrong (names the file/variable and key)
    ├── UnknownModel       a --v/--niji alias that no registry entry has (lists the known ones)
    ├── ModelLoadError     a registry entry whose weights cannot be loaded (says where it looked)
    ├── InvalidFollowUp    a follow-up that cannot start from this image (bad tile, scale, direction, size)
    ├── Blocked            the prompt or the images were refused by the safety settings
    └── Cancelled          the job was cancelled; raised within one denoising step of the request

``engine.prompt.PromptError`` (a ValueError) stays separate: it is raised before any engine work.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of everything the engine raises on purpose."""


class ConfigError(EngineError):
    pass


class UnknownModel(EngineError):
    def __init__(self, alias: str, known: list[str]) -> None:
        listed = ", ".join(known) if known else "none (configure DREAMLOOM_MODEL or DREAMLOOM_MODELS)"
        super().__init__(f"Unknown model '{alias}': known models are {listed}")
        self.alias = alias
        self.known = known

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.alias, self.known))


class ModelLoadError(EngineError):
    pass


class InvalidFollowUp(EngineError):
    pass


class Blocked(EngineError):
    pass


class Cancelled(EngineError):
    def __init__(self, step: int, total: int) -> None:
        super().__init__(f"Cancelled at step {step} of {total}")
        self.step = step
        self.total = total

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.step, self.total))
