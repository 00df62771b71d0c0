"""docker-compose.yml and the Dockerfile, checked without a Docker daemon: the file against the
Compose Specification's own JSON schema (as vendored by check-jsonschema from the
compose-spec repository), then what the schema cannot say: the production shape, health
checks on the right ports, start order, commands the hub really has, no secrets."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from jsonschema import Draft202012Validator

from hub.cli import app as hub_cli
from hub.config import Settings

REPO = Path(__file__).resolve().parents[2]
HUB_SERVICES = ("api", "mllp", "worker", "scheduler")
_VARIABLE = re.compile(r"^\$\{[A-Z0-9_]+(:?[-?][^}]*)?\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def compose_schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def test_valid_against_the_compose_specification_schema(compose: dict[str, Any]) -> None:
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    Draft202012Validator.check_schema(schema)
    errors = sorted(Draft202012Validator(schema).iter_errors(compose), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_does_catch_mistakes(compose: dict[str, Any]) -> None:
    """The check above is not vacuous: typical slips fail it."""
    validator = Draft202012Validator(compose_schema())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["healthcheck"]["interval"] = 10  # must be a duration string
    broken["services"]["worker"]["depends_on"]["postgres"]["condition"] = "healthy"
    broken["services"]["mllp"]["restrat"] = "always"
    assert len(list(validator.iter_errors(broken))) >= 3


def test_production_shape(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"postgres", "redis", "migrate", *HUB_SERVICES}
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["scheduler"]["deploy"]["replicas"] == 1
    for name, service in services.items():
        assert "image" in service or "build" in service, name


def _argv(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def test_commands_are_real_hub_commands(services: dict[str, dict[str, Any]]) -> None:
    """Each hub service's command parses with the hub's own CLI (names and options exist)."""
    commands = typer.main.get_command(hub_cli).commands  # type: ignore[attr-defined]
    expected = {"api": "api", "mllp": "mllp", "worker": "worker", "scheduler": "scheduler",
                "migrate": "migrate"}  # fmt: skip
    for name, subcommand in expected.items():
        argv = _argv(services[name])
        assert argv[:2] == ["hub", subcommand], (name, argv)
        command = commands[subcommand]
        command.make_context(subcommand, argv[2:])  # raises on an unknown option
    assert "--no-scheduler" in _argv(services["worker"])  # the scheduler service has the job


def test_health_checks_probe_the_right_endpoint(services: dict[str, dict[str, Any]]) -> None:
    env = services["api"]["environment"]
    ops_port = env["HUB_OPS_PORT"]
    expected = {
        "api": "http://127.0.0.1:8080/readyz",  # takes traffic: ready, not just alive
        "mllp": f"http://127.0.0.1:{ops_port}/readyz",
        "worker": f"http://127.0.0.1:{ops_port}/healthz",  # a backlog is its work, not a fault
        "scheduler": f"http://127.0.0.1:{ops_port}/healthz",
    }
    for name, url in expected.items():
        check = services[name]["healthcheck"]
        assert url in " ".join(check["test"]), name
        assert check["test"][0] == "CMD"
        assert {"interval", "timeout", "retries", "start_period"} <= set(check)
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "--port 8080" in " ".join(_argv(services["api"]))
    assert any(p.endswith(":8080") for p in services["api"]["ports"])
    assert any(p.endswith(":2575") for p in services["mllp"]["ports"])
    assert "--mllp-port 2575" in " ".join(_argv(services["mllp"]))


def test_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name in HUB_SERVICES:
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name, service in services.items():
        for target in service.get("depends_on", {}):
            assert target in services, (name, target)


def test_configuration_by_environment_names_real_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    fields = set(Settings.model_fields)
    env = services["api"]["environment"]
    for key in env:
        assert key.startswith("HUB_"), key
        if key != "HUB_PROFILES":  # read by adapters.feeds.config, not Settings
            assert key[4:].lower() in fields, key
    for name in HUB_SERVICES:
        assert services[name]["environment"] == env, name
    # Longer than the drain, or Docker kills the process mid-drain.
    assert float(env["HUB_SHUTDOWN_TIMEOUT"]) < 30
    for name in HUB_SERVICES:
        assert services[name]["stop_grace_period"] == "30s"


def test_no_secrets_in_plain_text(compose: dict[str, Any]) -> None:
    def strings(node: Any, path: str = "") -> list[tuple[str, str]]:
        if isinstance(node, dict):
            return [s for k, v in node.items() for s in strings(v, f"{path}.{k}")]
        if isinstance(node, list):
            return [s for i, v in enumerate(node) for s in strings(v, f"{path}[{i}]")]
        return [(path, str(node))] if node is not None else []

    for path, value in strings(compose):
        key = path.rsplit(".", 1)[-1].upper()
        if re.search(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY", key):
            assert _VARIABLE.match(value), f"{path} must come from the environment"
        # user:password@ inside a URL: the password must be a variable too.
        for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):
            assert _VARIABLE.match(password), f"{path} has a password in plain text"


def test_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if not source.startswith(("/", ".")):
                assert source in declared, (name, source)
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_dockerfile() -> None:
    lines = [
        line.strip()
        for line in (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    instructions = [line.split(None, 1) for line in lines]
    first = dict(instructions[:1])
    assert re.match(r"^python:3\.1[1-9]-slim", first["FROM"]), first
    users = [arg for op, arg in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "the hub must not run as root"
    user_at = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    runs_after_user = [arg for op, arg in instructions[user_at:] if op == "RUN"]
    assert not runs_after_user, "installs happen before dropping privileges"
    assert any(op == "RUN" and "pip install ." in arg for op, arg in instructions)
    (health,) = [arg for op, arg in instructions if op == "HEALTHCHECK"]
    assert "/healthz" in health
    (cmd,) = [arg for op, arg in instructions if op == "CMD"]
    assert json.loads(cmd)[:2] == ["hub", "api"]  # exec form: SIGTERM reaches the hub
