"""The local stack's children: they die with the stack, end when their program does, and a stop
reaches all of them at once (``taskapp/local/child.py``, ``taskapp.local.stack.stop_all``).

The children here run ``tests/support/program.py``, which notes what happens to it in a file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskapp.local.stack import CHILD, Role, stop_all
from tests.integration.processes import ROOT, kill_all, still_running

PROGRAM = "tests.support.program"
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")


def _role(tmp_path: Path, name: str, *options: str) -> tuple[Role, Path]:
    marker = tmp_path / f"{name}.marker"
    return Role(name, [PROGRAM, str(marker), *options], tmp_path / f"{name}.log"), marker


def _started(role: Role, marker: Path) -> None:
    """Start ``role`` (from the repository, where ``tests`` imports) and wait until it runs."""
    role.start({**os.environ, "PYTHONPATH": str(ROOT)})
    assert role.process is not None
    while "started" not in (marker.read_text() if marker.exists() else ""):
        assert role.process.poll() is None, role.log.read_text()
        time.sleep(0.01)


def test_a_stop_signals_every_child_at_once_and_kills_those_that_ignore_it(
    tmp_path: Path,
) -> None:
    # given three children: two ignore SIGTERM, one stops on it
    stubborn = [_role(tmp_path, f"stubborn{i}", "--ignore-term") for i in range(2)]
    polite = _role(tmp_path, "polite")
    for role, marker in [*stubborn, polite]:
        _started(role, marker)
    processes = [r.process for r, _ in [*stubborn, polite] if r.process is not None]
    # when they are stopped together
    stop_all(processes, grace=0.5)
    # then every one was asked first; the polite one ended by itself, the others were killed
    for _, marker in [*stubborn, polite]:
        assert "term" in marker.read_text().split()
    assert [p.returncode for p in processes] == [-signal.SIGKILL, -signal.SIGKILL, 0]
    assert polite[1].read_text().split() == ["started", "term", "atexit"]


def test_a_child_ends_when_its_program_does_though_a_thread_lingers(tmp_path: Path) -> None:
    # given a child whose program leaves a non-daemon thread sleeping for an hour
    role, marker = _role(tmp_path, "lingering", "--linger")
    _started(role, marker)
    assert role.process is not None
    # when it is asked to stop
    role.process.send_signal(signal.SIGTERM)
    # then it ends (plain Python would join the thread first) after running its exit handlers
    assert role.process.wait(timeout=60) == 0
    assert marker.read_text().split() == ["started", "term", "atexit"]


@linux_only
def test_a_child_dies_with_its_parent_even_when_the_parent_is_sigkilled(tmp_path: Path) -> None:
    # given a parent process that started a child the way the stack does
    marker = tmp_path / "orphan.marker"
    spawn = (
        "import os, subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-P', {str(CHILD)!r}, str(os.getpid()),"
        f" {PROGRAM!r}, {str(marker)!r}, '--ignore-term'], start_new_session=True)\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(3600)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", spawn], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        while "started" not in (marker.read_text() if marker.exists() else ""):
            time.sleep(0.01)
        # when the parent is SIGKILLed (it runs no clean-up at all)
        parent.kill()
        parent.wait()
        # then the child is gone too
        assert still_running([child], timeout=10) == []
    finally:
        kill_all([child])
        parent.stdout.close()


@linux_only
def test_a_child_whose_parent_died_before_it_could_watch_exits_at_once(tmp_path: Path) -> None:
    # given a child told that its parent is a process that is not its parent (PID 1)
    marker = tmp_path / "late.marker"
    argv = [sys.executable, "-P", str(CHILD), "1", PROGRAM, str(marker)]
    # when it starts, then it exits before running its program
    assert subprocess.run(argv, cwd=ROOT, timeout=60).returncode == 1
    assert not marker.exists()
