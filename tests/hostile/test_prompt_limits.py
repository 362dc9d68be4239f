"""Hostile prompts (issue 17, items 2, 5, 7 and 12): prompts too large for a worker, banned phrases in disguise,
and values that used to crash the parser instead of being refused with a message that says what to fix.

The front doors are the real ones: the playground served on loopback, the command line's ``main``, the Discord
bot in process against the Discord API double; all over a real redis-server. No worker is needed: every
request here is refused before a job exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from bot.discord.prefs import GuildConfig, Preferences, apply_preferences
from bot.web.app import create_app
from engine.conditioning import EmbeddingCache
from engine.errors import BannedPrompt, PromptError
from engine.generate import Engine
from engine.prompt import ImagineRequest, WeightedPrompt, parse, requests_of
from engine.safety import Blocklist
from tasks.client import JobClient
from tests.support.playground import http, local_settings, null_registry, serve_in_thread

# --- the job client and the playground, over a real Redis ----------------------------------------------------


@pytest.fixture
def job_client(redis_url: str, tmp_path: Path) -> Iterator[JobClient]:
    _, registry = null_registry(tmp_path)
    client = JobClient(local_settings(redis_url, tmp_path), registry=registry, blocklist=Blocklist(["badword"]))
    yield client
    client.close()


@pytest.fixture
def playground(job_client: JobClient) -> Iterator[str]:
    with serve_in_thread(create_app(job_client, user="alice")) as url:
        yield url


def post_raw(url: str, body: bytes) -> tuple[int, Any]:
    """POST ``body`` as it is (JSON that ``json.dumps`` would not write), answering (status, parsed JSON)."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def refusal(text: str) -> PromptError:
    with pytest.raises(PromptError) as caught:
        requests_of(text)
    return caught.value


def url_list(count: int) -> str:
    return " ".join(f"https://x.co/{n}.png" for n in range(count))


# --- item 2: image prompts --------------------------------------------------------------------------------------


def test_item_02_at_most_five_image_urls_in_a_prompt(job_client: JobClient):
    """A prompt with 6 (or 138) image URLs is refused, naming the limit of 5, before anything is fetched."""
    assert len(parse(f"{url_list(5)} a cat").image_urls) == 5
    for count in (6, 138):
        error = refusal(f"{url_list(count)} a cat --iw 3")
        assert str(error) == f"The prompt starts with {count} image URLs; the limit is 5, remove some"
        assert error.title == "Invalid prompt"
    # A request built in code, past parse, is refused where every front door submits.
    urls = tuple(f"https://cdn.discordapp.com/{n}.png" for n in range(6))
    with pytest.raises(PromptError, match="the limit is 5"):
        job_client.submit(ImagineRequest("a cat", (WeightedPrompt("a cat"),), image_urls=urls), owner="mallory")
    assert job_client.jobs_of("mallory") == [], "no job was made"


# --- item 5: '::' parts, prompt length, the embedding cache -----------------------------------------------------


def test_item_05_weighted_parts_are_capped(job_client: JobClient):
    """601 '::' parts in 1,801 characters are refused with a message naming the limit of 10 parts."""
    text = "a::" * 600 + "a"
    assert len(text) < 4000, "the parts, not the length, are what is refused"
    assert str(refusal(text)) == "The prompt has 601 '::' parts; the limit is 10 parts, join or remove some"
    ten = " ".join(f"part{n}::2" for n in range(10))  # a weight after the last part adds no part
    assert len(parse(ten).parts) == 10
    assert "has 11 '::' parts" in str(refusal(ten + " eleven"))
    many = tuple(WeightedPrompt(f"p{n}") for n in range(11))
    with pytest.raises(PromptError, match="the limit is 10 parts"):
        job_client.submit(ImagineRequest("p", many), owner="mallory")
    assert job_client.jobs_of("mallory") == []


