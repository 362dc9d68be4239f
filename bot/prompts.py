"""An /imagine text as the jobs it starts: one per prompt of its ``{…}`` permutations, times ``--repeat``."""

from __future__ import annotations

from engine.prompt import ImagineRequest, PromptError, expand_permutations, parse

__all__ = ["MAX_JOBS_PER_PROMPT", "imagine_requests"]

MAX_JOBS_PER_PROMPT = 10  # as the bot's DREAMLOOM_BOT_MAX_JOBS_PER_COMMAND default


def imagine_requests(text: str, limit: int = MAX_JOBS_PER_PROMPT) -> list[ImagineRequest]:
    """Every job of ``text``, each checked, before any is submitted. Raises ``PromptError``."""
    requests = [parse(prompt) for prompt in expand_permutations(text)]
    jobs = [request for request in requests for _ in range(request.repeat)]
    if len(jobs) > limit:
        raise PromptError(None, f"This prompt makes {len(jobs)} jobs ({{…}} and --repeat); at most {limit} at once")
    return jobs
