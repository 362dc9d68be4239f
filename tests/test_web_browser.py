"""The playground in a real headless Chromium (Debian's ``chromium``, driven by Playwright): type a prompt,
see its progress and its grid, press U1, V2 and Custom Zoom, see a bad parameter's error and a failed job,
reload, open a job's details. Saves a screenshot as ``<tmp>/playground.png`` and ``artifacts/playground.png``."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.web.app import create_app
from engine.errors import JobFailed
from engine.prompt import ImagineRequest
from engine.registry import FAMILIES, ModelNotice, Registry
from engine.results import GenerationResult
from tasks.client import JobClient
from tests.support.playground import PaintEngine, http, local_settings, null_registry, painting_worker, serve_in_thread

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
FAIL_WORD = "kaboom"  # a prompt with this word sends its previews, then fails
FAILURE = "The test engine was told to fail this prompt"
WAIT_WORD = "patiently"  # a prompt with this word starts, then waits for the test's go-ahead
LONG_WORD = "IMG_20240611_203512_HDR_panorama_edited_final_v2"  # a file name pasted into a prompt: no break in it

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium; ./dev test installs it)"
    ),
]


class ScriptedPaintEngine(PaintEngine):
    """A PaintEngine whose grids for a prompt with ``FAIL_WORD`` render (previews and all), then fail, and for
    a prompt with ``WAIT_WORD`` wait for ``go`` before they render."""

    def __init__(self, registry: Registry, step_seconds: float) -> None:
        super().__init__(registry, step_seconds)
        self.go = threading.Event()

    def imagine(self, request: ImagineRequest, **kwargs: Any) -> GenerationResult:
        if FAIL_WORD in request.prompt:
            self.steps(kwargs.get("progress"), kwargs.get("cancel"), kwargs.get("seed") or 0)
            raise JobFailed(FAILURE)
        if WAIT_WORD in request.prompt and not self.go.wait(30):
            raise JobFailed("the test never said go")
        return super().imagine(request, **kwargs)


@pytest.fixture
def registry(tmp_path) -> Registry:
    return null_registry(tmp_path)[1]


@pytest.fixture
def engine(registry) -> ScriptedPaintEngine:
    return ScriptedPaintEngine(registry, step_seconds=0.25)


@pytest.fixture
def page_url(redis_url, tmp_path, registry, engine) -> Iterator[str]:
    settings = local_settings(redis_url, tmp_path)
    client = JobClient(settings, registry=registry)
    notice = ModelNotice("demo", "Test engine", "this page is served by a browser test, whose stand-in engine paints a "
                         "coloured shape per image.")  # fmt: skip
    app = create_app(client, user="you", notice=notice)
    try:
        with painting_worker(settings, registry, engine=engine), serve_in_thread(app) as url:
            yield url
    finally:
        engine.go.set()  # a job still waiting lets its worker stop
        client.redis.close()


def wait_for_status(page: Any, url: str, job_id: str, status: str) -> None:
    """Until the API says the job has ``status`` (waiting in the page, so that Playwright's handlers run)."""
    for _ in range(200):
        if http(f"{url}/api/jobs/{job_id}")[1]["status"] == status:
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"job {job_id} is not {status}")


# Once every image in the channel has loaded (and been sized) and the page has drawn twice: where it stands.
SETTLED_CHANNEL = """async () => {
  const box = document.getElementById("channel");
  const images = [...box.querySelectorAll("img")];
  await Promise.all(images.map((image) => image.complete ? null : new Promise((done) => {
    image.addEventListener("load", done); image.addEventListener("error", done);
  })));
  for (let frame = 0; frame < 3; frame++) await new Promise((done) => requestAnimationFrame(done));
  return { top: box.scrollTop, height: box.scrollHeight, visible: box.clientHeight, images: images.length };
}"""


