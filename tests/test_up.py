"""``dreamloom up`` as a newcomer runs it: in an empty folder, with nothing configured (no REDIS_URL, no S3,
no model). The page loads, a job completes, buttons make follow-ups, the CLI uses the running service or,
once it is stopped, an embedded one of its own; Ctrl-C (SIGINT) leaves no process behind, and the data
folder keeps every job across restarts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.playground import JOB_DONE, clean_env, dreamloom, dreamloom_argv, http
from tests.support.servers import wait_until

pytestmark = pytest.mark.slow  # the whole service and commands, as processes

STARTUP_SECONDS = 300  # a busy 2-core machine is slow to start a worker
JOB_SECONDS = 180


def marked(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (every descendant of ``up`` inherits it)."""
    found = []
    needle = f"DREAMLOOM_TEST_RUN={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue  # gone meanwhile, or a zombie
    return found


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


class Up:
    """A ``dreamloom up`` subprocess, its output in a file."""

    def __init__(self, folder: Path, env: dict[str, str], name: str = "up") -> None:
        self.log = folder / f"{name}.log"
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                [*dreamloom_argv(), "up"], cwd=folder, env=env, stdout=output, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self) -> str:
        def announced() -> bool:
            assert self.process.poll() is None, f"dreamloom up stopped:\n{self.output()}"
            return "in your browser" in self.output()

        wait_until(announced, timeout=STARTUP_SECONDS, interval=0.2, what="dreamloom up to name its page")
        return re.search(r"Open (http://\S+) in your browser", self.output())[1]  # type: ignore[index]

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(timeout=90)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)


@pytest.fixture
def newcomer(tmp_path) -> Iterator[tuple[Path, dict[str, str], str]]:
    """An empty folder, a clean environment (only a free port for the page, and a marker to find the
    processes by), and the marker. Whatever is left carrying the marker is killed afterwards."""
    folder = tmp_path / "newcomer"
    folder.mkdir()
    marker = uuid.uuid4().hex
    yield folder, clean_env(DREAMLOOM_WEB_PORT="0", DREAMLOOM_TEST_RUN=marker), marker
    for pid in marked(marker):
        os.kill(pid, signal.SIGKILL)


def finished(url: str, job_id: str) -> dict[str, Any]:
    def done() -> bool:
        return http(f"{url}/api/jobs/{job_id}")[1]["status"] in ("done", "failed", "cancelled")

    wait_until(done, timeout=JOB_SECONDS, interval=0.2, what=f"job {job_id} to finish")
    view: dict[str, Any] = http(f"{url}/api/jobs/{job_id}")[1]
    return view


def stopped_cleanly(up: Up, marker: str, tree: set[int]) -> None:
    assert up.interrupt() == 0, up.output()
    assert up.output().rstrip().endswith("stopped")
    wait_until(lambda: not marked(marker), timeout=10, what="every child of dreamloom up to be gone")
    alive = [pid for pid in tree if Path(f"/proc/{pid}").exists()]
    assert alive == [], f"left behind: {alive}"