def test_item_05_prompt_length_is_capped_at_every_front_door(
    job_client: JobClient, playground: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """A prompt over 4,000 characters is refused, naming the limit, by the parser all front doors share, by the
    job client they all submit to, by the playground's API and by the command line; a 1 MiB prompt too."""
    limit = "the limit is 4,000 characters"
    assert str(refusal("x" * 4001)) == f"The prompt is 4,001 characters long; {limit}, shorten it"
    assert requests_of("x" * 4000)[0].prompt == "x" * 4000
    with pytest.raises(PromptError, match=limit):
        parse("a lighthouse " * 400)
    with pytest.raises(PromptError, match=limit):  # {…} expansion never sees it
        requests_of("{" + "a, " * 2000 + "b}")

    # The job client: the path every front door submits through, for a request made in code.
    with pytest.raises(PromptError, match=limit):
        job_client.submit(ImagineRequest("x" * 5000, (WeightedPrompt("x" * 5000),)), owner="mallory")
    with pytest.raises(PromptError, match=limit):
        job_client.submit(ImagineRequest("a cat", (WeightedPrompt("a cat"),), negative="y" * 5000), owner="mallory")

    # The playground's API, with a 1 MiB prompt (just under its body limit).
    status, body = http(f"{playground}/api/imagine", {"prompt": "a cat " * 174_000})
    assert (status, body["title"]) == (400, "Invalid prompt")
    assert body["error"] == f"The prompt is 1,043,999 characters long; {limit}, shorten it"

    # The command line: refused before any job system is looked for (nothing listens at this REDIS_URL).
    from bot.cli.main import main

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")
    assert main(["imagine", "a cat " * 1000]) == 2
    assert f"Invalid prompt: The prompt is 6,000 characters long; {limit}" in capsys.readouterr().err
    assert job_client.jobs_of("mallory") == []
    assert job_client.jobs_of("alice") == []


def embedding(texts: int, dim: int = 64) -> dict[str, torch.Tensor]:
    """What a text encoder gives for ``texts`` texts: (texts, 77, dim) embeddings, pooled (texts, dim)."""
    return {"prompt_embeds": torch.randn(texts, 77, dim), "pooled_prompt_embeds": torch.randn(texts, dim)}


def test_item_05_the_embedding_cache_is_bounded_by_bytes():
    """Filled with hundreds of encoded prompts of every size, the cache never holds more bytes than its bound,
    dropping the least recently used first; the bound is a setting with a documented default."""
    bound = 2 * 2**20
    cache = EmbeddingCache(max_bytes=bound)
    assert cache.max_bytes == bound
    kept_warm = ("a lighthouse",)
    put: dict[tuple[str, ...], dict[str, torch.Tensor]] = {kept_warm: embedding(1)}
    cache.put(kept_warm, put[kept_warm])
    for n in range(300):
        texts = tuple(f"prompt {n} part {p}" for p in range(1 + n % 12))
        put[texts] = embedding(len(texts))
        cache.put(texts, put[texts])
        assert cache.nbytes <= bound, f"after {n + 1} prompts the cache holds {cache.nbytes} bytes"
        assert cache.get(texts) is put[texts]
        assert cache.get(kept_warm) is not None, "a prompt in use is not the one dropped"
    assert 10 < len(cache) < 300, "it dropped prompts, and kept as many as fit"
    held = [encoded for texts, encoded in put.items() if cache.get(texts) is not None]
    assert len(held) == len(cache)
    assert sum(t.nbytes for encoded in held for t in encoded.values()) <= cache.nbytes <= bound
    assert cache.get(("prompt 0 part 0",)) is None, "the least recently used went first"

    cache.put(("huge",), embedding(601))  # 601 parts: more than the whole cache holds
    assert cache.get(("huge",)) is None
    assert cache.nbytes <= bound

    assert EmbeddingCache().max_bytes == 256 * 2**20, "the default of DREAMLOOM_EMBEDDING_CACHE_MB (docs/models.md)"
    engine = Engine.from_env({"DREAMLOOM_EMBEDDING_CACHE_MB": "3", "DREAMLOOM_DEVICE": "cpu"})
    assert engine.models.embedding_cache_bytes == 3 * 2**20


# --- item 7: banned phrases in disguise -------------------------------------------------------------------------

DISGUISES = [
    "a bad{}word",  # empty braces
    "a b{a}dword",  # a one-option group
    "a bad\u200bword",  # zero-width space
    "a bad\u2060word",  # word joiner
    "a bad\u00adword",  # soft hyphen
    "a bad\ufe0fword",  # variation selector
    "a b\u0430dword",  # Cyrillic a
    "a \uff42\uff41\uff44\uff57\uff4f\uff52\uff44",  # fullwidth
    "a \U0001d41b\U0001d41a\U0001d41d\U0001d430\U0001d428\U0001d42b\U0001d41d",  # mathematical bold
    "a BADWORD",
]


def test_item_07_banned_phrases_are_found_in_disguise(job_client: JobClient):
    """Braces, zero-width and invisible characters, look-alike letters and a /settings suffix do not get a
    banned phrase past the operator's list or a server's list; the phrase itself is named."""
    server = GuildConfig(blocklist=frozenset({"badword", "forbidden fruit"}))
    for text in DISGUISES:
        requests = requests_of(text)
        with pytest.raises(BannedPrompt, match="'badword' is not allowed here"):
            job_client.submit(requests[0], owner="mallory")
        with pytest.raises(BannedPrompt, match="'badword' is not allowed on this server"):
            server.check_banned(requests)
    # A member's /settings suffix is part of every prompt they send.
    with_suffix = requests_of(apply_preferences("a cat", Preferences(suffix="in a bad\u200bword style")))
    with pytest.raises(BannedPrompt, match="'badword'"):
        server.check_banned(with_suffix)
    # '::' splits a phrase into parts the model still blends.
    with pytest.raises(BannedPrompt, match="'forbidden fruit'"):
        server.check_banned([parse("forbidden:: fruit")])
    with pytest.raises(BannedPrompt, match="'forbidden fruit'"):
        server.check_banned([parse("a forbidden\u00a0\u200dfruit")])
    assert job_client.jobs_of("mallory") == [], "no job was made"
    # What is not banned still runs, and --no may name a banned phrase.
    fine = requests_of("a good word, badwords and a bad --no badword")
    server.check_banned(fine)
    assert job_client.submit(fine[0], owner="alice").request.negative == "badword"


@dataclass
class DiscordWorld:
    double: Any

    async def answer(self, name: str, options: dict[str, Any]) -> dict[str, Any]:
        """The bot's answer to ``/name``: its embed, or ``{"title": None, "description": the text}``."""
        interaction = await self.double.slash(name, options)

        def answered() -> Any:
            return next((m for m in interaction.messages if not m.loading and (m.embeds or m.content)), None)

        message = await self.double.wait_for(answered, timeout=30, what=f"the answer to /{name}")
        return dict(message.embeds[0]) if message.embeds else {"title": None, "description": message.content}


@pytest.fixture
def server_client(redis_url: str, tmp_path: Path) -> Iterator[JobClient]:
    """A job client with no operator blocklist: only a server's own banned phrases apply."""
    _, registry = null_registry(tmp_path)
    client = JobClient(local_settings(redis_url, tmp_path), registry=registry, blocklist=Blocklist())
    yield client
    client.close()


@pytest.fixture
async def discord_bot(discord_double: Any, server_client: JobClient) -> AsyncIterator[DiscordWorld]:
    """The real bot, in this process, logged in to the Discord double and submitting to ``server_client``."""
    from bot.discord.launcher import run_discord_bot
    from bot.discord.settings import BotSettings
    from tasks.settings import Secret

    task = asyncio.create_task(run_discord_bot(BotSettings(token=Secret(discord_double.token)), server_client))
    try:
        await discord_double.wait_until_connected(timeout=30)
        await discord_double.wait_for(lambda: discord_double.commands(), timeout=30, what="the bot's commands")
        yield DiscordWorld(discord_double)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.anyio
async def test_item_07_discord_checks_the_prompts_it_will_submit(discord_bot: DiscordWorld, server_client: JobClient):
    """On Discord, a server's banned phrase is refused in braces, behind a zero-width space and in the member's
    own /settings suffix: the check reads each prompt as it will be submitted."""
    await discord_bot.answer("admin block", {"phrase": "badword"})
    for prompt in ("a bad{}word", "a b{a}dword", "a bad\u200bword", "a b\u0430dword"):
        embed = await discord_bot.answer("imagine", {"prompt": prompt})
        assert embed["title"] == "Banned prompt", prompt
        assert "'badword' is not allowed on this server" in embed["description"]
    await discord_bot.answer("settings", {"suffix": "in the style of badword"})
    embed = await discord_bot.answer("imagine", {"prompt": "a quiet harbour"})
    assert embed["title"] == "Banned prompt"
    assert server_client.jobs_of(str(discord_bot.double.user.id)) == [], "no job was made"


# --- item 12: values that used to raise ValueError, OverflowError or RecursionError ------------------------------


def test_item_12_hostile_values_get_a_clear_refusal(job_client: JobClient, playground: str):
    """Thousands of digits in --ar and --seed, an index of 1e400, JSON nested 100,000 deep, a prompt that is
    not text and an unknown mode are each refused with a message that says what to fix, never a crash or 500."""
    sides = "1" + "0" * 1900
    error = refusal(f"a cat --ar {sides}:{sides}")
    assert error.param == "--aspect"
    assert str(error).startswith("--aspect must be two whole numbers W:H, each from 1 to 10000")
    for text in (f"a cat --ar {'1' * 5000}:1", f"a cat --seed {'0' * 5000}7"):
        assert "the limit is 4,000 characters" in str(refusal(text))
    assert parse(f"a cat --seed {'0' * 3900}7 --ar 0016:09").seed == 7, "leading zeros are still a number"
    with pytest.raises(PromptError, match="mode must be one of fast, relax"):
        job_client.submit(parse("a cat"), owner="mallory", mode="turbo")

    answers = [
        post_raw(f"{playground}/api/imagine", json.dumps({"prompt": f"a cat --ar {'9' * 5000}:1"}).encode()),
        post_raw(f"{playground}/api/imagine", json.dumps({"prompt": f"a cat --seed {'0' * 5000}7"}).encode()),
        post_raw(f"{playground}/api/jobs/{'0' * 32}/actions", b'{"action": "separate", "index": 1e400}'),
        post_raw(f"{playground}/api/jobs/{'0' * 32}/actions", b'{"action": "separate", "index": -Infinity}'),
        post_raw(f"{playground}/api/imagine", b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
        post_raw(f"{playground}/api/imagine", b'{"prompt": {"text": "a cat"}}'),
        post_raw(f"{playground}/api/imagine", b'{"prompt": "a cat", "mode": "turbo"}'),
    ]
    expected = [
        "the limit is 4,000 characters",
        "the limit is 4,000 characters",
        "action, index, scale, aspect or direction is not valid",
        "action, index, scale, aspect or direction is not valid",
        "the body nests too deeply",
        "prompt must be a string",
        "mode must be one of fast, relax",
    ]
    for (status, body), message in zip(answers, expected, strict=True):
        assert status == 400, (message, body)
        assert message in body["error"]
    assert job_client.jobs_of("mallory") == [], "no job was made"
    assert job_client.jobs_of("alice") == [], "no job was made"
