"""Report tasks: the Celery-facing edge. The work lives in taskapp.reports.service.

``reports.generate`` validates the request, then either generates the report itself or, for a
long range of a splittable report, replaces itself with a chord: ``reports.generate_part`` per
part in parallel, then ``reports.merge``. The chord's merge inherits the task id, so the caller's
``AsyncResult`` follows it through to the final result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import chord, signals

from config.settings import load_settings
from taskapp.app import app
from taskapp.reports import runtimes, service
from taskapp.retry import retry_policy

__all__ = ["generate_report", "generate_part", "merge_report"]

# The recorder is a service (no Celery); connecting it to Celery's task signals is the edge's job.
signals.task_prerun.connect(runtimes.on_prerun, weak=False, dispatch_uid="reports.runtime.prerun")
signals.task_postrun.connect(
    runtimes.on_postrun, weak=False, dispatch_uid="reports.runtime.postrun"
)
# Buffered rows are written when a pool process (prefork) or the worker (solo, threads) stops.
signals.worker_process_shutdown.connect(
    runtimes.flush, weak=False, dispatch_uid="reports.runtime.flush.process"
)
signals.worker_shutdown.connect(runtimes.flush, weak=False, dispatch_uid="reports.runtime.flush")


def _progress(task: Any, task_id: str | None = None) -> service.Progress:
    def report(done: int, total: int, rows: int | None) -> None:
        meta = {"done": done, "total": total, "rows": rows}
        if task_id is None:
            task.update_state(state="PROGRESS", meta=meta)
        else:
            task.backend.store_result(task_id, meta, "PROGRESS")

    return report


def _notify(result: dict[str, Any], recipients: tuple[str, ...], report_id: str) -> dict[str, Any]:
    """Send the download link to each recipient, by task name; the file exists by now."""
    if not recipients:
        return result
    message = service.notification(result)
    sent = []
    for to in recipients:
        # A redelivered report task sends again; the key lets email.send deliver only once.
        kwargs = {**message, "idempotency_key": f"report:{report_id}:{to}"}
        email = app.send_task("email.send", args=[to], kwargs=kwargs)
        sent.append({"to": to, "task_id": email.id})
    return {**result, "notified": sent}


@app.task(
    bind=True,
    name="reports.generate",
    soft_time_limit=840,
    time_limit=900,
    **retry_policy(backoff=5, backoff_max=300, max_retries=5),
)
def generate_report(
    self: Any,
    name: str,
    params: Mapping[str, Any] | None = None,
    format: str = "csv",
    notify: list[str] | None = None,
) -> dict[str, Any]:
    """Generate report ``name`` as ``format``, upload it to S3, return its key and a URL."""
    request = service.ReportRequest.build(name, params, format, notify)
    parts = request.split(load_settings().report_part_days)
    if len(parts) > 1:
        report_id = self.request.id
        _progress(self)(0, len(parts), 0)
        header = [
            generate_part.s(name, part, report_id, index, len(parts))
            for index, part in enumerate(parts)
        ]
        body = merge_report.s(name, request.params, format, list(request.notify))
        return self.replace(chord(header, body))  # type: ignore[no-any-return]
    result = service.generate(request, self.request.id, progress=_progress(self))
    return _notify(result, request.notify, self.request.id)


@app.task(
    bind=True,
    name="reports.generate_part",
    soft_time_limit=270,
    time_limit=300,
    **retry_policy(backoff=5, backoff_max=300, max_retries=5),
)
def generate_part(
    self: Any, name: str, params: Mapping[str, Any], report_id: str, index: int, total: int
) -> dict[str, Any]:
    """Write part ``index`` of report ``report_id`` (a sub-range) to S3 for the merge."""
    request = service.ReportRequest.build(name, params, "csv")
    part = service.generate_part(request, report_id, index)
    # Parts finish in any order: count the part objects written so far. Rows are unknown here.
    _progress(self, report_id)(service.parts_done(report_id), total, None)
    return part


@app.task(
    bind=True,
    name="reports.merge",
    soft_time_limit=840,
    time_limit=900,
    **retry_policy(backoff=5, backoff_max=300, max_retries=5),
)
def merge_report(
    self: Any,
    parts: list[dict[str, Any]],
    name: str,
    params: Mapping[str, Any],
    format: str = "csv",
    notify: list[str] | None = None,
) -> dict[str, Any]:
    """Concatenate a big report's parts in order into its format; notify; return the result."""
    request = service.ReportRequest.build(name, params, format, notify)
    result = service.merge(request, self.request.id, parts, progress=_progress(self))
    return _notify(result, request.notify, self.request.id)
