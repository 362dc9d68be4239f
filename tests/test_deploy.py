"""The deployment files (deploy/): they parse, run real `dreamloom` commands, set only variables dreamloom
reads, document every variable it reads, give workers a GPU each and every process its probes, pin every
image, install the package versions the tests run with, and mount a model registry that parses.

Docker and Kubernetes cannot run here, so these tests read the files as the tools would and hold them to
the code: the CLI parser, the settings' catalogue of variables (bot.cli.environment) and the sources.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from bot.cli.environment import ENGINE_VARIABLES, known_variables
from bot.cli.main import _build_parser
from bot.cli.settings import ServiceSettings
from bot.discord.settings import BotSettings
from engine.registry import Registry
from tasks.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SERVICE_COMMANDS = {"bot", "web", "worker"}
# Variables only compose reads (the Redis and MinIO it runs, its profiles, the models.toml it mounts),
# documented in .env.example.
COMPOSE_ONLY = {"REDIS_PASSWORD", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "COMPOSE_PROFILES", "DREAMLOOM_MODELS_FILE"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")
# What the images hold: the sources, the demo model (in engine/) and the pinned versions; never devtools/.
IMAGE_SOURCES = {"pyproject.toml", "README.md", "dev-constraints.txt", "bot", "engine", "tasks"}
MODELS_TOML = "/etc/dreamloom/models.toml"  # where compose and the manifests mount the model registry
COMPOSE_SECRETS = {"REDIS_PASSWORD": "s3cret", "MINIO_ROOT_PASSWORD": "s3cret2"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for resource in kustomization()["resources"]:
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


def k8s_pods() -> dict[str, dict[str, Any]]:
    """The pod spec of every workload, by workload name."""
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]
        for doc in k8s_documents()
        if doc["kind"] in ("Deployment", "StatefulSet")
    }


def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    return data


def dreamloom_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if svc["image"].startswith("dreamloom-")}


def dockerfile(name: str) -> str:
    """A Dockerfile's text with its continued lines joined, as Docker reads its instructions."""
    return (DEPLOY / name).read_text().replace("\\\n", " ")


def dockerfile_copies(name: str) -> list[str]:
    """The build-context paths a Dockerfile copies (every source of every COPY)."""
    sources = []
    for line in re.findall(r"^COPY (.+)$", dockerfile(name), re.MULTILINE):
        sources += line.split()[:-1]
    return sources


def base_images(name: str) -> list[str]:
    """The images a Dockerfile starts FROM, with its ARG defaults filled in (what a plain build pulls)."""
    text = dockerfile(name)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", text, re.MULTILINE))
    return [
        re.sub(r"\$\{?(\w+)\}?", lambda m: args[m[1]], image)
        for image in re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    ]


def image_tag(reference: str) -> str:
    """The tag of an image reference ("" when it has none, which pulls `latest`)."""
    last_part = reference.split("@", 1)[0].rsplit("/", 1)[-1]
    return last_part.partition(":")[2]


def constraints() -> dict[str, str]:
    """dev-constraints.txt: the version the tests run with, by lower-case package name."""
    pins = {}
    for line in (ROOT / "dev-constraints.txt").read_text().splitlines():
        if match := re.fullmatch(r"([A-Za-z0-9._-]+)==(\S+)", line.strip()):
            pins[match[1].lower()] = match[2]
    return pins


def enabled_services(services: dict[str, dict[str, Any]], profiles: set[str]) -> set[str]:
    """The services `docker compose up` runs with these profiles: those with no profile, or one of them."""
    return {name for name, svc in services.items() if not svc.get("profiles") or profiles & set(svc["profiles"])}


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


def interpolated(node: Any, env: dict[str, str]) -> Any:
    """Every string of a parsed compose file interpolated, as compose does before it looks at any service
    (even one whose profile is not selected)."""
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolated(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


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
    secrets = COMPOSE_SECRETS | {"DISCORD_TOKEN": "token"}
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
    assert worker["environment"]["DREAMLOOM_WORKER_CONCURRENCY"] == "2"
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
    resources = kustomization()["resources"]
    assert "secret.example.yaml" not in resources, "never apply the example secret"
    assert all((DEPLOY / "k8s" / resource).is_file() for resource in resources)
    images = {container["image"] for container in k8s_containers().values()}
    assert {image["name"] for image in kustomization()["images"]} == {i for i in images if i.startswith("dreamloom-")}
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if not line.startswith("#")]
    for name in ("Dockerfile.bot", "Dockerfile.worker"):
        sources = dockerfile_copies(name)
        assert set(sources) <= IMAGE_SOURCES, f"{name} copies {sorted(set(sources) - IMAGE_SOURCES)}"
        for source in sources:
            assert (ROOT / source).exists(), f"{name} copies {source}"
            assert source not in ignored, f"{name} copies {source}, which .dockerignore leaves out of the context"
    assert ".env" in ignored, "secrets stay out of images"
    assert "devtools" in ignored, "the dev tools never reach an image"


