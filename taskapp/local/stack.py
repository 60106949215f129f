"""``taskapp dev`` / ``taskapp demo``: moto, an SMTP sink, queues, and worker/beat/Flower processes.

Everything binds 127.0.0.1. Child processes run in their own sessions, so a terminal's Ctrl-C
reaches only this process, which then stops each child by PID (SIGTERM, then SIGKILL after a
grace period): no orphans, whichever way the stack ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import config
from taskapp.local.aws import LocalAWS
from taskapp.local.mail import MailSink
from taskapp.local.net import LOOPBACK, free_port, wait_for_port

__all__ = ["Stack", "Role"]

STOP_GRACE = 15.0
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
            self.argv,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()


def _celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "taskapp", *args]


class Stack:
    """The embedded local stack, rooted at ``var_dir``."""

    def __init__(self, var_dir: Path, *, flower: bool, concurrency: int = 4) -> None:
        self.var_dir = var_dir.resolve()
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
            wait_for_port(self.flower_port, timeout=30)

    def _export(self) -> None:
        # This process is a producer too (demo), so it shares the children's environment.
        self.aws.export()
        os.environ["TASKAPP_SMTP_URL"] = self.mail.url
        os.environ["TASKAPP_MAIL_DIR"] = str(self.mail.directory)
        os.environ.setdefault("TASKAPP_DATABASE_URL", f"sqlite:///{self.var_dir / 'taskapp.db'}")
        os.environ.pop("TASKAPP_PREDEFINED_QUEUES", None)

    def _provision(self) -> None:
        from config.settings import load_settings
        from taskapp.app import app
        from taskapp.aws import client
        from taskapp.db import upgrade
        from taskapp.sqs.provision import app_specs, ensure_bucket, provision

        settings = load_settings()
        upgrade(settings.database_url.get_secret_value())
        ensure_bucket(client("s3", settings), settings.bucket)
        provision(client("sqs", settings), settings, app_specs(app))

    def dead_roles(self) -> list[Role]:
        """Roles whose process has exited."""
        return [r for r in self.roles if r.process is not None and r.process.poll() is not None]

    def stop(self) -> None:
        """Stop every child by PID, then the SMTP sink and moto."""
        for role in reversed(self.roles):
            role.stop()
        self.mail.stop()
        self.aws.stop()
