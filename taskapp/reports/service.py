"""Generating reports: validate a request, stream rows into a format, upload, presign.

A small report is generated in one go (``generate``). A splittable report whose range is longer
than ``TASKAPP_REPORT_PART_DAYS`` is cut into parts (``ReportRequest.split``): each part's rows go
to a header-less CSV object (``generate_part``), and ``merge`` concatenates them in order into
the requested format. No Celery here: ``taskapp.reports.tasks`` wires these into tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import escape
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from config.settings import load_settings
from taskapp import db
from taskapp.errors import PermanentError, RetryableError
from taskapp.reports import delivery
from taskapp.reports.catalogue import get_report
from taskapp.reports.definitions import Report, ReportParamError
from taskapp.reports.formats import (
    FORMATS,
    Sink,
    read_csv_rows,
    validate_format,
    write_csv,
    write_html,
    write_xlsx,
)
from taskapp.reports.pdf import write_pdf

__all__ = [
    "ReportRequest",
    "Progress",
    "generate",
    "generate_part",
    "merge",
    "notification",
    "parts_done",
]

#: ``progress(done, total, rows)``: parts finished of all parts, rows written so far (or None).
Progress = Callable[[int, int, int | None], None]
#: A running inline report reports its row count this often.
PROGRESS_EVERY = 10_000
MAX_RECIPIENTS = 50


@dataclass(frozen=True)
class ReportRequest:
    """A validated request: the report, typed parameter values, format and who to notify."""

    report: Report
    values: Mapping[str, Any]
    format: str
    notify: tuple[str, ...] = ()

    @classmethod
    def build(
        cls,
        name: object,
        params: Mapping[str, Any] | None = None,
        format: object = "csv",
        notify: object = None,
    ) -> ReportRequest:
        """Validate everything up front; ``ReportParamError`` names the first bad parameter."""
        report = get_report(name)
        fmt = validate_format(format)
        values = report.validate(params, load_settings().report_max_days)
        return cls(report, values, fmt, _recipients(notify))

    @property
    def params(self) -> dict[str, Any]:
        """Parameter values as JSON, for task arguments and the result."""
        return self.report.to_json(self.values)

    def split(self, part_days: int) -> list[dict[str, Any]]:
        """JSON parameters of each part, in order; one part unless the range is long."""
        if not (self.report.splittable and self.report.ranged):
            return [self.params]
        start, end = self.values["start"], self.values["end"]
        parts = []
        while start <= end:
            last = min(end, start + timedelta(days=part_days - 1))
            parts.append(self.report.to_json({**self.values, "start": start, "end": last}))
            start = last + timedelta(days=1)
        return parts

    def filename(self) -> str:
        if self.report.ranged:
            stem = f"{self.report.name}_{self.values['start']}_{self.values['end']}"
        else:
            stem = self.report.name
        return f"{stem}.{FORMATS[self.format].extension}"

    def key(self, report_id: str) -> str:
        return delivery.report_key(self.report.name, report_id, self.filename())


def _recipients(notify: object) -> tuple[str, ...]:
    if notify is None:
        return ()
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, list | tuple) or len(notify) > MAX_RECIPIENTS:
        raise ReportParamError("notify", f"expected a list of up to {MAX_RECIPIENTS} emails")
    for address in notify:
        if not isinstance(address, str) or "@" not in address or len(address) > 320:
            raise ReportParamError("notify", f"not an email address: {address!r:.60}")
    return tuple(notify)


# --- running a source -----------------------------------------------------------------------


def _engine(url: str | None) -> Any:
    # Resolved at use time: db.engine(None) caches whichever default it saw first.
    return db.engine(url or load_settings().database_url.get_secret_value())


def _db_errors(report: Report, rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    """Rows, with database errors translated at the boundary."""
    try:
        yield from rows
    except OperationalError as exc:
        # SQLite reports a missing table as an OperationalError; no retry will create it.
        if "no such table" in str(exc.orig):
            raise PermanentError(f"report '{report.name}': {exc.orig}") from exc
        raise RetryableError(f"report '{report.name}': database unavailable") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise RetryableError(f"report '{report.name}': connection lost") from exc
        raise PermanentError(f"report '{report.name}': {type(exc.orig).__name__}") from exc


def _counted(
    rows: Iterable[Sequence[Any]], on_count: Callable[[int], None] | None
) -> Iterator[Any]:
    for count, row in enumerate(rows, start=1):
        yield row
        if on_count and count % PROGRESS_EVERY == 0:
            on_count(count)


def _write(request: ReportRequest, rows: Iterable[Sequence[Any]], out: Sink) -> int:
    if request.format == "csv":
        return write_csv(request.report, rows, out)
    if request.format == "xlsx":
        return write_xlsx(request.report, rows, out)
    write = write_pdf if request.format == "pdf" else write_html
    return write(request.report, rows, out, params=request.params, generated_at=datetime.now(UTC))


def _result(request: ReportRequest, key: str, rows: int, size: int, parts: int) -> dict[str, Any]:
    expires_in = load_settings().report_url_expires
    return {
        "report": request.report.name,
        "title": request.report.title,
        "params": request.params,
        "format": request.format,
        "key": key,
        "url": delivery.presigned_url(key, expires_in),
        "expires_in": expires_in,
        "rows": rows,
        "bytes": size,
        "parts": parts,
    }


def _open_upload(request: ReportRequest, key: str) -> Any:
    fmt = FORMATS[request.format]
    filename = key.rsplit("/", 1)[-1]
    return delivery.upload(key, fmt.content_type, f'{fmt.disposition}; filename="{filename}"')


# --- the three steps ------------------------------------------------------------------------


def generate(
    request: ReportRequest,
    report_id: str,
    *,
    progress: Progress | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """Generate the whole report in this process and upload it; return the result."""
    key = request.key(report_id)
    on_count = (lambda n: progress(0, 1, n)) if progress else None
    try:
        with _engine(url).connect() as conn, _open_upload(request, key) as out:
            rows = _counted(
                _db_errors(request.report, request.report.rows(conn, request.values)), on_count
            )
            count = _write(request, rows, out)
    except SQLAlchemyError as exc:  # connecting, before any row
        raise RetryableError(f"report '{request.report.name}': database unavailable") from exc
    if progress:
        progress(1, 1, count)
    return _result(request, key, count, out.size, parts=1)


def generate_part(
    request: ReportRequest, report_id: str, index: int, *, url: str | None = None
) -> dict[str, Any]:
    """Write one part's rows (no header) to its CSV object; return its index, key and rows."""
    key = delivery.part_key(report_id, index)
    try:
        with _engine(url).connect() as conn, delivery.upload(key, "text/csv", "attachment") as out:
            rows = _db_errors(request.report, request.report.rows(conn, request.values))
            count = write_csv(request.report, rows, out, header=False)
    except SQLAlchemyError as exc:
        raise RetryableError(f"report '{request.report.name}': database unavailable") from exc
    return {"index": index, "key": key, "rows": count}