@pytest.mark.parametrize(("name", "extra"), [("Dockerfile.bot", "bot"), ("Dockerfile.worker", "worker")])
def test_images_install_the_versions_the_tests_run_with(name, extra):
    assert "dev-constraints.txt" in dockerfile_copies(name)
    installs = re.findall(r"pip install ([^&\n]+)", dockerfile(name))
    assert [install.strip() for install in installs] == [f'-c dev-constraints.txt ".[{extra}]"'], name


def test_the_worker_image_runs_the_torch_the_tests_run_with():
    torch = constraints()["torch"]
    assert f"torch=={torch}" in _extras()["dev"], "dev and CI install the torch the constraints pin"
    text = dockerfile("Dockerfile.worker")
    assert re.search(r"^ARG BASE=\S+$", text, re.MULTILINE), "operators can choose another CUDA build"
    [base] = base_images("Dockerfile.worker")
    official = re.fullmatch(r"pytorch/pytorch:(?P<torch>[0-9.]+)-cuda[0-9.]+-cudnn[0-9]+-runtime", base)
    assert official, f"{base} is not one of PyTorch's CUDA runtime images"
    assert official["torch"] == torch, f"the default base image has torch {official['torch']}, the tests {torch}"
    assert '! python -c "import torch"' in dockerfile("Dockerfile.bot"), "the bot image has no torch"


# A stand-in for the base image's python: its torch version is in $TORCH_FILE; `pip install` replaces it when
# $PIP_INSTALLS_TORCH names a version (as pip would if the constraints did not accept the base image's torch).
FAKE_PYTHON = """#!/bin/sh
case "$*" in
    "-m pip install "*) [ -z "$PIP_INSTALLS_TORCH" ] || echo "$PIP_INSTALLS_TORCH" > "$TORCH_FILE" ;;
    *"print(torch.__version__)"*) cat "$TORCH_FILE" ;;
esac
"""


@pytest.mark.parametrize(
    ("base_torch", "pip_installs_torch", "builds"),
    [
        ("2.13.0+cu130", "", True),  # the tested torch, any CUDA build: kept
        ("2.13.0", "", True),
        ("2.12.0+cu128", "", False),  # another torch: refused before pip runs
        ("2.13.0+cu130", "2.13.0", False),  # pip replaced the base image's torch (and its CUDA build)
    ],
)
def test_the_worker_image_keeps_the_base_images_torch_only_when_it_is_the_tested_one(
    tmp_path, base_torch, pip_installs_torch, builds
):
    [install] = [
        line for line in dockerfile("Dockerfile.worker").splitlines() if line.startswith("RUN ") and "pip" in line
    ]
    (tmp_path / "python").write_text(FAKE_PYTHON)
    (tmp_path / "python").chmod(0o755)
    (tmp_path / "torch").write_text(base_torch + "\n")
    env = {
        "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}",
        "TORCH_FILE": str(tmp_path / "torch"),
        "PIP_INSTALLS_TORCH": pip_installs_torch,
    }
    result = subprocess.run(
        ["sh", "-c", install.removeprefix("RUN ")], capture_output=True, text=True, cwd=ROOT, env=env
    )
    assert (result.returncode == 0) == builds, result.stderr
    refused = f"the base image has torch {base_torch}, dreamloom is tested with {constraints()['torch']}"
    assert (refused in result.stderr) == (base_torch.split("+")[0] != constraints()["torch"]), result.stderr


