"""Platform hygiene on SQLite and PostgreSQL: task results, idempotency records, sweepers."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime, timedelta

from celery.backends.database.models import ResultModelBase, Task, TaskSet
from sqlalchemy import insert, select

from taskapp import db
from taskapp.cleanup.service import run_cleanup
from taskapp.idempotency import idempotency_keys
from tests.cleanup import sweepers_for_tests
from tests.support.databases import SQLITE_ONLY

HYGIENE = ["task-results", "group-results", "idempotency-records"]


def test_missing_platform_tables_are_skipped_with_a_log_line(database_url, caplog):
    # given a database where no task result was ever stored (no celery_* tables)
    caplog.set_level(logging.INFO, logger="taskapp.cleanup")
    # when hygiene runs
    report = run_cleanup(HYGIENE, url=database_url)
    # then the result tables are skipped, said so in the log, and nothing failed
    assert report["rules"]["task-results"]["skipped"] == "table 'celery_taskmeta' does not exist"
    assert "cleanup.skip rule=group-results table=celery_tasksetmeta reason=missing" in caplog.text
    assert report["rules"]["idempotency-records"]["count"] == 0


def test_results_and_finished_idempotency_keys_past_retention_are_expired(database_url, settings):
    # given Celery's result tables and the idempotency keys, with rows on both sides of the
    # retention (TASKAPP_RESULT_EXPIRES)
    engine = db.engine(database_url)
    ResultModelBase.metadata.create_all(engine)
    keep = timedelta(seconds=settings.result_expires)
    now = datetime.now(UTC)
    old, new = (now - keep - timedelta(hours=1)), (now - keep + timedelta(hours=1))
    naive = {"old": old.replace(tzinfo=None), "new": new.replace(tzinfo=None)}
    with engine.begin() as conn:
        conn.execute(
            insert(Task.__table__),
            [
                {"task_id": f"{age}-{i}", "status": "SUCCESS", "date_done": naive[age]}
                for age in ("old", "new")
                for i in range(3)
            ],
        )
        conn.execute(
            insert(TaskSet.__table__),
            [
                {"taskset_id": "old-group", "date_done": naive["old"]},
                {"taskset_id": "new-group", "date_done": naive["new"]},
            ],
        )
        conn.execute(
            insert(idempotency_keys),
            [
                _key("done-old", "done", old),
                _key("done-new", "done", new),
                _key("running-old", "running", old),
            ],
        )
    # when hygiene runs
    report = run_cleanup(HYGIENE, url=database_url, batch_size=2)
    # then only what is past retention is gone; a running key's lease is left alone
    assert {k: v["count"] for k, v in report["rules"].items()} == {
        "task-results": 3,
        "group-results": 1,
        "idempotency-records": 1,
    }
    with engine.connect() as conn:
        assert sorted(conn.scalars(select(Task.__table__.c.task_id))) == [
            "new-0",
            "new-1",
            "new-2",
        ]
        assert list(conn.scalars(select(TaskSet.__table__.c.taskset_id))) == ["new-group"]
        assert sorted(conn.scalars(select(idempotency_keys.c.key))) == ["done-new", "running-old"]


def _key(key: str, state: str, at: datetime) -> dict:
    stamp = at.timestamp()
    return {
        "key": key,
        "task_name": "t",
        "state": state,
        "lease_until": stamp,
        "updated_at": stamp,
        "result": None,
    }


@SQLITE_ONLY
def test_sweepers_run_and_a_missing_optional_one_is_skipped(database_url, rules_file):
    # given two sweepers: one installed, one from a family that is not installed
    rules_file(
        tables=[],
        storage=[],
        hygiene=[
            {"name": "event-queues", "sweeper": "tests.cleanup.sweepers_for_tests:sweep"},
            {"name": "absent", "sweeper": "taskapp.not_installed:sweep", "optional": True},
        ],
    )
    sweepers_for_tests.calls.clear()
    # when cleanup runs dry, then for real
    dry = run_cleanup(url=database_url, dry_run=True)
    real = run_cleanup(url=database_url)
    # then the sweeper was told which, and its counts are reported; the absent one skipped
    assert sweepers_for_tests.calls == [True, False]
    assert dry["rules"]["event-queues"] == {
        "kind": "sweeper",
        "action": "would sweep",
        "count": 3,
        "unit": "items",
        "batches": 0,
        "duration_s": dry["rules"]["event-queues"]["duration_s"],
        "longest_batch_s": 0.0,
    }
    assert real["rules"]["event-queues"]["count"] == 3
    assert "not installed" in real["rules"]["absent"]["skipped"]


@SQLITE_ONLY
def test_the_monitoring_sweeper_removes_queues_of_crashed_processes(database_url, sqs, settings):
    # given a per-process event queue whose lease ran out an hour ago (its process crashed)
    name = f"{settings.queue_prefix}mon-ev-crashed{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name, tags={"taskapp:lease": str(time.time() - 3600)})
    # when cleanup runs the sweeper dry, then for real
    dry = run_cleanup(["monitoring-queues"], dry_run=True, url=database_url)
    assert sqs.list_queues(QueueNamePrefix=name).get("QueueUrls") == [url["QueueUrl"]]
    real = run_cleanup(["monitoring-queues"], url=database_url)
    # then the dry run touched nothing and said so; the real run removed the queue
    assert "cannot tell" in dry["rules"]["monitoring-queues"]["skipped"]
    assert real["rules"]["monitoring-queues"]["count"] >= 1
    live = sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", [])
    assert url["QueueUrl"] not in live
