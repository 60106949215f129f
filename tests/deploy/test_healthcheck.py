"""docker/healthcheck.py: the beat check fails unless beat keeps rewriting its schedule file."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import celery.beat
from celery import Celery

#: A schedule file no working beat leaves unwritten this long, in seconds.
STALE = 3600
SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", SCRIPT)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


healthcheck = _module()


def beat_check(cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the check as compose does: ``python docker/healthcheck.py beat`` in the app folder."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), "beat"], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def scheduler(app_dir: Path) -> celery.beat.PersistentScheduler:
    """A real persistent beat scheduler writing ``var/celerybeat-schedule`` as compose's does."""
    (app_dir / "var").mkdir(exist_ok=True)
    app = Celery(broker="memory://", set_as_current=False)
    path = str(app_dir / "var" / "celerybeat-schedule")
    return celery.beat.PersistentScheduler(app, schedule_filename=path, lazy=False)


def age(app_dir: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in (app_dir / "var").glob("celerybeat-schedule*"):
        os.utime(path, (then, then))


def test_beat_is_unhealthy_without_a_schedule_file(tmp_path: Path) -> None:
    assert beat_check(tmp_path).returncode == 1


def test_beat_is_healthy_while_it_rewrites_its_schedule_and_not_once_it_stops(
    tmp_path: Path,
) -> None:
    # given beat has just written its schedule file
    beat = scheduler(tmp_path)
    assert beat_check(tmp_path).returncode == 0
    # when it stops rewriting it (hung, or the file is a previous run's) past the bound
    age(tmp_path, STALE)
    # then the check fails, and says why (before: any file at all passed)
    stale = beat_check(tmp_path)
    assert stale.returncode == 1
    assert "celerybeat-schedule" in stale.stderr
    # when beat syncs again, as a working beat does every sync_every seconds
    beat.sync()
    # then it is healthy again
    assert beat_check(tmp_path).returncode == 0
    beat.close()


def test_the_bound_covers_the_longest_gap_between_two_writes_of_a_working_beat() -> None:
    # A working beat sleeps at most max_interval, then writes once sync_every has passed: the
    # bound must exceed both together, or a healthy beat would be restarted.
    app = Celery(broker="memory://", set_as_current=False)
    longest_gap = celery.beat.Scheduler.sync_every + (
        app.conf.beat_max_loop_interval or celery.beat.DEFAULT_MAX_INTERVAL
    )
    assert longest_gap < healthcheck.BEAT_MAX_AGE < STALE
