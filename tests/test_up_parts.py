"""The parts ``dreamloom up`` is made of: the default model, the embedded Redis, child processes, the data
folder's lock, the worker command, the settings and the progress bar."""

from __future__ import annotations

import dataclasses
import io
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import redis

from bot.cli.progress import ProgressBar
from bot.cli.services import DataFolder, NoService, RunningServices, ServiceRecord, find_running
from bot.cli.settings import ServiceSettings
from engine.errors import ConfigError
from engine.registry import Registry
from tasks.embedded_redis import EmbeddedRedis
from tasks.processes import spawn, stop
from tasks.worker_process import worker_command
from tests.support.playground import clean_env, dreamloom
from tests.support.servers import wait_until


def test_a_configured_model_is_used_as_it_is(tmp_path):
    registry = Registry.from_env({"DREAMLOOM_MODEL": "stabilityai/sd-turbo"})
    assert registry.resolve(None).source == "stabilityai/sd-turbo"
    assert registry.notice is None
    assert registry.example == "a lighthouse at dusk --ar 16:9"


def test_with_no_model_the_built_in_demo_model_is_served(tmp_path):
    registry = Registry.from_env({})
    entry = registry.resolve(None)
    assert (entry.alias, entry.family, entry.native_size) == ("demo", "demo", (64, 64))
    assert (Path(entry.source) / "model_index.json").is_file(), "it ships with the package: nothing to build"
    assert registry.notice is not None
    assert registry.notice.kind == "demo"
    assert registry.example == "a large red circle in the top left on a blue background", "a prompt it can draw"
    assert registry.example in registry.notice.text


def test_embedded_redis_keeps_its_data_across_restarts(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(server.start())
    try:
        client.set("job", "kept")
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as anonymous:
            anonymous.sendall(b"GET job\r\n")
            assert anonymous.recv(100).startswith(b"-NOAUTH"), "other local programs need its password"
    finally:
        client.close()
        server.stop()
    again = EmbeddedRedis(tmp_path / "redis")
    client = redis.Redis.from_url(again.start())
    try:
        assert client.get("job") == b"kept"
    finally:
        client.close()
        again.stop()


def test_stop_escalates_and_takes_the_whole_session(tmp_path):
    script = "trap '' TERM QUIT; sleep 60 & echo ready; wait"  # ignores polite signals, has a child of its own
    log = tmp_path / "log"
    process = spawn(["sh", "-c", script], log=log)
    wait_until(lambda: "ready" in log.read_text(), timeout=10, what="the script to ignore SIGTERM")
    pgid = process.pid
    steps = ((signal.SIGTERM, 0.3), (signal.SIGQUIT, 0.3), (signal.SIGKILL, 5.0))
    assert stop(process, steps) == -signal.SIGKILL

    def session_gone() -> bool:
        return not subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()

    wait_until(session_gone, timeout=10, what="its child to go too")

    log.unlink()
    hurried = spawn(["sh", "-c", script], log=log)
    wait_until(lambda: log.exists() and "ready" in log.read_text(), timeout=10, what="the script to start")
    hurry = threading.Event()
    hurry.set()  # a second Ctrl-C: straight to SIGKILL
    assert stop(hurried, ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)), hurry) == -signal.SIGKILL


def test_one_process_runs_the_job_system_on_a_data_folder(tmp_path):
    first, second = DataFolder(tmp_path), DataFolder(tmp_path)
    assert first.acquire()
    assert not second.acquire()
    record = ServiceRecord(1, "redis://:secret@127.0.0.1:1/0", str(tmp_path), "http://127.0.0.1:1")
    first.publish(record)
    assert (tmp_path / "service.json").stat().st_mode & 0o777 == 0o600, "it holds the Redis password"
    assert second.running() == record
    first.release()
    assert second.running() is None, "a record nobody holds the lock for is stale"
    assert second.acquire()
    second.release()


