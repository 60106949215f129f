"""reports.generate through the session worker on SQS (moto), S3 (moto) and both databases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult
from sqlalchemy import select

from taskapp import db
from taskapp.errors import PermanentError
from taskapp.reports import delivery
from taskapp.reports.definitions import ReportParamError
from taskapp.reports.runtimes import task_runs
from taskapp.reports.tasks import generate_part, generate_report
from tests.reports.conftest import N_ORDERS, order_count, s3_body
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

MONTH = {"start": "2025-03-01", "end": "2025-03-31"}
QUARTER = {"start": "2025-01-01", "end": "2025-03-31"}
WAIT = {"timeout": 60, "interval": 0.05}


def _runs(url: str, task_id: str) -> list[Any]:
    with db.engine(url).connect() as conn:
        return list(conn.execute(select(task_runs).where(task_runs.c.task_id == task_id)))


def test_generate_returns_key_url_and_rows_and_records_its_runtime(
    worker: Any, app_db: str, session_bucket: str, s3: Any
) -> None:
    # when a month of orders_by_day is requested through the broker
    sent = generate_report.delay("orders_by_day", MONTH, "csv")
    result = sent.get(**WAIT)
    # then the file is in S3 under reports/, and the result says where and how big
    assert result["key"].startswith("reports/orders_by_day/")
    assert result["key"].endswith(".csv")
    assert result["url"].startswith("http")
    assert result["format"] == "csv"
    assert result["parts"] == 1
    assert s3_body(s3, session_bucket, result["key"]).count(b"\r\n") == result["rows"] + 1 > 1
    # and the worker recorded how long the task ran (the source of task_activity's p50/p95);
    # task_postrun fires just after the result is stored, so wait for the row
    runs = wait_for(lambda: _runs(app_db, sent.id), "the task's runtime row", timeout=10)
    assert [(r.name, r.state) for r in runs] == [("reports.generate", "SUCCESS")]
    assert runs[0].runtime_s > 0


def test_a_long_range_runs_as_a_chord_and_merges_parts_in_order(
    worker: Any, app_db: str, session_bucket: str, s3: Any
) -> None:
    # when a quarter is requested (three parts of at most 31 days)
    sent = generate_report.delay("orders_by_day", QUARTER, "csv")
    result = sent.get(**WAIT)
    # then the caller's id carries the merged result (the merge inherited that id)
    assert result["parts"] == 3
    assert f"/{sent.id}/" in result["key"]
    lines = s3_body(s3, session_bucket, result["key"]).decode().splitlines()
    assert lines[0] == "day,region,orders,revenue_cents"
    days = [line.split(",")[0] for line in lines[1:]]
    assert days == sorted(days)
    assert days[0] >= "2025-01-01"
    assert days[-1] <= "2025-03-31"
    assert sum(int(line.split(",")[2]) for line in lines[1:]) == N_ORDERS
    assert AsyncResult(sent.id).state == "SUCCESS"
    # and no part is left behind
    assert delivery.count_objects(delivery.parts_prefix(sent.id)) == 0


def test_a_finished_part_reports_progress_on_the_report(
    worker: Any, app_db: str, session_bucket: str
) -> None:
    # given a report id whose first of three parts is generated
    report_id = f"progress-{time.time_ns()}"
    part = {**MONTH, "region": None}
    generate_part.delay("orders_by_day", part, report_id, 0, 3).get(**WAIT)
    # then the report's state shows one part of three done
    state = AsyncResult(report_id)
    assert state.state == "PROGRESS"
    assert state.info == {"done": 1, "total": 3, "rows": None}


@pytest.mark.parametrize(
    ("args", "param"),
    [
        (("no_such_report",), "name"),
        (("orders_by_day", {"start": "2025-01-01'; DROP TABLE orders; --"}), "start"),
        (("orders_by_day", {"start": "2025-03-01", "end": "2025-02-01"}), "end"),
        (("orders_by_day", {"start": "2020-01-01", "end": "2025-03-01"}), "end"),
        (("orders_by_day", MONTH, "docx"), "format"),
    ],
)
def test_bad_input_fails_once_naming_the_parameter(
    worker: Any, migrated_db: str, args: tuple[Any, ...], param: str
) -> None:
    sent = generate_report.delay(*args)
    with pytest.raises(ReportParamError) as caught:
        sent.get(**WAIT)
    assert isinstance(caught.value, PermanentError)
    assert f"parameter '{param}'" in str(caught.value)
    assert sent.state == "FAILURE"
    assert sent.retries == 0


def test_injection_through_the_worker_is_inert(
    worker: Any, app_db: str, session_bucket: str
) -> None:
    params = {**MONTH, "region": "x'; DROP TABLE orders; --"}
    result = generate_report.delay("orders_by_day", params, "xlsx").get(**WAIT)
    assert result["rows"] == 0
    assert order_count(app_db) == N_ORDERS


def test_notify_emails_the_link_after_the_file_exists(
    worker: Any,
    app: Any,
    app_db: str,
    session_bucket: str,
    s3: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if "email.send" not in app.tasks:
        pytest.skip("email.send is not installed")
    # given emails written as files
    monkeypatch.setenv("TASKAPP_EMAIL_BACKEND", "file")
    monkeypatch.setenv("TASKAPP_MAIL_DIR", str(tmp_path))
    # when a report is requested with a recipient
    result = generate_report.delay("orders_by_day", MONTH, "html", notify=["ops@example.com"]).get(
        **WAIT
    )
    # then an email.send was chained, and it delivered the download link
    (notified,) = result["notified"]
    assert notified["to"] == "ops@example.com"
    AsyncResult(notified["task_id"]).get(**WAIT)
    (message,) = tmp_path.glob("*.eml")
    text = message.read_text()
    assert "ops@example.com" in text
    assert "Report ready" in text
    assert result["key"].split("/")[-1] in text.replace("=\n", "")
    s3.head_object(Bucket=session_bucket, Key=result["key"])