def test_up_with_nothing_configured(newcomer):
    folder, env, marker = newcomer
    up = Up(folder, env)
    try:
        url = up.url()
        status, page = http(url + "/")
        assert status == 200
        assert b"<title>dreamloom playground</title>" in page
        info = http(url + "/api/info")[1]
        assert info["notice"]["kind"] == "demo"
        assert "DREAMLOOM_MODEL=stabilityai/sd-turbo" in info["notice"]["text"]
        assert info["example"] == "a large red circle in the top left on a blue background", "a prompt it can draw"
        data = folder / "dreamloom-data"
        assert info["storage"] == "local", "the kind of storage, never its path"

        [job] = http(url + "/api/imagine", {"prompt": "a lighthouse --ar 16:9 --seed 7"})[1]["jobs"]
        grid = finished(url, job["id"])
        assert grid["status"] == "done", grid
        assert http(url + grid["image"])[1][:3] == b"\xff\xd8\xff"
        wait_until(lambda: "worker       ready" in up.output(), timeout=10, what="the banner's worker line")
        banner = up.output()
        assert banner.index("worker       warming") < banner.index("worker       ready"), "warm before it takes jobs"
        image = http(f"{url}/api/jobs/{job['id']}/actions", {"action": "separate", "index": 1})[1]["job"]
        assert image["status"] == "done"
        variation = http(f"{url}/api/jobs/{job['id']}/actions", {"action": "vary_strong", "index": 2})[1]["job"]
        assert finished(url, variation["id"])["lineage"] == [job["id"]]

        second = subprocess.run([*dreamloom_argv(), "up"], cwd=folder, env=env, capture_output=True, text=True,
                                timeout=60)  # fmt: skip
        assert second.returncode == 1
        assert second.stdout.splitlines()[-1] == (
            f"Cannot start: dreamloom is already running on the data folder {data}: its page is {url}"
        ), "it started nothing, so it says nothing about stopping"

        elsewhere = folder / "somewhere-else"  # a command run from another folder finds the running service
        elsewhere.mkdir()
        cli = dreamloom("upscale", job["id"][:8], "2", env=env, cwd=elsewhere)  # U2: no GPU work, done at once
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "No dreamloom is running" not in cli.stdout
        assert not (elsewhere / "dreamloom-data").exists(), "no second data folder, Redis or worker"
        cli_job = JOB_DONE.search(cli.stdout)[1]  # type: ignore[index]
        assert f"page: {url}/#job-{cli_job}" in cli.stdout, "it used the running service"
        assert f"note: {info['notice']['title']}" in cli.stdout

        health = dreamloom("health", env=env, cwd=elsewhere)
        assert f"checking the dreamloom up running on {data} (pid {up.process.pid})" in health.stderr
        wait_until(lambda: dreamloom("health", env=env, cwd=elsewhere).returncode == 0, timeout=60,
                   what="the worker's heartbeat")  # fmt: skip
        assert re.search(r"^ok   redis +Redis at 127\.0\.0\.1:\d+/0 answers$", health.stdout, re.MULTILINE)

        tree = descendants(up.process.pid)
        assert len(tree) >= 3, "redis-server, the worker and its pool process"
        record = json.loads((data / "service.json").read_text())
        assert (record["pid"], record["web_url"]) == (up.process.pid, url)
        stopped_cleanly(up, marker, tree)
        assert not (data / "service.json").exists()
    finally:
        up.kill()

    nothing = dreamloom("jobs", env=env, cwd=elsewhere)
    assert (nothing.returncode, nothing.stdout) == (1, "")
    assert nothing.stderr.startswith(f"No service: No dreamloom is running, and {elsewhere / 'dreamloom-data'} holds")
    assert "pass --data-dir with the folder your jobs are in" in nothing.stderr
    assert not (elsewhere / "dreamloom-data").exists()
    unchecked = dreamloom("health", env=env, cwd=elsewhere)
    assert unchecked.returncode == 1
    assert "No dreamloom is running on this machine to check: `dreamloom up` starts one" in unchecked.stderr

    embedded = dreamloom("imagine", "a blue square --seed 5", env=env, cwd=folder, timeout=JOB_SECONDS)
    assert embedded.returncode == 0, embedded.stdout + embedded.stderr
    assert f"No dreamloom is running: starting one for this command, with its data in {data}" in embedded.stdout
    embedded_job = JOB_DONE.search(embedded.stdout)[1]  # type: ignore[index]
    assert Path(re.search(r"^  grid: (.+)$", embedded.stdout, re.MULTILINE)[1]).is_file()  # type: ignore[index]
    assert marked(marker) == [], "the command's own Redis and worker stopped with it"

    square = dreamloom("square", embedded_job[:8], "3", env=env, cwd=folder)  # a 1:1 grid's image is square
    assert (square.returncode, square.stderr.strip()) == (2, "Not possible: The image is already square")

    listed = dreamloom("jobs", env=env, cwd=folder)  # Redis alone, from its append-only file: no worker
    assert listed.returncode == 0, listed.stdout + listed.stderr
    ids = {line.split()[0] for line in listed.stdout.splitlines()}
    assert ids == {job["id"], image["id"], variation["id"], cli_job, embedded_job}, "every job, and no refused one"
    assert marked(marker) == []
