"""``taskapp dev`` / ``taskapp demo``: moto, an SMTP sink, queues, and worker/beat/Flower processes.

Everything binds 127.0.0.1. Child processes run in their own sessions, so a terminal's Ctrl-C
reaches only this process, which then stops them all at once: SIGTERM to every child, a shared
grace of ``STOP_GRACE`` seconds, then SIGKILL to the process group of any child still running.
A stop therefore takes at most the grace plus moto's own stop, however many children there are
and whatever they are doing (a task still running after the grace is redelivered after its
visibility timeout, like any worker crash). Each child runs under ``taskapp/local/child.py``,
which ties it to this process (it is killed if this process dies, even by SIGKILL) and skips
Python's slow exit once its program has finished.

The children are started from the calling thread and are killed when that thread ends
(``PR_SET_PDEATHSIG`` follows the thread that forked): start the stack from the thread that
lives as long as it, as ``taskapp dev`` and ``taskapp demo`` do from the main thread.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import config
from taskapp.local import child
from taskapp.local.aws import LocalAWS
from taskapp.local.mail import MailSink
from taskapp.local.net import LOOPBACK, free_port, wait_for_port

__all__ = ["Stack", "Role", "stop_all", "STOP_GRACE"]

#: Seconds every child gets, all at the same time, between SIGTERM and SIGKILL.
STOP_GRACE = 2.0
CHILD = Path(child.__file__)
#: Longest wait, after SIGKILL, for a killed child's process group to be gone, in seconds.
GROUP_SETTLE = 0.5
#: Longest wait for Flower to listen, in seconds.
FLOWER_START = 180.0
FLOWER_CONFIG = Path(config.__file__).with_name("flowerconfig.py")


@dataclass
class Role:
    """One child process of the stack."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("ab")
        self.process = subprocess.Popen(
            # -P: no script directory on sys.path; child.py puts the working directory there.
            [sys.executable, "-P", str(CHILD), str(os.getpid()), *self.argv],
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
    """SIGTERM every process at once; SIGKILL the process group of each still running after
    ``grace`` seconds (one deadline shared by all); return once they and their groups are gone."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in running:
        with suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    killed = [p.pid for p in running if p.poll() is None]
    for pgid in killed:
        # Not reaped yet, so the group ID is still ours: kill it and whatever it started.
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for process in running:
        process.wait()
    # SIGKILL is delivered when each process next runs: on a loaded machine a worker's pool
    # processes can still exist for a moment after the worker is reaped.
    settled = time.monotonic() + GROUP_SETTLE
    while any(_group_alive(pgid) for pgid in killed) and time.monotonic() < settled:
        time.sleep(0.01)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which only wait to be reaped by
    whoever inherited them, do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone while we looked
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _celery(*args: str) -> list[str]:
    """``python -m celery -A taskapp ARGS``, as the module and arguments ``child.py`` runs."""
    return ["celery", "-A", "taskapp", *args]


class Stack:
    """The embedded local stack, rooted at ``var_dir``."""

    def __init__(
        self, var_dir: Path, *, flower: bool, concurrency: int = 4, sample: bool = False
    ) -> None:
        self.var_dir = var_dir.resolve()
        #: The demo's business (taskapp/sample): its tables, and its retention rules by default.
        self.sample = sample
        self.aws = LocalAWS()
        self.mail = MailSink(self.var_dir / "mail")
        self.flower_port = free_port() if flower else None
        logs = self.var_dir / "log"
        self.roles = [
            Role(
                "worker",
                _celery(
                    "worker",
                    "-E",
                    "--loglevel=INFO",
                    "-n",
                    "dev@%h",
                    f"--concurrency={concurrency}",
                ),
                logs / "worker.log",
            ),
            Role(
                "beat",
                _celery(
                    "beat", "--loglevel=INFO", f"--schedule={self.var_dir / 'celerybeat-schedule'}"
                ),
                logs / "beat.log",
            ),
        ]
        if self.flower_port:
            self.roles.append(
                Role(
                    "flower",
                    _celery(
                        "flower",
                        f"--address={LOOPBACK}",
                        f"--port={self.flower_port}",
                        f"--conf={FLOWER_CONFIG}",
                    ),
                    logs / "flower.log",
                )
            )

    @property
    def urls(self) -> dict[str, str]:
        urls = {
            "aws (moto)": self.aws.endpoint_url,
            "smtp sink": self.mail.url,
            "mail dir": str(self.mail.directory),
            "logs": str(self.var_dir / "log"),
        }
        if self.flower_port:
            urls["flower"] = f"http://{LOOPBACK}:{self.flower_port}"
        return urls

    def start(self) -> None:
        """Start moto and the SMTP sink, provision everything, then the processes."""
        self.aws.start()
        self.mail.start()
        self._export()
        self._provision()
        env = dict(os.environ)
        for role in self.roles:
            role.start(env)
        if self.flower_port:
            flower = self.roles[-1].process
            assert flower is not None
            # Flower imports everything before it binds: 5 s here when quiet, over 30 s on a
            # loaded 2-core machine. Wait while it runs; stop at once if it exits.
            wait_for_port(
                self.flower_port, timeout=FLOWER_START, alive=lambda: flower.poll() is None
            )
        # What was built so far (moto, botocore's models, the app) lives as long as the stack:
        # keep it out of every later garbage collection, this process's exit included (a full
        # collection of it took seconds on a loaded machine, inside the 3 s a stop may take).
        gc.freeze()

    def _export(self) -> None:
        # This process is a producer too (demo), so it shares the children's environment.
        self.aws.export()
        os.environ["TASKAPP_SMTP_URL"] = self.mail.url
        os.environ["TASKAPP_MAIL_DIR"] = str(self.mail.directory)
        os.environ.setdefault("TASKAPP_DATABASE_URL", f"sqlite:///{self.var_dir / 'taskapp.db'}")
        os.environ.pop("TASKAPP_PREDEFINED_QUEUES", None)
        if self.sample:
            from taskapp.sample import RETENTION_RULES

            os.environ.setdefault("TASKAPP_RETENTION_RULES", str(RETENTION_RULES))

    def _provision(self) -> None:
        from config.settings import load_settings
        from taskapp.app import app
        from taskapp.aws import client
        from taskapp.aws.s3 import ensure_bucket
        from taskapp.db import upgrade
        from taskapp.queues import app_specs, effective_specs
        from taskapp.sqs.admin.provision import provision

        settings = load_settings()
        upgrade(settings.database_url.get_secret_value())
        if self.sample:  # before the worker starts: it checks the retention rules' tables
            from taskapp.sample import install

            install(settings.database_url.get_secret_value())
        ensure_bucket(client("s3", settings), settings.bucket)
        provision(client("sqs", settings), settings, effective_specs(app_specs(app), settings))

    def dead_roles(self) -> list[Role]:
        """Roles whose process has exited."""
        return [r for r in self.roles if r.process is not None and r.process.poll() is not None]

    def stop(self) -> None:
        """Stop every child at once (``stop_all``), then the SMTP sink and moto."""
        stop_all([r.process for r in self.roles if r.process is not None])
        for role in self.roles:
            role.close_log()
        self.mail.stop()
        self.aws.stop()
