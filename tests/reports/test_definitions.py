"""Report definitions: parameter validation names the bad parameter; long ranges split in order."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from taskapp.errors import PermanentError
from taskapp.reports.catalogue import get_report, report_names
from taskapp.reports.definitions import ReportParamError
from taskapp.reports.registry import Registry
from taskapp.reports.service import ReportRequest

RANGE = {"start": "2025-01-01", "end": "2025-01-31"}


def test_builtin_reports_are_registered() -> None:
    assert {"task_activity", "orders_by_day", "orders"} <= set(report_names())


@pytest.mark.parametrize(
    ("name", "params", "fmt", "notify", "param"),
    [
        ("no_such_report", None, "csv", None, "name"),
        ("orders_by_day", {"start": "yesterday"}, "csv", None, "start"),
        ("orders_by_day", {"start": "2025-01-01'; DROP TABLE orders; --"}, "csv", None, "start"),
        ("orders_by_day", {"start": 20250101}, "csv", None, "start"),
        ("orders_by_day", {"region": 7}, "csv", None, "region"),
        ("orders_by_day", {"region": "x" * 33}, "csv", None, "region"),
        ("orders_by_day", {"start": "2025-02-01", "end": "2025-01-01"}, "csv", None, "end"),
        ("orders_by_day", {"start": "2020-01-01", "end": "2025-01-01"}, "csv", None, "end"),
        ("orders_by_day", {**RANGE, "colour": "red"}, "csv", None, "colour"),
        ("orders_by_day", ["start"], "csv", None, "params"),
        ("orders_by_day", RANGE, "docx", None, "format"),
        ("orders_by_day", RANGE, "csv", ["not-an-address"], "notify"),
    ],
)
def test_bad_input_is_a_permanent_error_naming_the_parameter(
    name: str, params: Any, fmt: str, notify: Any, param: str
) -> None:
    # when a request has one bad piece
    with pytest.raises(ReportParamError) as caught:
        ReportRequest.build(name, params, fmt, notify)
    # then it is permanent (never retried) and says which parameter is wrong
    assert isinstance(caught.value, PermanentError)
    assert caught.value.param == param
    assert f"parameter '{param}'" in str(caught.value)


def test_defaults_cover_the_last_thirty_days() -> None:
    request = ReportRequest.build("orders_by_day")
    assert request.values["end"] - request.values["start"] == timedelta(days=29)
    assert request.values["region"] is None


def test_a_long_range_splits_into_contiguous_parts_in_order() -> None:
    # given a 90-day range and parts of 31 days
    request = ReportRequest.build("orders_by_day", {"start": "2025-01-01", "end": "2025-03-31"})
    # when it is split
    parts = request.split(31)
    # then the parts cover the range exactly, in order, without overlap
    spans = [(date.fromisoformat(p["start"]), date.fromisoformat(p["end"])) for p in parts]
    assert spans[0][0] == date(2025, 1, 1)
    assert spans[-1][1] == date(2025, 3, 31)
    assert all(
        nxt[0] == prev[1] + timedelta(days=1) for prev, nxt in zip(spans, spans[1:], strict=False)
    )
    assert len(parts) == 3
    assert all(p["region"] is None for p in parts)


def test_a_report_that_aggregates_over_the_whole_range_is_never_split() -> None:
    request = ReportRequest.build("task_activity", {"start": "2025-01-01", "end": "2025-03-31"})
    assert len(request.split(7)) == 1


def test_a_format_that_is_not_a_string_is_a_param_error_not_a_crash() -> None:
    # FORMATS is a dict: a list must be refused before it is looked up (unhashable)
    with pytest.raises(ReportParamError) as caught:
        ReportRequest.build("orders", RANGE, ["csv"])
    assert str(caught.value) == (
        "parameter 'format': unsupported ['csv']; use one of ('csv', 'xlsx', 'html', 'pdf')"
    )


def test_a_registry_refuses_two_reports_under_one_name() -> None:
    orders = get_report("orders")
    with pytest.raises(ValueError, match="two reports are named 'orders'"):
        Registry([orders, orders])
