"""The `local` dependency group: installed in a clone by default, never in the image.

The embedded stack (moto, aiosmtpd, honcho) is a dependency group, not a runtime dependency, so
the production image does not ship it. ``tool.uv.default-groups`` keeps ``uv run taskapp demo``
and ``uv run pytest`` working in a fresh clone with no flags.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
GROUPS = PYPROJECT["dependency-groups"]


def names(group: str) -> set[str]:
    """The distribution names a dependency group lists."""
    return {Requirement(spec).name.lower() for spec in GROUPS[group] if isinstance(spec, str)}


def dockerfile_syncs() -> list[list[str]]:
    """The arguments of every ``uv sync`` the Dockerfile runs, in order."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    syncs = []
    for line in text.splitlines():
        if "uv sync" in line and not line.lstrip().startswith("#"):
            syncs.append(shlex.split(line.split("uv sync", 1)[1].split("&&", 1)[0]))
    return syncs


def uv_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    # The wheels are in uv's cache since this venv was synced: never reach out to an index.
    return {**env, "UV_OFFLINE": "1", "UV_PYTHON": sys.executable, **extra}


def test_a_clone_installs_the_local_group_by_default() -> None:
    assert names("local") == {"moto", "aiosmtpd", "honcho"}
    assert set(PYPROJECT["tool"]["uv"]["default-groups"]) == {"dev", "local"}
    runtime = {Requirement(spec).name.lower() for spec in PYPROJECT["project"]["dependencies"]}
    assert not runtime & names("local")


def test_the_image_resolves_without_the_local_and_dev_groups() -> None:
    # given the flags of the Dockerfile's dependency install (uv export knows them all but
    # --no-install-project, which only decides whether the project itself is installed)
    flags = [f for f in dockerfile_syncs()[0] if f != "--no-install-project"]
    # when uv lists what those flags install from the lock
    listed = subprocess.run(
        ["uv", "export", "--no-hashes", "--no-emit-project", *flags],
        cwd=ROOT,
        env=uv_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    installed = {Requirement(line.split(" ;")[0]).name.lower() for line in _requirements(listed)}
    # then the local stack and the dev tools are not among them, and the runtime is
    assert not installed & (names("local") | names("dev"))
    assert {"celery", "kombu", "boto3", "flower"} <= installed


def _requirements(exported: str) -> list[str]:
    return [line for line in exported.splitlines() if line and line[0].isalnum()]


@pytest.mark.slow
def test_the_image_environment_runs_the_app_and_names_the_missing_group(tmp_path: Path) -> None:
    # given a venv built with the Dockerfile's last `uv sync` (the project installed)
    venv = tmp_path / "venv"
    subprocess.run(
        ["uv", "sync", "--quiet", *dockerfile_syncs()[-1]],
        cwd=ROOT,
        env=uv_env(UV_PROJECT_ENVIRONMENT=str(venv)),
        timeout=300,
        check=True,
    )
    python = str(venv / "bin" / "python")
    # then none of the local stack is there, and every production module imports without it
    probe = subprocess.run(
        [python, "-c", IMPORT_EVERY_PRODUCTION_MODULE],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.split() == ["local-stack-absent", "imported"]
    # and `taskapp demo` says in one line how to get the group
    demo = subprocess.run(
        [str(venv / "bin" / "taskapp"), "demo", "--var-dir", str(tmp_path / "var")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert_one_line_hint(demo)


IMPORT_EVERY_PRODUCTION_MODULE = """
import importlib, importlib.util, pkgutil
import config, taskapp
assert not [m for m in ("moto", "aiosmtpd", "honcho") if importlib.util.find_spec(m)]
print("local-stack-absent")
for package in (config, taskapp):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        name = module.name
        if name.startswith(("taskapp.local.", "taskapp.migrations.")) or name.endswith(".demo"):
            continue  # the local stack and the demo, and Alembic's scripts (run by Alembic)
        importlib.import_module(name)
print("imported")
"""

#: Runs a ``taskapp`` command with one module made unimportable, as if never installed.
WITHOUT_MODULE = """
import sys
from importlib.abc import MetaPathFinder

MISSING = sys.argv[1]

class Uninstalled(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == MISSING or name.startswith(MISSING + "."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled())
from taskapp.cli import main
sys.argv = ["taskapp", *sys.argv[2:]]
main()
"""


def assert_one_line_hint(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "uv sync --group local" in lines[0]


@pytest.mark.parametrize(("command", "module"), [("demo", "moto"), ("dev", "aiosmtpd")])
def test_demo_and_dev_without_the_group_say_how_to_get_it(
    tmp_path: Path, command: str, module: str
) -> None:
    # given a clean environment where `module` is not installed
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPP_", "AWS_"))}
    # when the command runs
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_MODULE, module, command, "--var-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    # then it names the group and the command that installs it, in one line, exit 2
    assert_one_line_hint(done)
    assert module in done.stderr