def parts_done(report_id: str) -> int:
    """How many parts of a big report have been written."""
    return delivery.count_objects(delivery.parts_prefix(report_id))


def merge(
    request: ReportRequest,
    report_id: str,
    parts: Sequence[Mapping[str, Any]],
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Concatenate the parts in order into the requested format, upload it, drop the parts."""
    ordered = sorted(parts, key=lambda part: int(part["index"]))
    key, total = request.key(report_id), len(ordered)
    with _open_upload(request, key) as out:
        if request.format == "csv":
            count = _merge_csv(request.report, ordered, out, progress)
        else:
            rows = _part_rows(request.report, ordered, progress)
            count = _write(request, rows, out)
    if progress:
        progress(total, total, count)
    delivery.delete_objects([str(part["key"]) for part in ordered])
    return _result(request, key, count, out.size, parts=total)


def _merge_csv(
    report: Report, parts: Sequence[Mapping[str, Any]], out: Sink, progress: Progress | None
) -> int:
    # CSV parts are already in the output's dialect: copy bytes behind one header row.
    write_csv(report, (), out)
    count = 0
    for done, part in enumerate(parts, start=1):
        with delivery.open_object(str(part["key"])) as body:
            while chunk := body.read(1024 * 1024):
                out.write(chunk)
        count += int(part["rows"])
        if progress:
            progress(done, len(parts), count)
    return count


def _part_rows(
    report: Report, parts: Sequence[Mapping[str, Any]], progress: Progress | None
) -> Iterator[list[Any]]:
    count = 0
    for done, part in enumerate(parts, start=1):
        with delivery.open_object(str(part["key"])) as body:
            for row in read_csv_rows(report, body):
                count += 1
                yield row
        if progress:
            progress(done, len(parts), count)


# --- notification ---------------------------------------------------------------------------


def notification(result: Mapping[str, Any]) -> dict[str, str]:
    """Subject and text/HTML bodies of the "your report is ready" email for ``result``."""
    hours = max(1, int(result["expires_in"]) // 3600)
    params = ", ".join(f"{k}={v}" for k, v in result["params"].items() if v is not None)
    subject = f"Report ready: {result['title']}"
    body = (
        f"{result['title']} ({params}) is ready: {result['rows']} rows, "
        f"{result['format'].upper()}.\n\nDownload it within {hours} h:\n{result['url']}\n"
    )
    html = (
        f"<p>{escape(result['title'])} ({escape(params)}) is ready: {int(result['rows'])} rows, "
        f"{escape(result['format'].upper())}.</p>"
        f'<p><a href="{escape(result["url"])}">Download the report</a> '
        f"(the link expires in {hours} h).</p>"
    )
    return {"subject": subject, "body": body, "html": html}
