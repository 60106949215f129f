"""`taskapp demo` end to end: its own moto, SMTP sink, worker and beat processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def test_demo_exits_zero_and_leaves_no_process(tmp_path: Path) -> None:
    # given a clean environment: none of the test session's AWS or TASKAPP settings
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPP_", "AWS_"))}
    taskapp = str(Path(sys.executable).with_name("taskapp"))
    # when the demo runs
    done = subprocess.run(
        [taskapp, "demo", "--var-dir", str(tmp_path / "var")],
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        cwd=tmp_path,
    )
    # then it succeeds, says what it produced, and its children are gone
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo succeeded" in done.stdout
    assert "pong" in done.stdout
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--schedule={tmp_path}"], capture_output=True, text=True
    )
    assert leftovers.stdout == "", "beat outlived the demo"
    assert (tmp_path / "var" / "log" / "worker.log").exists()
