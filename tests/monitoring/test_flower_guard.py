"""Flower as users start it (``celery -A taskapp flower``), with and without ``--conf``.

Each test runs Flower as a subprocess on a free port, its own queue prefix (so its monitoring
queues never meet another module's litter check) and the session's moto server. Flower may bind
every interface here, to prove the guard, but every request goes to 127.0.0.1.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskapp.aws import client
from taskapp.local.net import free_port
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
CONF = "--conf=config/flowerconfig.py"
REFUSAL = "Flower refuses to listen"
CREDENTIALS = "ops:s3cret"
PREFIX = f"fg{uuid.uuid4().hex[:6]}-"


def listening(port: int) -> set[str]:
    """Addresses with a socket listening on TCP ``port``, from ``/proc/net/tcp{,6}``."""
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table) as rows:
            for row in list(rows)[1:]:
                local, state = row.split()[1], row.split()[3]
                host, hex_port = local.split(":")
                if state != "0A" or int(hex_port, 16) != port:
                    continue
                # the kernel prints each 32-bit word of the address in host (little-endian) order
                raw = bytes.fromhex(host)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, width, 4))
                found.add(str(ipaddress.ip_address(words)))
    return found


@dataclass
class Flower:
    """One ``celery -A taskapp flower`` subprocess and its output."""

    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, path: str, auth: str | None = None) -> tuple[int, str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if auth:
            req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=20) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def serving(self) -> bool:
        """Whether Flower answers HTTP on a loopback address of its port."""
        for host in ("127.0.0.1", "[::1]"):
            try:
                with urllib.request.urlopen(f"http://{host}:{self.port}/healthcheck", timeout=2):
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                continue
        return False

    def outcome(self, timeout: float = 120) -> str:
        """``"exited"`` or ``"serving"``, whichever happens first."""

        def settled() -> str | None:
            if self.popen.poll() is not None:
                return "exited"
            return "serving" if self.serving() else None

        try:
            return wait_for(settled, "Flower to serve or exit", timeout=timeout, interval=0.2)
        except AssertionError as exc:
            pytest.fail(f"{exc}:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        # SIGKILL: a clean shutdown (removing its monitoring queues) costs ~10 s on a loaded
        # machine and is test_live's to prove; this module's prefix keeps the litter apart.
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


StartFlower = Callable[..., Flower]


@pytest.fixture
def start_flower(tmp_path: Path, migrated_db: str) -> Iterator[StartFlower]:
    """Start ``celery -A taskapp flower ARGV --port=P`` in ``cwd``; every one is stopped by PID.

    The session database is migrated first: Flower refuses one that is not (taskapp/preflight.py).
    """
    started: list[Flower] = []

    def start(*argv: str, cwd: Path = REPO, **env: str) -> Flower:
        port = free_port()
        log = tmp_path / f"flower-{len(started)}.log"
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("FLOWER_") and k != "TASKAPP_FLOWER_BASIC_AUTH"
        }
        command = [sys.executable, "-m", "celery", "-A", "taskapp", "flower", *argv]
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [*command, f"--port={port}"],
                cwd=cwd,
                env={**base, "TASKAPP_QUEUE_PREFIX": PREFIX, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        flower = Flower(popen, port, log)
        started.append(flower)
        return flower

    yield start
    for flower in started:
        flower.stop()


ELSEWHERE = "elsewhere"  # marker: run from a directory outside the repository
#: Spellings Flower's parser resolves to every interface (more, in-process: test_flower_config).
EVERY_INTERFACE = [
    pytest.param(["-address=0.0.0.0", CONF], {}, id="single-dash-with-conf"),
    pytest.param(["--address=127.0.0.1", "--address=0.0.0.0", CONF], {}, id="repeated-with-conf"),
    pytest.param([CONF], {"FLOWER_ADDRESS": "0.0.0.0"}, id="env-with-conf"),
    pytest.param(["--address="], {}, id="empty-no-conf"),
    pytest.param(["--address=::"], {}, id="ipv6-any-no-conf"),
    pytest.param(
        ["--address=0.0.0.0", f"--conf={REPO / 'config/flowerconfig.py'}", ELSEWHERE],
        {},
        id="abs-conf-elsewhere",
    ),
]


def _run(start_flower: StartFlower, argv: list[str], env: dict[str, str], tmp: Path) -> Flower:
    cwd = tmp if ELSEWHERE in argv else REPO
    return start_flower(*(a for a in argv if a != ELSEWHERE), cwd=cwd, **env)


@pytest.mark.parametrize(("argv", "env"), EVERY_INTERFACE)
def test_every_interface_without_auth_is_refused(
    start_flower: StartFlower, tmp_path: Path, argv: list[str], env: dict[str, str]
) -> None:
    # given no authentication and an address that Flower resolves to every interface
    # when Flower starts as a user would start it
    flower = _run(start_flower, argv, env, tmp_path)
    # then it exits non-zero with one line that says why, before it ever serves a request
    assert flower.outcome() == "exited", "Flower served on every interface without auth"
    output = flower.output()
    assert flower.popen.returncode != 0, output
    refusals = [line for line in output.splitlines() if REFUSAL in line]
    assert len(refusals) == 1, output
    assert "TASKAPP_FLOWER_BASIC_AUTH" in refusals[0], output
    assert "Traceback" not in output, output


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["--address=0.0.0.0", ELSEWHERE], {}, id="no-conf-elsewhere"),
        pytest.param(["--address=", CONF], {}, id="empty-with-conf"),
    ],
)
def test_every_interface_with_basic_auth_asks_for_credentials(
    start_flower: StartFlower, tmp_path: Path, argv: list[str], env: dict[str, str]
) -> None:
    # given TASKAPP_FLOWER_BASIC_AUTH
    env = {**env, "TASKAPP_FLOWER_BASIC_AUTH": CREDENTIALS}
    # when Flower binds every interface
    flower = _run(start_flower, argv, env, tmp_path)
    assert flower.outcome() == "serving", flower.output()
    # then it really listens on every interface, and asks every request for the credentials
    assert listening(flower.port) & {"0.0.0.0", "::"}, listening(flower.port)
    assert flower.request("/")[0] == 401
    assert flower.request("/", auth="ops:wrong")[0] == 401
    assert flower.request("/", auth=CREDENTIALS)[0] == 200
    # Flower serves /metrics without auth of its own; ours asks like every other page.
    assert flower.request("/metrics")[0] == 401
    assert flower.request("/metrics", auth=CREDENTIALS)[0] == 200
    assert flower.request("/healthcheck")[0] == 200


@pytest.fixture(scope="module")
def work_queues() -> list[str]:
    """A work queue and its DLQ under this module's prefix, for the Broker page to list."""
    sqs = client("sqs")
    names = ["default", "default-dlq"]
    for name in names:
        sqs.create_queue(QueueName=PREFIX + name)
    return names


@pytest.mark.parametrize("where", ["repo", ELSEWHERE])
def test_without_conf_flower_binds_loopback_with_the_sqs_broker_page(
    start_flower: StartFlower, tmp_path: Path, work_queues: list[str], where: str
) -> None:
    # given no --conf and no address, as Celery users start Flower
    argv = [ELSEWHERE] if where == ELSEWHERE else []
    flower = _run(start_flower, argv, {"FLOWER_UNAUTHENTICATED_API": "1"}, tmp_path)
    # when it starts
    assert flower.outcome() == "serving", flower.output()
    # then it binds loopback only, and the project's Broker page and queue lengths answer
    assert listening(flower.port) == {"127.0.0.1"}
    status, page = flower.request("/broker")
    assert status == 200, page[-2000:]
    assert "Amazon SQS" in page, page[-2000:]
    status, body = flower.request("/api/queues/length")
    assert status == 200, body
    rows = {row["name"]: row for row in json.loads(body)["active_queues"]}
    assert set(work_queues) <= rows.keys()
    assert rows["default-dlq"]["dlq_of"] == "default"
