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


def test_dev_serves_flower_on_loopback_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    import signal
    import time
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPP_", "AWS_"))}
    taskapp = str(Path(sys.executable).with_name("taskapp"))
    var = tmp_path / "var"
    # given `taskapp dev` running
    dev = subprocess.Popen(
        [taskapp, "dev", "--var-dir", str(var)],
        env=env,
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert dev.stdout is not None
        urls: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while "flower" not in urls and time.monotonic() < deadline:
            line = dev.stdout.readline()
            assert line, "taskapp dev exited early"
            name, _, value = line.strip().partition(": ")
            urls[name.strip()] = value
        # then it printed its URLs, all on 127.0.0.1, and Flower answers
        assert urls["flower"].startswith("http://127.0.0.1:")
        assert urls["aws (moto)"].startswith("http://127.0.0.1:")
        assert urls["smtp sink"].startswith("smtp://127.0.0.1:")
        with urllib.request.urlopen(urls["flower"] + "/healthcheck", timeout=10) as resp:
            assert resp.status == 200
        started = _descendants(dev.pid)
        assert len(started) >= 3  # worker (+ its pool), beat, flower
        # when Ctrl-C reaches it
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 0
    finally:
        if dev.poll() is None:
            dev.kill()
    # then no process it started is left
    assert [pid for pid in started if Path(f"/proc/{pid}").exists()] == []


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid``, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found
