"""`taskapp demo` end to end: its own moto, SMTP sink, worker and beat processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from taskapp.local.demo import FAMILY_DEMOS
from tests.integration.processes import descendants, kill_all, still_running

# Each starts a whole stack: over a minute on a loaded 2-core machine.
pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(600)]


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
    for family in FAMILY_DEMOS:  # every family ran, none was skipped
        assert f"{family}: done" in done.stdout, family
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--schedule={tmp_path}"], capture_output=True, text=True
    )
    assert leftovers.stdout == "", "beat outlived the demo"
    assert (tmp_path / "var" / "log" / "worker.log").exists()


def _dev(tmp_path: Path) -> tuple[subprocess.Popen[str], dict[str, str], list[int]]:
    """``taskapp dev`` running in ``tmp_path``: the process, its URLs, and the processes it
    started (worker and its pool, beat, Flower), once the worker is ready."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKAPP_", "AWS_"))}
    taskapp = str(Path(sys.executable).with_name("taskapp"))
    var = tmp_path / "var"
    dev = subprocess.Popen(
        [taskapp, "dev", "--var-dir", str(var)],
        env=env,
        cwd=tmp_path,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert dev.stdout is not None
    urls: dict[str, str] = {}
    while "Ctrl-C" not in (line := dev.stdout.readline()):
        assert line, "taskapp dev exited early"
        name, _, value = line.strip().partition(": ")
        urls[name.strip()] = value
    deadline = time.monotonic() + 120
    while b" ready." not in (var / "log" / "worker.log").read_bytes():
        assert dev.poll() is None, "the worker exited before it got ready"
        assert time.monotonic() < deadline, "the worker never got ready"
        time.sleep(0.1)
    return dev, urls, descendants(dev.pid)


#: A cap that tells a stop that hangs from one that is slow, not a timing goal: the 3 s target is
#: measured by bench/dev_stop.py (2.1-2.3 s here). The stop is bounded by design (one shared 2 s
#: grace, then SIGKILL of each group), so only CPU starvation stretches it: once, beside a CPU hog
#: and the suite's own 4 processes on 2 cores, it took over 10 s of wall time (Stack.stop itself
#: measured 1.9-2.2 s beside three hogs; dev now prints its own stop time to tell them apart).
STOP_BOUND = 45


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "term"])
def test_dev_serves_flower_on_loopback_and_ctrl_c_stops_every_process(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    # given `taskapp dev` running
    dev, urls, started = _dev(tmp_path)
    try:
        # then it printed its URLs, all on 127.0.0.1, and Flower answers
        assert urls["flower"].startswith("http://127.0.0.1:")
        assert urls["aws (moto)"].startswith("http://127.0.0.1:")
        assert urls["smtp sink"].startswith("smtp://127.0.0.1:")
        with urllib.request.urlopen(urls["flower"] + "/healthcheck", timeout=30) as resp:
            assert resp.status == 200
        assert len(started) >= 3  # worker (+ its pool), beat, flower
        # when Ctrl-C (or SIGTERM) reaches it
        dev.send_signal(stop_signal)
        # then it exits within a bounded stop, and no process it started is left
        try:
            code = dev.wait(timeout=STOP_BOUND)
        except subprocess.TimeoutExpired:
            dev.kill()
            pytest.fail(f"taskapp dev hung in its stop; it printed: {dev.communicate()[0]!r}")
        assert code == 0
        assert still_running(started, timeout=5) == []
        # and it said how long its own stop took (the figure bench/dev_stop.py checks)
        assert dev.stdout is not None
        assert re.search(r"^stopped in \d+\.\d s$", dev.stdout.read(), re.MULTILINE)
    finally:
        dev.kill()
        dev.wait()
        kill_all(started)


def test_dev_killed_with_sigkill_leaves_no_process(tmp_path: Path) -> None:
    # given `taskapp dev` running, with everything it started
    dev, _, started = _dev(tmp_path)
    try:
        assert len(started) >= 3
        # when it is SIGKILLed (no handler, no clean-up of its own)
        dev.kill()
        dev.wait()
        # then every process it started dies with it
        assert still_running(started, timeout=15) == []
    finally:
        kill_all(started)