def test_a_job_in_the_page_from_prompt_to_follow_ups(page_url, engine, tmp_path):
    from playwright.sync_api import Route, expect, sync_playwright

    status, info = http(f"{page_url}/api/info")
    assert status == 200
    assert info["example"] == "a lighthouse at dusk --ar 16:9"  # the test's registry: not the demo model
    demo_example = FAMILIES["demo"].example

    def demo_info(route: Route) -> None:  # /api/info as a page served with the demo model sees it
        response = route.fetch()
        route.fulfill(response=response, json={**response.json(), "example": demo_example})

    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (its own --user-data-dir).
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_url)
            expect(page.locator("#notice")).to_contain_text("Test engine: this page is served by a browser test")
            expect(page.locator("#prompt")).to_have_attribute("placeholder", info["example"])
            expect(page.locator("#welcome-example")).to_have_text(info["example"])
            expect(page.locator("#welcome-example")).to_be_visible()

            page.fill("#prompt", "a lighthouse at dusk --ar 16:9 --seed 7")
            page.press("#prompt", "Enter")
            grid = page.locator("article[data-action='imagine']")
            expect(grid).to_have_count(1)
            expect(grid.locator(".status")).to_contain_text("%) (fast)")  # live progress, e.g. "(50%) (fast)"
            expect(grid).to_have_attribute("data-status", "done")
            expect(grid.locator("img.result")).to_have_js_property("naturalWidth", 672)  # 2 x 336: the 16:9 grid
            expect(grid.locator("button.btn")).to_have_text(["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"])
            grid = page.locator(f"#job-{grid.get_attribute('data-job')}")  # a later prompt is an imagine too

            grid.get_by_role("button", name="U1", exact=True).click()
            single = page.locator("article[data-action='separate']")
            expect(single).to_have_attribute("data-status", "done")
            expect(single.locator(".content")).to_contain_text("Image #1")
            expect(single.get_by_role("button", name="Upscale (Subtle)")).to_be_visible()
            expect(grid.get_by_role("button", name="U1", exact=True)).to_have_class("btn used")
            expect(single.locator("button.btn")).to_have_text(
                ["Upscale (Subtle)", "Upscale (Creative)", "Vary (Subtle)", "Vary (Strong)", "🔍 Zoom Out 2x",
                 "🔍 Zoom Out 1.5x", "🔍 Custom Zoom", "↔️ Make Square", "⬅️", "➡️", "⬆️", "⬇️"]
            )  # fmt: skip
            expect(single.get_by_role("button", name="⬅️")).to_have_attribute("title", "Pan left")

            grid.get_by_role("button", name="V2", exact=True).click()
            variation = page.locator("article[data-action='vary_strong']")
            expect(variation.locator(".content")).to_contain_text("Variations (Strong)")
            expect(variation).to_have_attribute("data-status", "done", timeout=20_000)
            expect(variation.locator(".reply")).to_contain_text("a lighthouse at dusk")
            expect(variation.locator("img.result")).to_be_visible()

            # Custom Zoom asks for the zoom and sends what was answered; an answer it cannot read, it says so.
            asked: list[str] = []
            answers = iter(["a bit", "1.25 --ar 1:1"])

            def answer(dialog: Any) -> None:
                asked.append(dialog.message)
                dialog.accept(next(answers))

            page.on("dialog", answer)
            single.get_by_role("button", name="🔍 Custom Zoom").click()
            unread = page.locator("article.ephemeral .embed.error").last
            expect(unread.locator(".text")).to_contain_text("Custom Zoom takes a number from 1.0 to 2.0")
            expect(unread.locator(".text")).to_contain_text("(got “a bit”)")
            single.get_by_role("button", name="🔍 Custom Zoom").click()
            zoom = page.locator("article[data-action='zoom_out']")
            expect(zoom).to_have_count(1)
            page.remove_listener("dialog", answer)
            assert len(asked) == 2
            assert "Zoom out by" in asked[0]
            zoom_job = http(f"{page_url}/api/jobs/{zoom.get_attribute('data-job')}")[1]
            assert zoom_job["params"] == {"scale": 1.25, "aspect": [1, 1]}, zoom_job

            page.fill("#prompt", "a cat --chaos 150")
            page.press("#prompt", "Enter")
            error = page.locator("article.ephemeral .embed.error").last
            expect(error.locator(".title")).to_have_text("Invalid parameter")
            expect(error.locator(".text")).to_have_text("--chaos must be a whole number from 0 to 100 (got 150)")

            page.fill("#prompt", f"the lighthouse of {LONG_WORD} --seed 11")
            page.press("#prompt", "Enter")
            long_prompt = page.locator("article.message", has_text=LONG_WORD)
            expect(long_prompt).to_have_count(1)

            # A job that fails after its previews: only the error, not a blurry picture that looks like a result.
            page.fill("#prompt", f"a {FAIL_WORD} lighthouse")
            page.press("#prompt", "Enter")
            failed = page.locator("article.message", has_text=f"a {FAIL_WORD} lighthouse")
            expect(failed.locator("img.preview")).to_be_visible(timeout=20_000)
            expect(failed).to_have_attribute("data-status", "failed")
            expect(failed.locator(".embed.error .title")).to_have_text("Job failed")
            expect(failed.locator(".embed.error .text")).to_have_text(FAILURE)
            expect(failed.locator("img")).to_have_count(0)
            expect(zoom).to_have_attribute("data-status", "done")
            expect(long_prompt).to_have_attribute("data-status", "done")

            page.set_viewport_size({"width": 1280, "height": 1640})  # the grid, U1's image, V2's grid, the error
            page.evaluate("document.getElementById('channel').scrollTop = 1e9")
            page.mouse.move(0, 0)
            screenshot = tmp_path / "playground.png"
            page.screenshot(path=str(screenshot))
            ARTIFACTS.mkdir(exist_ok=True)
            shutil.copyfile(screenshot, ARTIFACTS / "playground.png")
            assert screenshot.stat().st_size > 10_000

            # A reload, as the demo model's page (its example), while a job runs: the job finishes before the
            # page listens to events, and shows finished all the same; the channel ends at the newest job, also
            # once the images have loaded below the first screen; a #job-<id> address shows that job instead.
            imagined = http(f"{page_url}/api/imagine", {"prompt": f"a lighthouse at dawn, {WAIT_WORD} --seed 5"})
            late_id = imagined[1]["jobs"][0]["id"]
            wait_for_status(page, page_url, late_id, "running")
            page.set_viewport_size({"width": 1280, "height": 900})
            page.route("**/api/info", demo_info)
            held: list[Route] = []
            page.route("**/api/events", lambda route: held.append(route))
            page.reload()
            expect(page.locator("body")).to_have_attribute("data-ready", "1")
            expect(page.locator("#prompt")).to_have_attribute("placeholder", demo_example)
            expect(page.locator(".welcome")).to_contain_text(demo_example)
            expect(page.locator(".welcome")).not_to_contain_text("lighthouse")
            late = page.locator(f"#job-{late_id}")
            expect(late).to_have_attribute("data-status", "running")
            engine.go.set()
            wait_for_status(page, page_url, late_id, "done")
            assert len(held) == 1
            held[0].continue_()  # the page's event stream opens now, after the job's last event
            expect(late).to_have_attribute("data-status", "done")
            page.unroute("**/api/events")
            page.unroute("**/api/info")
            channel = page.evaluate(SETTLED_CHANNEL)
            assert channel["images"] >= 5, channel
            assert channel["height"] > channel["visible"] + 400, channel  # more jobs than the channel shows
            assert abs(channel["top"] + channel["visible"] - channel["height"]) <= 2, channel
            expect(page.locator("#channel article.message").last).to_have_id(f"job-{late_id}")
            expect(late).to_be_in_viewport(ratio=1)
            expect(failed).to_have_attribute("data-status", "failed")
            expect(failed.locator("img")).to_have_count(0)

            page.goto(f"{page_url}/#job-{grid.get_attribute('data-job')}")  # the first job, far above the last
            page.reload()
            expect(page.locator("body")).to_have_attribute("data-ready", "1")
            channel = page.evaluate(SETTLED_CHANNEL)
            expect(grid).to_be_in_viewport()
            assert channel["top"] + channel["visible"] < channel["height"] - 100, channel

            # The details panel wraps 32-hex ids, file names and long words: it never scrolls sideways.
            page.click("#nav-gallery")
            expect(page.locator(".card")).to_have_count(6)
            details = page.locator("#details")
            for shown, lineage in ((long_prompt, 1), (variation, 2)):
                job_id = str(shown.get_attribute("data-job"))
                page.locator(f".card[data-job='{job_id}']").click()
                expect(details.locator("table")).to_contain_text(job_id)
                expect(details.locator(".lineage a")).to_have_count(lineage)
                expect(details.locator(".files a")).to_contain_text(["grid.jpg"])
                width = page.evaluate("(() => { const d = document.getElementById('details'); "
                                      "return { scroll: d.scrollWidth, client: d.clientWidth }; })()")  # fmt: skip
                assert width["scroll"] <= width["client"], (job_id, width)
                assert width["client"] >= 320, width  # the panel keeps its width, its content wraps
            clipped = page.evaluate("[...document.querySelectorAll('.card')].filter((c) => "
                                    "c.scrollHeight > c.clientHeight + 1).length")  # fmt: skip
            assert clipped == 0  # beside the panel, more rows than the gallery shows: it scrolls, no card shrinks
            page.screenshot(path=str(tmp_path / "details.png"))
            assert errors == []
        finally:
            browser.close()
