"""The deployment files (deploy/): they parse, run real `dreamloom` commands, set only variables dreamloom
reads, document every variable it reads, give workers a GPU each and every process its probes.

Docker and Kubernetes cannot run here, so these tests read the files as the tools would and hold them to
the code: the CLI parser, the settings' catalogue of variables (bot.cli.environment) and the sources.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.cli.environment import ENGINE_VARIABLES, known_variables
from bot.cli.main import _build_parser
from bot.cli.settings import ServiceSettings
from bot.discord.settings import BotSettings
from tasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICE_COMMANDS = {"bot", "web", "worker"}
# Variables only compose reads (to configure the Redis and MinIO it runs), documented in .env.example.
COMPOSE_ONLY = {"REDIS_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / resource).read_text()) if doc]
    return documents


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"one {kind} {name} in deploy/k8s"
    return found[0]


def k8s_containers() -> dict[str, dict[str, Any]]:
    """Every container of every workload, by container name."""
    containers = {}
    for doc in k8s_documents():
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                containers[container["name"]] = container
    return containers


def dreamloom_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc["image"].startswith("dreamloom-")}


def env_example() -> tuple[dict[str, str], set[str]]:
    """deploy/.env.example: the variables it sets, and every variable it mentions (set or commented out)."""
    values, mentioned = {}, set()
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        if match := re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line):
            mentioned.add(match[2])
            if not match[1]:
                values[match[2]] = match[3]
    return values, mentioned


def interpolate(value: str, env: dict[str, str]) -> str:
    """compose's ${NAME}, ${NAME:-default} and ${NAME:?error} against ``env``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == "?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == "-" else ""

    return INTERPOLATION.sub(one, value)


def test_service_commands_are_real_dreamloom_subcommands():
    parser = _build_parser()
    commands = {f"compose {name}": svc["command"] for name, svc in dreamloom_services().items()}
    commands |= {
        f"k8s {name}": c["command"] for name, c in k8s_containers().items() if c["image"].startswith("dreamloom-")
    }
    for dockerfile in ("Dockerfile.bot", "Dockerfile.worker"):
        cmd = re.search(r"^CMD (.+)$", (DEPLOY / dockerfile).read_text(), re.MULTILINE)
        assert cmd, f"{dockerfile} has a CMD"
        commands[dockerfile] = json.loads(cmd[1])
    assert len(commands) == 8
    assert {command[1] for command in commands.values()} == SERVICE_COMMANDS
    for where, command in commands.items():
        assert command[0] == "dreamloom", where
        assert command[1] in SERVICE_COMMANDS, f"{where}: {command} is not a dreamloom service"
        args = parser.parse_args(command[1:])
        assert args.run.__name__ == f"_run_{command[1]}", f"{where}: {command} is not a dreamloom entry point"


def test_compose_sets_only_variables_dreamloom_reads_and_they_parse():
    known = known_variables()
    defaults, _ = env_example()
    secrets = {"REDIS_PASSWORD": "s3cret", "MINIO_ROOT_PASSWORD": "s3cret2", "DISCORD_TOKEN": "token"}
    for name, service in dreamloom_services().items():
        environment = service["environment"]
        assert set(environment) <= known, f"compose service {name} sets {sorted(set(environment) - known)}"
        assert service["env_file"] == [{"path": ".env", "required": False}], f"{name} reads deploy/.env"
        env = defaults | {key: interpolate(str(value), secrets) for key, value in environment.items()}
        settings = Settings.from_env(env)
        assert settings.redis_url == "redis://:s3cret@redis:6379/0"
        assert (settings.s3_bucket, settings.s3_endpoint_url) == ("dreamloom-images", "http://minio:9000")
        BotSettings.from_env(env)
        ServiceSettings.from_env(env)
    with pytest.raises(KeyError, match="REDIS_PASSWORD"):
        interpolate(compose()["services"]["worker"]["environment"]["REDIS_URL"], {})


def test_every_variable_compose_interpolates_is_documented():
    _, mentioned = env_example()
    used = {match["name"] for match in INTERPOLATION.finditer((DEPLOY / "compose.yaml").read_text())}
    assert "REDIS_PASSWORD" in used
    assert used <= mentioned, f"not in deploy/.env.example: {sorted(used - mentioned)}"


def test_kubernetes_sets_only_variables_dreamloom_reads():
    known = known_variables()
    config = k8s_object("ConfigMap", "dreamloom-config")["data"]
    assert set(config) <= known, f"the ConfigMap sets {sorted(set(config) - known)}"
    secret = yaml.safe_load((DEPLOY / "k8s" / "secret.example.yaml").read_text())
    for name, container in k8s_containers().items():
        names = {item["name"] for item in container.get("env", [])}
        if container["image"].startswith("dreamloom-"):
            assert names <= known, f"container {name} sets {sorted(names - known)}"
            assert container["envFrom"] == [{"configMapRef": {"name": "dreamloom-config"}}]
        for item in container.get("env", []):
            if ref := item.get("valueFrom", {}).get("secretKeyRef"):
                assert ref["name"] == secret["metadata"]["name"]
                assert ref["key"] in secret["stringData"], f"{name}: the Secret has no {ref['key']}"
    Settings.from_env(config | {"REDIS_URL": secret["stringData"]["REDIS_URL"]})