def test_every_image_is_pinned_to_a_tag():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    renamed = {image["name"]: f"{image['newName']}:{image['newTag']}" for image in kustomization()["images"]}
    images = {f"compose {name}": service["image"] for name, service in compose()["services"].items()}
    images |= {f"k8s {name}": renamed.get(c["image"], c["image"]) for name, c in k8s_containers().items()}
    images |= {f"{name} FROM": image for name in ("Dockerfile.bot", "Dockerfile.worker") for image in base_images(name)}
    assert len(images) == 12
    for where, image in images.items():
        assert image_tag(image) not in ("", "latest"), f"{where}: {image} is not pinned to a tag"
        if PurePosixPath(image.split(":")[0]).name.startswith("dreamloom-"):
            assert image_tag(image) == version, f"{where}: {image} is not dreamloom {version}"
    for name in ("minio", "bucket"):
        tag = image_tag(compose()["services"][name]["image"])
        assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), f"{name}: {tag} is not a MinIO release"


def test_compose_runs_the_playground_and_a_worker_without_a_discord_token():
    assert "DISCORD_TOKEN" not in COMPOSE_SECRETS
    services = interpolated(compose(), COMPOSE_SECRETS)["services"]
    assert enabled_services(services, set()) == {"redis", "minio", "bucket", "web", "worker"}
    assert enabled_services(services, {"discord"}) == set(services)
    assert services["bot"]["profiles"] == ["discord"]
    for profiles in (set(), {"discord"}):
        running = enabled_services(services, profiles)
        built = {services[name]["image"] for name in running if "build" in services[name]}
        for name in running:
            assert set(services[name].get("depends_on", {})) <= running, f"{name} needs a service not running"
            if services[name]["image"].startswith("dreamloom-"):
                assert services[name]["image"] in built, f"nothing running builds {name}'s image"
    # Started without a token anyway, the bot says what is missing and stops (before it connects to anything).
    bot = services["bot"]
    assert bot["environment"]["DISCORD_TOKEN"] == ""
    env = {"PATH": os.environ.get("PATH", "")} | {key: str(value) for key, value in bot["environment"].items()}
    module, function = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["dreamloom"].split(
        ":"
    )
    dreamloom = f"import sys\nfrom {module} import {function}\nsys.exit({function}(sys.argv[1:]))"
    result = subprocess.run(
        [sys.executable, "-c", dreamloom, *bot["command"][1:]],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode != 0
    assert "DISCORD_TOKEN is not set" in result.stderr, result.stderr[-2000:]


def test_every_dreamloom_container_mounts_a_model_registry_that_parses(tmp_path):
    lines = (DEPLOY / ".env.example").read_text().splitlines()
    assert f"# DREAMLOOM_MODELS={MODELS_TOML}" in lines, "documented, and off by default: the demo model runs"
    for env, source in (
        (COMPOSE_SECRETS, "./models.example.toml"),  # relative to deploy/, as compose reads it
        (COMPOSE_SECRETS | {"DREAMLOOM_MODELS_FILE": "/srv/models.toml"}, "/srv/models.toml"),
    ):
        services = interpolated(compose(), env)["services"]
        for name in dreamloom_services():
            [mount] = [v for v in services[name]["volumes"] if isinstance(v, dict) and v["target"] == MODELS_TOML]
            assert (mount["type"], mount["source"], mount["read_only"]) == ("bind", source, True), name
            assert mount["bind"]["create_host_path"] is False, f"{name}: a missing file must not become a folder"
            assert "DREAMLOOM_MODELS" not in services[name]["environment"], f"{name}: the demo model by default"
    example = Registry.from_toml(DEPLOY / "models.example.toml")
    assert {entry.family for entry in example.entries} == {"sd-turbo", "sdxl"}

    configmap = k8s_object("ConfigMap", "dreamloom-models")
    (tmp_path / "models.toml").write_text(configmap["data"][PurePosixPath(MODELS_TOML).name])
    assert Registry.from_toml(tmp_path / "models.toml") == example, "the manifests carry the example's models"
    assert "DREAMLOOM_MODELS" not in k8s_object("ConfigMap", "dreamloom-config")["data"]
    mounted = set()
    for workload, pod in k8s_pods().items():
        volumes = pod.get("volumes", [])
        registries = {v["name"] for v in volumes if v.get("configMap", {}).get("name") == "dreamloom-models"}
        for container in pod["containers"]:
            if container["image"].startswith("dreamloom-"):
                mounts = [m for m in container.get("volumeMounts", []) if m["name"] in registries]
                where = [(m["mountPath"], m.get("readOnly")) for m in mounts]
                assert where == [(str(PurePosixPath(MODELS_TOML).parent), True)], workload
                mounted.add(container["name"])
    assert mounted == SERVICE_COMMANDS


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
