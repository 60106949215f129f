"""What a report is: a name, a title, typed parameters, typed columns and a source of rows.

A source is either SQL text whose only inputs are bound parameters (``:start``, ``:region``),
or a Python function ``(connection, params) -> rows``. Parameters are validated before anything
touches the database; a bad one raises ``ReportParamError`` naming it.

This module imports nothing else of ``taskapp.reports``: the reports themselves are declared in
``catalogue`` and looked up by name through ``registry``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Connection, Date, DateTime, Float, String, bindparam, text
from sqlalchemy.sql.elements import TextClause
from sqlalchemy.sql.expression import column as sql_column
from sqlalchemy.types import TypeEngine

from taskapp.errors import PermanentError

__all__ = [
    "ReportParamError",
    "Param",
    "Column",
    "Chart",
    "SqlSource",
    "Report",
    "Source",
    "shorten",
]


class ReportParamError(PermanentError):
    """A report request with bad input: unknown report, bad parameter, bad range or format."""

    def __init__(self, param: str, problem: str) -> None:
        # Both values are the exception's args, so Celery rebuilds it intact from the result store.
        super().__init__(param, problem)
        self.param, self.problem = param, problem

    def __str__(self) -> str:
        return f"parameter '{self.param}': {self.problem}"


# --- parameters -----------------------------------------------------------------------------


def _parse_date(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        return date.fromisoformat(value.strip())
    raise ValueError


def _parse_int(value: object) -> int:
    if isinstance(value, bool):  # bool is an int subclass; True is not a count
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError


def _parse_str(value: object) -> str:
    if isinstance(value, str):
        return value
    raise ValueError


_PARSERS: dict[str, tuple[Callable[[object], Any], str]] = {
    "date": (_parse_date, "a date (YYYY-MM-DD)"),
    "int": (_parse_int, "an integer"),
    "str": (_parse_str, "a string"),
}


@dataclass(frozen=True)
class Param:
    """One report parameter: its type (``date``, ``int``, ``str``), default and limits."""

    name: str
    type: str
    default: Any = None  # a value, or a callable evaluated at validation time
    required: bool = False
    choices: tuple[str, ...] = ()
    max_length: int = 200
    doc: str = ""

    def parse(self, raw: object) -> Any:
        """The typed value of ``raw``; ``ReportParamError`` naming this parameter if it is bad."""
        if raw is None:
            if self.required:
                raise ReportParamError(self.name, "is required")
            return self.default() if callable(self.default) else self.default
        parse, expected = _PARSERS[self.type]
        try:
            value = parse(raw)
        except ValueError:
            raise ReportParamError(self.name, f"expected {expected}, got {shorten(raw)}") from None
        if self.type == "str" and len(value) > self.max_length:
            raise ReportParamError(self.name, f"longer than {self.max_length} characters")
        if self.choices and value not in self.choices:
            raise ReportParamError(self.name, f"must be one of {', '.join(self.choices)}")
        return value

    def to_json(self, value: Any) -> Any:
        return value.isoformat() if isinstance(value, date) else value


def shorten(raw: object) -> str:
    """``repr(raw)``, cut to 60 characters: how an error message shows a bad value."""
    shown = repr(raw)
    return shown if len(shown) <= 60 else shown[:57] + "..."


# --- columns --------------------------------------------------------------------------------

#: Column types: the SQL result type (so every dialect returns the same Python type) and the
#: parser that reads the value back from a CSV part.
_COLUMN_TYPES: dict[str, tuple[TypeEngine[Any], Callable[[str], Any]]] = {
    "date": (Date(), date.fromisoformat),
    "datetime": (DateTime(timezone=True), datetime.fromisoformat),
    "int": (BigInteger(), int),
    "float": (Float(), float),
    "str": (String(), str),
}


@dataclass(frozen=True)
class Column:
    """One output column: its name, type and a human label."""

    name: str
    type: str = "str"
    label: str = ""

    @property
    def heading(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()

    def sql_type(self) -> TypeEngine[Any]:
        return _COLUMN_TYPES[self.type][0]

    def parse_text(self, raw: str) -> Any:
        """Read back a value written to a CSV part ("" is NULL)."""
        return None if raw == "" else _COLUMN_TYPES[self.type][1](raw)


@dataclass(frozen=True)
class Chart:
    """A numeric series over time, drawn into the HTML output: ``y`` summed per ``x`` and series."""

    x: str
    y: str
    series: str | None = None
    title: str = ""


# --- sources --------------------------------------------------------------------------------

_BIND_TYPES: dict[str, TypeEngine[Any]] = {
    "date": DateTime(timezone=True),  # dates bind as UTC midnight timestamps, see _bind_value
    "int": BigInteger(),
    "str": String(),
}


@dataclass(frozen=True)
class SqlSource:
    """SQL text with bound parameters only; ``dialects`` overrides it per dialect name."""

    sql: str
    dialects: Mapping[str, str] = field(default_factory=dict)

    def statement(self, dialect: str, params: Sequence[Param], columns: Sequence[Column]) -> Any:
        clause: TextClause = text(self.dialects.get(dialect, self.sql))
        names = set(clause._bindparams)  # the parameters the SQL text mentions
        binds = [bindparam(p.name, type_=_BIND_TYPES[p.type]) for p in params if p.name in names]
        typed = [sql_column(c.name, c.sql_type()) for c in columns]
        return clause.bindparams(*binds).columns(*typed)

    def rows(
        self, conn: Connection, report: Report, values: Mapping[str, Any]
    ) -> Iterator[Sequence[Any]]:
        statement = self.statement(conn.dialect.name, report.params, report.columns)
        bound = {name: _bind_value(value) for name, value in values.items()}
        # A server-side cursor on PostgreSQL; SQLite steps through rows lazily anyway.
        result = conn.execution_options(stream_results=True, yield_per=2000).execute(
            statement, bound
        )
        yield from result


def _bind_value(value: Any) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


#: A Python source: rows from a connection and the validated parameter values.
PythonSource = Callable[[Connection, Mapping[str, Any]], Iterable[Sequence[Any]]]
Source = SqlSource | PythonSource


# --- reports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    """A named report: title, parameters, columns, and the source its rows come from.

    A report with a date range has ``start`` and ``end`` date parameters (``end`` inclusive;
    the source sees ``end`` as the exclusive next midnight). If ``splittable``, its rows are
    ordered by time first and independent across days, so the range can be cut into parts
    generated in parallel and concatenated in order.
    """

    name: str
    title: str
    source: Source
    columns: tuple[Column, ...]
    params: tuple[Param, ...] = ()
    chart: Chart | None = None
    splittable: bool = False
    description: str = ""

    @property
    def ranged(self) -> bool:
        names = {p.name for p in self.params}
        return {"start", "end"} <= names

    def validate(self, raw: Mapping[str, Any] | None, max_days: int) -> dict[str, Any]:
        """Typed parameter values with defaults filled in; ``ReportParamError`` if any is bad."""
        if raw is not None and not isinstance(raw, Mapping):
            raise ReportParamError("params", "expected an object of parameter values")
        raw = dict(raw or {})
        known = {p.name: p for p in self.params}
        for name in raw:
            if name not in known:
                raise ReportParamError(str(name), f"unknown parameter of report '{self.name}'")
        values = {p.name: p.parse(raw.get(p.name)) for p in self.params}
        if self.ranged:
            _check_range(values["start"], values["end"], max_days)
        return values

    def to_json(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Parameter values as JSON (dates as ISO strings), to pass to other tasks."""
        known = {p.name: p for p in self.params}
        return {name: known[name].to_json(value) for name, value in values.items()}

    def source_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """What the source sees: ``end`` becomes the exclusive upper bound (next midnight)."""
        values = dict(values)
        if self.ranged:
            values["end"] = values["end"] + timedelta(days=1)
        return values

    def rows(self, conn: Connection, values: Mapping[str, Any]) -> Iterator[Sequence[Any]]:
        """Stream the rows of this report for validated ``values``."""
        source_values = self.source_values(values)
        if isinstance(self.source, SqlSource):
            yield from self.source.rows(conn, self, source_values)
        else:
            yield from self.source(conn, source_values)


def _check_range(start: date, end: date, max_days: int) -> None:
    if end < start:
        raise ReportParamError("end", f"{end} is before start {start}")
    days = (end - start).days + 1
    if days > max_days:
        raise ReportParamError("end", f"range of {days} days is longer than {max_days} days")
