"""Generation and delivery on S3 (moto): headers, presigned URLs, parts merged in order."""

from __future__ import annotations

import io
import urllib.request
from typing import Any

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from taskapp.errors import PermanentError
from taskapp.reports import delivery, service
from taskapp.reports.service import ReportRequest
from tests.reports.conftest import s3_body

QUARTER = {"start": "2025-01-01", "end": "2025-03-31"}


def _generate(
    name: str, params: dict[str, Any], fmt: str, report_id: str, url: str
) -> dict[str, Any]:
    return service.generate(ReportRequest.build(name, params, fmt), report_id, url=url)


def _in_parts(
    name: str, params: dict[str, Any], fmt: str, report_id: str, url: str
) -> dict[str, Any]:
    request = ReportRequest.build(name, params, fmt)
    parts = [
        service.generate_part(ReportRequest.build(name, part, "csv"), report_id, index, url=url)
        for index, part in enumerate(request.split(31))
    ]
    parts.reverse()  # results may arrive in any order; the merge restores it
    return service.merge(request, report_id, parts)


def test_report_is_uploaded_with_headers_and_a_working_presigned_url(
    orders_db: str, session_bucket: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given presigned URLs that expire after ten minutes
    monkeypatch.setenv("TASKAPP_REPORT_URL_EXPIRES", "600")
    # when the report is generated as CSV
    result = _generate("orders_by_day", QUARTER, "csv", "run-1", orders_db)
    # then it is under reports/, typed and named for download
    assert result["key"] == "reports/orders_by_day/run-1/orders_by_day_2025-01-01_2025-03-31.csv"
    head = s3.head_object(Bucket=session_bucket, Key=result["key"])
    assert head["ContentType"] == "text/csv; charset=utf-8"
    assert head["ContentDisposition"] == (
        'attachment; filename="orders_by_day_2025-01-01_2025-03-31.csv"'
    )
    # and the presigned URL serves the same bytes, expiring as configured
    assert "X-Amz-Expires=600" in result["url"]
    assert result["expires_in"] == 600
    with urllib.request.urlopen(result["url"], timeout=10) as response:
        body = response.read()
    assert body == s3_body(s3, session_bucket, result["key"])
    assert body.count(b"\r\n") == result["rows"] + 1
    assert result["format"] == "csv"


def test_parts_merge_into_the_same_csv_and_are_then_deleted(
    orders_db: str, session_bucket: str, s3: Any
) -> None:
    # given the report generated in one go
    whole = _generate("orders_by_day", QUARTER, "csv", "whole", orders_db)
    # when it is generated as three parts and merged
    merged = _in_parts("orders_by_day", QUARTER, "csv", "merged", orders_db)
    # then the file is byte for byte the same, and the parts are gone
    assert merged["parts"] == 3
    assert merged["rows"] == whole["rows"]
    assert s3_body(s3, session_bucket, merged["key"]) == s3_body(s3, session_bucket, whole["key"])
    assert delivery.count_objects(delivery.parts_prefix("merged")) == 0


def test_parts_merge_into_xlsx_with_typed_rows_in_order(
    orders_db: str, session_bucket: str, s3: Any
) -> None:
    whole = _generate("orders", QUARTER, "xlsx", "x-whole", orders_db)
    merged = _in_parts("orders", QUARTER, "xlsx", "x-merged", orders_db)

    def rows(key: str) -> list[tuple[Any, ...]]:
        book = load_workbook(io.BytesIO(s3_body(s3, session_bucket, key)), read_only=True)
        return list(book.worksheets[0].iter_rows(values_only=True))

    assert rows(merged["key"]) == rows(whole["key"])
    assert len(rows(merged["key"])) == merged["rows"] + 1


def test_html_report_is_served_inline(orders_db: str, session_bucket: str, s3: Any) -> None:
    result = _generate("orders_by_day", QUARTER, "html", "h", orders_db)
    head = s3.head_object(Bucket=session_bucket, Key=result["key"])
    assert head["ContentType"] == "text/html; charset=utf-8"
    assert head["ContentDisposition"].startswith("inline;")
    assert b"data:image/png;base64," in s3_body(s3, session_bucket, result["key"])


def test_pdf_report_is_served_inline_as_a_pdf(orders_db: str, session_bucket: str, s3: Any) -> None:
    result = _generate("orders_by_day", QUARTER, "pdf", "p", orders_db)
    head = s3.head_object(Bucket=session_bucket, Key=result["key"])
    assert result["key"].endswith(".pdf")
    assert result["format"] == "pdf"
    assert head["ContentType"] == "application/pdf"
    assert head["ContentDisposition"].startswith("inline;")
    text = PdfReader(io.BytesIO(s3_body(s3, session_bucket, result["key"]))).pages[0].extract_text()
    assert f"{result['rows']} rows" in text


def test_a_big_upload_goes_multipart_and_a_failed_one_leaves_nothing(
    session_bucket: str, s3: Any
) -> None:
    # when 11 MiB are streamed (two parts of 8 MiB max)
    payload = bytes(range(256)) * (11 * 4096)
    with delivery.upload("reports/test/big.bin", "application/octet-stream", "attachment") as out:
        for start in range(0, len(payload), 1 << 20):
            out.write(payload[start : start + (1 << 20)])
    # then the object is whole
    assert s3_body(s3, session_bucket, "reports/test/big.bin") == payload

    # and when a writer fails midway, no object appears and the multipart upload is aborted
    def fail_midway() -> None:
        with delivery.upload("reports/test/broken.bin", "x/y", "a") as out:
            out.write(payload)
            raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        fail_midway()
    assert delivery.count_objects("reports/test/broken") == 0
    assert not s3.list_multipart_uploads(Bucket=session_bucket).get("Uploads")


def test_missing_object_is_a_permanent_error(session_bucket: str) -> None:
    with pytest.raises(PermanentError):
        delivery.open_object("reports/parts/nope/00000.csv")


def test_notification_carries_the_link_and_escapes_html() -> None:
    result = {
        "title": "<b>T</b>",
        "params": {"start": "2025-01-01", "region": None},
        "rows": 3,
        "format": "csv",
        "url": "https://x/y?a=1&b=2",
        "expires_in": 7200,
    }
    message = service.notification(result)
    assert message["subject"] == "Report ready: <b>T</b>"
    assert "https://x/y?a=1&b=2" in message["body"]
    assert "2 h" in message["body"]
    assert "&lt;b&gt;" in message["html"]
    assert 'href="https://x/y?a=1&amp;b=2"' in message["html"]
