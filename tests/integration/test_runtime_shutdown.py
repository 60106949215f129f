"""A warm shutdown writes the runtimes a worker still buffers (issue 16: rows go in batches).

The pool process's writer thread is slowed to an hour here, so only the shutdown can have
written the rows; a real prefork worker runs the tasks and stops on SIGTERM, as on a deploy.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from config.settings import Settings
from taskapp.db import engine
from taskapp.queues import app_specs
from taskapp.reports.runtimes import task_runs
from taskapp.sqs.admin.provision import provision
from tests.integration.processes import worker_process
from tests.support.queues import prefixed_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Imported first by the worker process: its runtime writer waits for a full batch or an hour.
SLOW_WRITER = """
import taskapp.reports.runtimes as runtimes
runtimes.FLUSH_SECONDS = 3600.0
"""


def test_a_warm_shutdown_writes_every_buffered_runtime(
    app: Any, sqs: Any, settings: Settings, provisioned: Any, tmp_path: Path
) -> None:
    # given a prefork worker on queues of its own whose runtime writer never fires by itself
    prefix = settings.queue_prefix + "rt-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    (tmp_path / "sitecustomize.py").write_text(SLOW_WRITER)
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "TASKAPP_QUEUE_PREFIX": prefix, "PYTHONPATH": path}
    producer = prefixed_app(app, prefix)
    log = tmp_path / "worker.log"
    with worker_process(env, "runtimes", log) as proc:
        # when it runs five tasks (their results read by another process: this one)
        sent = [producer.send_task("tests.add", args=(i, 1)) for i in range(5)]
        assert [r.get(timeout=60, interval=0.1) for r in sent] == [1, 2, 3, 4, 5]
        # and stops warm
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    # then every execution's runtime is in the table
    ids = [r.id for r in sent]
    with engine(settings.database_url.get_secret_value()).connect() as conn:
        found = conn.execute(select(task_runs.c.task_id).where(task_runs.c.task_id.in_(ids)))
        assert sorted(found.scalars()) == sorted(ids)
