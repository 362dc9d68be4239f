"""The playground's HTTP API and live events, served for real on loopback, over real Redis and a real worker."""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from bot.web.app import create_app
from engine.registry import Registry
from tasks.client import JobClient
from tests.support.playground import http, local_settings, null_registry, painting_worker, serve_in_thread
from tests.support.servers import wait_until


@pytest.fixture
def playground(redis_url, tmp_path) -> Iterator[tuple[str, JobClient]]:
    _, registry = null_registry(tmp_path)
    settings = local_settings(redis_url, tmp_path)
    client = JobClient(settings, registry=registry)
    app = create_app(client, user="alice", notice=registry.notice)
    with painting_worker(settings, registry), serve_in_thread(app) as url:
        yield url, client
    client.redis.close()


def finished(url: str, job_id: str) -> dict[str, Any]:
    def done() -> bool:
        return http(f"{url}/api/jobs/{job_id}")[1]["status"] in ("done", "failed", "cancelled")

    wait_until(done, timeout=30, what=f"job {job_id} to finish")
    return http(f"{url}/api/jobs/{job_id}")[1]  # type: ignore[no-any-return]


class EventReader:
    """Reads the page's server-sent events in a thread, as a browser's EventSource does."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.closed = threading.Event()
        parsed = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=10)
        self.sock.sendall(f"GET /api/events HTTP/1.1\r\nHost: {parsed.netloc}\r\n\r\n".encode())
        self.sock.settimeout(0.2)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        buffer = b""
        while not self.closed.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode().strip()
                if line == ": connected":
                    self.connected.set()
                if line.startswith("data: "):
                    self.events.append(json.loads(line.removeprefix("data: ")))

    def of(self, job_id: str) -> list[str]:
        return [event["type"] for event in self.events if event["job"] == job_id]

    def close(self) -> None:
        self.closed.set()
        self.thread.join(10)
        self.sock.close()


def test_imagine_events_images_and_buttons(playground):
    url, _client = playground
    reader = EventReader(url)
    assert reader.connected.wait(10)
    try:
        status, body = http(f"{url}/api/imagine", {"prompt": "a lighthouse --ar 16:9 --seed 7"})
        assert status == 200
        [job] = body["jobs"]
        assert (job["status"], job["prompt"], job["owner"]) == ("queued", "a lighthouse --ar 16:9 --seed 7", "alice")
        wait_until(lambda: "done" in reader.of(job["id"]), timeout=30, what="the done event on the stream")
        assert reader.of(job["id"])[0] == "started"
        assert "progress" in reader.of(job["id"])
        assert any(e["preview"].startswith("data:image/webp;base64,") for e in reader.events if e["preview"])
    finally:
        reader.close()

    grid = finished(url, job["id"])
    assert grid["kind"] == "grid"
    assert [[b["label"] for b in row] for row in grid["buttons"]] == [
        ["U1", "U2", "U3", "U4", "🔄"],
        ["V1", "V2", "V3", "V4"],
    ]
    assert (grid["settings"]["width"], grid["settings"]["height"]) == (336, 192), "16:9 on the 256x256 model"
    assert grid["image_seeds"] == [7, 8, 9, 10]
    status, jpeg = http(url + grid["image"])
    assert status == 200
    assert jpeg[:3] == b"\xff\xd8\xff", "the grid as the bot posts it"
    status, original = http(url + grid["files"]["1"])
    assert (status, original[:4], original[8:16]) == (200, b"RIFF", b"WEBPVP8L"), "each image, lossless WebP"
    assert http(url + grid["files"]["manifest"])[1]["id"] == job["id"]

    status, body = http(f"{url}/api/jobs/{job['id']}/actions", {"action": "separate", "index": 1})
    assert status == 200
    image = body["job"]
    assert (image["status"], image["label"], image["kind"]) == ("done", "Image #1", "single"), "U1 is done at once"
    assert "Upscale (Subtle)" in [b["label"] for row in image["buttons"] for b in row]

    status, body = http(f"{url}/api/jobs/{job['id']}/actions", {"action": "vary_strong", "index": 2})
    assert status == 200
    variation = finished(url, body["job"]["id"])
    assert (variation["status"], variation["label"], variation["parent"]) == ("done", "Variations (Strong)", job["id"])
    assert variation["lineage"] == [job["id"]]

    zoomed = http(f"{url}/api/jobs/{image['id']}/actions", {"action": "zoom_out", "scale": 1.5})[1]["job"]
    assert finished(url, zoomed["id"])["lineage"] == [job["id"], image["id"]]

    listed = http(f"{url}/api/jobs")[1]["jobs"]
    assert [j["id"] for j in listed] == [zoomed["id"], variation["id"], image["id"], job["id"]], "newest first"


def test_errors_are_the_bots_messages(playground):
    url, _client = playground
    status, body = http(f"{url}/api/imagine", {"prompt": "a cat --chaos 150"})
    assert status == 400
    assert body == {"title": "Invalid parameter", "error": "--chaos must be a whole number from 0 to 100 (got 150)"}
    assert http(f"{url}/api/jobs")[1]["jobs"] == [], "nothing was submitted"

    status, body = http(f"{url}/api/imagine", {"prompt": "a cat --repeat 11"})
    assert (status, body["title"]) == (400, "Invalid prompt")
    assert body["error"] == "This prompt makes 11 jobs ({…} and --repeat); at most 10 at once"

    status, body = http(f"{url}/api/imagine", {"prompt": "a cat --v 9"})
    assert (status, body["title"]) == (400, "Invalid parameter")
    assert "known models are v6" in body["error"]

    status, body = http(f"{url}/api/jobs/{'0' * 32}/actions", {"action": "separate", "index": 1})
    assert (status, body["title"]) == (404, "Unknown job")
    status, body = http(f"{url}/api/jobs/{'0' * 32}/actions", {"action": "fly"})
    assert status == 400


def test_follow_up_rules_come_from_the_job_system(playground):
    url, _client = playground
    [job] = http(f"{url}/api/imagine", {"prompt": "a {red} cat --seed 1"})[1]["jobs"]
    finished(url, job["id"])
    status, body = http(f"{url}/api/jobs/{job['id']}/actions", {"action": "upscale_subtle"})
    assert (status, body["title"]) == (400, "Not possible")
    assert body["error"] == "Upscale (Subtle) is not possible on a grid (separate an image with U1-U4 first)"


HOSTILE_BUTTON_REQUESTS: list[tuple[dict[str, Any], str]] = [
    ({"action": "separate", "index": "first"}, "action, index, scale, aspect or direction is not valid"),
    ({"action": "separate", "index": [1]}, "action, index, scale, aspect or direction is not valid"),
    ({"action": "zoom_out", "scale": "big"}, "action, index, scale, aspect or direction is not valid"),
    ({"action": "zoom_out", "aspect": "1:2:3"}, "action, index, scale, aspect or direction is not valid"),
    ({"action": "pan", "direction": "sideways"}, "action, index, scale, aspect or direction is not valid"),
    ({"action": "separate", "index": 1, "mode": "turbo"}, "mode must be one of fast, relax"),
    ({"action": "imagine"}, "use /api/imagine for a new prompt"),
    ({"action": "zoom_out", "scale": 1e308}, "Zoom Out is not possible on a grid"),
    ({"action": "separate", "index": 10**400}, "Pick an image of the grid: 1, 2, 3 or 4"),
]


def test_hostile_button_requests_are_refused_with_what_to_fix(playground):
    """Button requests as a script could send them: every malformed field is a 4xx naming what to fix, never
    a 500 or a job."""
    url, client = playground
    [job] = http(f"{url}/api/imagine", {"prompt": "a cat --seed 1"})[1]["jobs"]
    finished(url, job["id"])
    for body, message in HOSTILE_BUTTON_REQUESTS:
        status, answer = http(f"{url}/api/jobs/{job['id']}/actions", body)
        assert 400 <= status < 500, (body, answer)
        assert message in answer["error"], body
    assert len(client.jobs_of("alice")) == 1, "no job was made"


def test_info_says_when_the_model_is_the_demo():
    demo = Registry.from_env({})
    real = Registry.from_mapping({"models": {"v6": {"source": "stabilityai/sd-turbo", "family": "sd-turbo"}}})
    demo_notice = demo.notice
    assert demo_notice is not None
    assert (demo_notice.kind, demo_notice.title) == ("demo", "Built-in demo model")
    assert "coloured shapes" in demo_notice.text
    assert "DREAMLOOM_MODEL=stabilityai/sd-turbo" in demo_notice.text
    assert real.notice is None


def test_only_local_json_requests_are_served(playground):
    url, _client = playground
    status, _ = http(f"{url}/api/info", headers={"Host": "dreamloom.attacker.example"})
    assert status == 403, "a page elsewhere cannot reach the playground through DNS rebinding"
    request = urllib.request.Request(f"{url}/api/imagine", data=b"prompt=a+cat", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 415, "a cross-site form cannot post jobs"
    refused.value.close()
    status, info = http(f"{url}/api/info")
    assert (status, info["user"], info["default_model"], info["notice"]) == (200, "alice", "v6", None)
    status, page = http(f"{url}/")
    assert status == 200
    assert b"/static/app.js" in page
    assert http(f"{url}/static/app.js")[0] == 200
    assert http(f"{url}/files/{'0' * 32}/grid.jpg")[0] == 404
    assert http(f"{url}/files/{'0' * 32}/secrets.txt")[0] == 404


def test_metrics_and_health_for_operators(playground):
    url, _client = playground
    job = http(f"{url}/api/imagine", {"prompt": "a lighthouse --seed 2"})[1]["jobs"][0]
    finished(url, job["id"])
    request = urllib.request.Request(f"{url}/metrics", headers={"Host": "10.1.2.3:8188"})
    with urllib.request.urlopen(request, timeout=10) as response:
        metrics = response.read().decode()
    assert 'dreamloom_jobs{status="done"} 1.0' in metrics, "scraped by the pod's IP: allowed, read-only"
    assert "dreamloom_queue_depth" in metrics
    status, health = http(f"{url}/healthz")
    assert status == 200
    assert [check["name"] for check in health["checks"]] == ["redis", "storage"]
    assert http(f"{url}/metrics", headers={"Host": "prometheus.example"})[0] == 403, "a name must be allowed"
    request = urllib.request.Request(f"{url}/livez", headers={"Host": "[fd00::7]:8188"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert (response.status, response.read()) == (200, b"ok\n")