def test_commands_find_a_running_service_from_any_folder_and_ask_when_several_run(tmp_path):
    environ = {"XDG_STATE_HOME": str(tmp_path / "state-home")}
    listed = RunningServices.of_user(environ)
    assert listed.folder == tmp_path / "state-home" / "dreamloom" / "running"
    elsewhere = ServiceSettings(data_dir=tmp_path / "cwd" / "dreamloom-data")
    named = dataclasses.replace(elsewhere, data_dir_given=True)
    folders = [DataFolder(tmp_path / name, listed) for name in ("one", "two")]
    assert find_running(elsewhere, environ) is None, "nothing runs"
    records = []
    for number, folder in enumerate(folders, start=1):
        assert folder.acquire()
        records.append(ServiceRecord(number, f"redis://127.0.0.1:{number}/0", str(folder.path)))
        folder.publish(records[-1])
    assert all(entry.stat().st_mode & 0o777 == 0o600 for entry in listed.folder.iterdir())
    with pytest.raises(NoService, match=r"2 dreamloom services are running \(.*one; .*two\): pass --data-dir"):
        find_running(elsewhere, environ)
    assert (
        find_running(dataclasses.replace(elsewhere, data_dir=folders[1].path, data_dir_given=True), environ)
        == (records[1])
    ), "a named folder: its own service"
    assert find_running(named, environ) is None, "a named folder where nothing runs: not another one"
    folders[1].release()  # as a killed `up` leaves it: its entry and service.json stay, its lock is gone
    assert find_running(elsewhere, environ) == records[0], "the only one left, found from another folder"
    assert len(list(listed.folder.iterdir())) == 1, "the stale entry was removed"
    folders[0].unpublish()
    folders[0].release()
    assert find_running(elsewhere, environ) is None


def test_the_worker_command_serves_every_family_fast_first():
    command = worker_command(["sdxl", "sd15", "sd15"], concurrency=1, name="w@h")
    assert command[:6] == [sys.executable, "-m", "tasks.worker_process", "-A", "tasks.celery_worker", "worker"]
    assert command[command.index("-P") + 1] == "threads", "one engine, shared by the jobs in hand"
    assert command[command.index("-c") + 1] == "1"
    queues = command[command.index("-Q") + 1]
    assert queues == "dreamloom.sd15.fast,dreamloom.sdxl.fast,dreamloom.sd15.relax,dreamloom.sdxl.relax"


def test_service_settings_from_the_environment():
    assert ServiceSettings.from_env({}) == ServiceSettings(Path("dreamloom-data"), "127.0.0.1", 8188, "local", 2)
    custom = ServiceSettings.from_env(
        {"DREAMLOOM_DATA_DIR": "/srv/dl", "DREAMLOOM_WEB_HOST": "0.0.0.0", "DREAMLOOM_WEB_PORT": "80",
         "DREAMLOOM_USER": "ops-team", "DREAMLOOM_WORKER_CONCURRENCY": "2"}
    )  # fmt: skip
    assert custom == ServiceSettings(Path("/srv/dl"), "0.0.0.0", 80, "ops-team", 2)
    assert ServiceSettings().web_is_local
    assert ServiceSettings(web_host="localhost").web_is_local
    assert not custom.web_is_local
    with pytest.raises(ConfigError, match=r"DREAMLOOM_WEB_PORT must be a whole number from 0 to 65535 \(got 'http'\)"):
        ServiceSettings.from_env({"DREAMLOOM_WEB_PORT": "http"})
    with pytest.raises(ConfigError, match="DREAMLOOM_USER"):
        ServiceSettings.from_env({"DREAMLOOM_USER": "a b"})


def test_the_progress_bar_redraws_on_a_terminal_and_logs_elsewhere():
    terminal = io.StringIO()
    bar = ProgressBar(terminal, tty=True)
    bar.show("job1", 50, "running")
    bar.show("job1", 75, "running")
    bar.done()
    assert terminal.getvalue() == (
        "\rjob1 [############............]  50% running\rjob1 [##################......]  75% running\n"
    )
    log = io.StringIO()
    bar = ProgressBar(log, tty=False)
    for percent in (0, 10, 30, 40, 80):
        bar.show("job1", percent, "running")
    assert log.getvalue().splitlines() == ["job1   0% running", "job1  30% running", "job1  80% running"]


def test_each_part_alone_refuses_clearly_without_its_configuration(tmp_path):
    worker = dreamloom("worker", env=clean_env(DREAMLOOM_MODELS=str(tmp_path / "missing.toml")), cwd=tmp_path)
    assert worker.returncode == 1
    assert worker.stderr.startswith("Configuration error: cannot read the model registry")
    bot = dreamloom("bot", env=clean_env(), cwd=tmp_path)
    assert bot.returncode == 1
    assert bot.stderr.startswith("Configuration error: DISCORD_TOKEN is not set")
