"""The playground in a real headless Chromium (Debian's ``chromium``, driven by Playwright): type a prompt,
see its progress and its grid, press U1 and V2, see a bad parameter's error. Saves a screenshot as
``<tmp>/playground.png`` and ``artifacts/playground.png``."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.web.app import create_app
from engine.registry import ModelNotice
from tasks.client import JobClient
from tests.support.playground import local_settings, null_registry, painting_worker, serve_in_thread

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parent.parent / "artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium; ./dev test installs it)"
)


@pytest.fixture
def page_url(redis_url, tmp_path) -> Iterator[str]:
    _, registry = null_registry(tmp_path)
    settings = local_settings(redis_url, tmp_path)
    client = JobClient(settings, registry=registry)
    notice = ModelNotice("demo", "Test engine", "this page is served by a browser test, whose stand-in engine paints a "
                         "coloured shape per image.")  # fmt: skip
    app = create_app(client, user="you", notice=notice)
    with painting_worker(settings, registry, step_seconds=0.25), serve_in_thread(app) as url:
        yield url
    client.redis.close()


def test_a_job_in_the_page_from_prompt_to_follow_ups(page_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (its own --user-data-dir).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_url)
            expect(page.locator("#notice")).to_contain_text("Test engine: this page is served by a browser test")

            page.fill("#prompt", "a lighthouse at dusk --ar 16:9 --seed 7")
            page.press("#prompt", "Enter")
            grid = page.locator("article[data-action='imagine']")
            expect(grid).to_have_count(1)
            expect(grid.locator(".status")).to_contain_text("%) (fast)")  # live progress, e.g. "(50%) (fast)"
            expect(grid).to_have_attribute("data-status", "done")
            expect(grid.locator("img.result")).to_have_js_property("naturalWidth", 672)  # 2 x 336: the 16:9 grid
            expect(grid.locator("button.btn")).to_have_text(["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"])

            grid.get_by_role("button", name="U1", exact=True).click()
            single = page.locator("article[data-action='separate']")
            expect(single).to_have_attribute("data-status", "done")
            expect(single.locator(".content")).to_contain_text("Image #1")
            expect(single.get_by_role("button", name="Upscale (Subtle)")).to_be_visible()
            expect(grid.get_by_role("button", name="U1", exact=True)).to_have_class("btn used")

            grid.get_by_role("button", name="V2", exact=True).click()
            variation = page.locator("article[data-action='vary_strong']")
            expect(variation.locator(".content")).to_contain_text("Variations (Strong)")
            expect(variation).to_have_attribute("data-status", "done", timeout=20_000)
            expect(variation.locator(".reply")).to_contain_text("a lighthouse at dusk")
            expect(variation.locator("img.result")).to_be_visible()

            page.fill("#prompt", "a cat --chaos 150")
            page.press("#prompt", "Enter")
            error = page.locator("article.ephemeral .embed.error")
            expect(error.locator(".title")).to_have_text("Invalid parameter")
            expect(error.locator(".text")).to_have_text("--chaos must be a whole number from 0 to 100 (got 150)")

            page.set_viewport_size({"width": 1280, "height": 1640})  # the grid, U1's image, V2's grid, the error
            page.evaluate("document.getElementById('channel').scrollTop = 1e9")
            page.mouse.move(0, 0)
            screenshot = tmp_path / "playground.png"
            page.screenshot(path=str(screenshot))
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(screenshot, ARTIFACTS / "playground.png")
            assert screenshot.stat().st_size > 10_000

            page.click("#nav-gallery")
            expect(page.locator(".card")).to_have_count(3)
            page.locator(".card").last.click()
            expect(page.locator("#details-body")).to_contain_text("image seeds")
            assert errors == []
        finally:
            browser.close()
