"""Every environment variable dreamloom reads, in one catalogue.

Each part keeps the names it reads next to its settings (``tasks.settings.ENVIRONMENT``,
``bot.discord.settings.BOT_ENVIRONMENT``, ``bot.cli.settings.ENVIRONMENT``, and the engine's, listed here
because its readers must stay torch-free to import); this module joins them for the deployment files and
``deploy/.env.example``, which the tests hold to it.
"""

from __future__ import annotations

from bot.cli.settings import ENVIRONMENT as SERVICE_ENVIRONMENT
from bot.discord.settings import BOT_ENVIRONMENT
from tasks.settings import ENVIRONMENT as JOB_ENVIRONMENT

__all__ = ["ENGINE_VARIABLES", "OTHER_VARIABLES", "known_variables"]

# Read by engine.registry, engine.generate and engine.safety.
ENGINE_VARIABLES = (
    "DREAMLOOM_MODEL",
    "DREAMLOOM_MODELS",
    "DREAMLOOM_MODEL_FAMILY",
    "DREAMLOOM_DEVICE",
    "DREAMLOOM_MAX_LOADED_MODELS",
    "DREAMLOOM_PREVIEW_EVERY",
    "DREAMLOOM_EMBEDDING_CACHE_MB",
    "DREAMLOOM_BLOCKLIST",
)
# Not dreamloom's own, but honoured by what it runs (Hugging Face, Prometheus, CUDA).
OTHER_VARIABLES = ("HF_HOME", "HF_HUB_OFFLINE", "PROMETHEUS_MULTIPROC_DIR", "CUDA_VISIBLE_DEVICES")


def known_variables() -> set[str]:
    return {
        *JOB_ENVIRONMENT.values(),
        *BOT_ENVIRONMENT.values(),
        *SERVICE_ENVIRONMENT.values(),
        *ENGINE_VARIABLES,
        *OTHER_VARIABLES,
    }