def test_env_example_documents_every_variable_with_its_default():
    values, mentioned = env_example()
    known = known_variables()
    assert known <= mentioned, f"undocumented in deploy/.env.example: {sorted(known - mentioned)}"
    assert mentioned <= known | COMPOSE_ONLY, f"not read by dreamloom: {sorted(mentioned - known - COMPOSE_ONLY)}"
    for settings_class in (Settings, BotSettings, ServiceSettings):
        default = settings_class.from_env({})
        for name, value in values.items():
            assert settings_class.from_env({name: value}) == default, f"{name}={value} is not the default"


@pytest.mark.parametrize("name", ENGINE_VARIABLES)
def test_engine_variables_are_read_by_the_engine(name):
    sources = "".join(path.read_text() for path in (ROOT / "engine").rglob("*.py"))
    assert f'"{name}"' in sources, f"{name} is listed in bot.cli.environment but nothing in engine/ reads it"


def test_redis_persists_jobs_in_both():
    assert "--appendonly yes" in compose()["services"]["redis"]["command"]
    assert "redis-data:/data" in compose()["services"]["redis"]["volumes"]
    redis = k8s_object("StatefulSet", "dreamloom-redis")
    args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"


def test_workers_get_one_gpu_each_and_time_to_finish_their_job():
    job_seconds = Settings.from_env({}).max_job_seconds
    worker = compose()["services"]["worker"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert (device["driver"], device["capabilities"], len(device["device_ids"])) == ("nvidia", ["gpu"], 1)
    assert worker["environment"]["DREAMLOOM_WORKER_CONCURRENCY"] == "1"
    assert "model-cache:/models" in worker["volumes"]
    assert worker["environment"]["HF_HOME"] == "/models"
    assert int(worker["stop_grace_period"].removesuffix("m")) * 60 > job_seconds
    deployment = k8s_object("Deployment", "dreamloom-worker")["spec"]
    pod = deployment["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["terminationGracePeriodSeconds"] > job_seconds
    assert deployment["strategy"]["rollingUpdate"]["maxSurge"] == 0
    assert k8s_object("Deployment", "dreamloom-bot")["spec"]["strategy"]["type"] == "Recreate", "one gateway"


def test_every_process_has_probes_on_its_own_port():
    ports = {"bot": "DREAMLOOM_BOT_METRICS_PORT", "web": "DREAMLOOM_WEB_PORT", "worker": "DREAMLOOM_METRICS_PORT"}
    for name, service in dreamloom_services().items():
        port = service["environment"][ports[name]]
        assert f"127.0.0.1:{port}/livez" in " ".join(service["healthcheck"]["test"]), name
    for name, container in k8s_containers().items():
        if name not in ports:
            assert {"readinessProbe", "livenessProbe"} <= set(container), name
            continue
        env = {item["name"]: item.get("value") for item in container["env"]}
        port_name = container["readinessProbe"]["httpGet"]["port"]
        port = next(p["containerPort"] for p in container["ports"] if p["name"] == port_name)
        assert str(port) == env[ports[name]], f"{name}'s probes ask the port its settings serve on"
        assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/livez", "an outage must not restart it"


def test_compose_and_kustomization_refer_to_what_exists():
    services = compose()["services"]
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        if build := service.get("build"):
            assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in kustomization["resources"], "never apply the example secret"
    images = {container["image"] for container in k8s_containers().values()}
    assert {image["name"] for image in kustomization["images"]} == {i for i in images if i.startswith("dreamloom-")}
    for dockerfile in ("Dockerfile.bot", "Dockerfile.worker"):
        for source in re.findall(r"^COPY (\S+) ", (DEPLOY / dockerfile).read_text(), re.MULTILINE):
            assert (ROOT / source).exists(), f"{dockerfile} copies {source}"
    assert ".env" in (ROOT / ".dockerignore").read_text().split(), "secrets stay out of images"


@pytest.mark.parametrize(
    ("image", "missing", "modules"),
    [
        (
            "bot",
            ["torch", "diffusers", "transformers", "numpy"],
            "bot.cli.main, bot.cli.parts, bot.discord.launcher, bot.web.app",
        ),
        ("worker", ["discord", "aiohttp"], "bot.cli.main, bot.cli.parts, tasks.celery_worker, engine.generate"),
    ],
)
def test_each_image_runs_its_commands_without_the_other_images_packages(image, missing, modules):
    extras = {extra: " ".join(deps) for extra, deps in _extras().items()}
    for package in missing:
        assert package not in extras[image], f"the {image} extra installs {package}"
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in missing)
    code = f"import sys\n{blocked}import {modules}\nprint('imported')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.stdout.strip() == "imported", result.stderr[-2000:]


def _extras() -> dict[str, list[str]]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras: dict[str, list[str]] = project["optional-dependencies"]
    return extras
