"""The shape of a task message, checked before Celery builds a request from it.

Celery trusts the fields of a task message: a ``retries`` too large for the result table, a
``chain`` entry that is not a signature, or a ``timelimit`` that is not a pair get past the
request and fail later, in the pool's result callback or after the task body ran. There they
are crashes of a task that did run, or they leak a pool slot and the worker stops taking work.
Checked here, at the message-to-request boundary, each is a dead letter with reason ``poison``
naming the field, and nothing runs.

Only the fields Celery reads to decide what runs, when, and what follows are checked; the
others (``argsrepr``, ``origin`` ...) are informational.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeGuard

from taskapp.sqs.deadletter import UnacceptableMessage

__all__ = ["check_task_message", "MAX_TASK_ID", "MAX_RETRIES", "MAX_ENTITY", "MAX_ENTITY_VERSION"]

#: Longest task id Celery's database result backend stores (``celery_taskmeta.task_id``).
MAX_TASK_ID = 155
#: Largest retry count the result table's INTEGER column holds on PostgreSQL.
MAX_RETRIES = 2**31 - 1
#: Longest ``entity`` header ``entity_versions.entity`` stores.
MAX_ENTITY = 300
#: Largest ``entity_version`` the BIGINT column holds.
MAX_ENTITY_VERSION = 2**63 - 1


def check_task_message(headers: Any, body: Any) -> None:
    """Raise :class:`UnacceptableMessage` if a protocol-1 or protocol-2 task message is
    malformed; do nothing for messages that are not task messages (Celery handles those)."""
    if isinstance(headers, Mapping) and "task" in headers:
        _check_fields(headers, "headers")
        args, kwargs, embed = _body_v2(body)
        _check_args(args, kwargs, "body")
        for name in ("callbacks", "errbacks", "chain"):
            _signatures(embed.get(name), f"body.embed.{name}")
        _signature(embed.get("chord"), "body.embed.chord", optional=True)
    elif isinstance(body, Mapping) and "task" in body:
        _check_fields(body, "body")
        _check_args(body.get("args", ()), body.get("kwargs", {}), "body")
        for name in ("callbacks", "errbacks"):
            _signatures(body.get(name), f"body.{name}")
        _signature(body.get("chord"), "body.chord", optional=True)


def _refuse(field: str, problem: str) -> UnacceptableMessage:
    return UnacceptableMessage(f"{field}: {problem}")


def _check_fields(fields: Mapping[str, Any], where: str) -> None:
    for name in ("task", "id"):
        value = fields.get(name)
        if not isinstance(value, str) or not value:
            raise _refuse(f"{where}.{name}", f"expected a non-empty string, got {value!r:.80}")
    if len(fields["id"]) > MAX_TASK_ID:
        raise _refuse(f"{where}.id", f"{len(fields['id'])} characters, at most {MAX_TASK_ID}")
    retries = fields.get("retries")
    if retries is not None and not (_is_int(retries) and 0 <= retries <= MAX_RETRIES):
        raise _refuse(f"{where}.retries", f"expected an integer 0..{MAX_RETRIES}")
    for name in ("eta", "expires"):
        _timestamp(fields.get(name), f"{where}.{name}")
    # Read only when the pool has room (Request.revoked): a bad value there stops the worker.
    stamped = fields.get("stamped_headers")
    if stamped is not None and not (
        isinstance(stamped, list | tuple) and all(isinstance(h, str) for h in stamped)
    ):
        raise _refuse(f"{where}.stamped_headers", "expected a list of header names")
    if fields.get("stamps") is not None and not isinstance(fields["stamps"], Mapping):
        raise _refuse(f"{where}.stamps", "expected an object")
    limits = fields.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list | tuple)
        and len(limits) == 2
        and all(limit is None or (_is_number(limit) and limit >= 0) for limit in limits)
    ):
        raise _refuse(f"{where}.timelimit", "expected [soft, hard] seconds (or null)")
    _check_entity(fields, where)


def _check_entity(fields: Mapping[str, Any], where: str) -> None:
    # taskapp's ordering headers: entity_version is read only when entity is set, and both go
    # into entity_versions, so a missing or huge version would fail the run after the claim.
    entity = fields.get("entity")
    if entity is None:
        return
    if not isinstance(entity, str) or not 0 < len(entity) <= MAX_ENTITY:
        raise _refuse(f"{where}.entity", f"expected a string of 1..{MAX_ENTITY} characters")
    version = fields.get("entity_version")
    if not (_is_int(version) and 0 <= version <= MAX_ENTITY_VERSION):
        raise _refuse(
            f"{where}.entity_version",
            f"expected an integer 0..{MAX_ENTITY_VERSION} with entity, got {version!r:.80}",
        )


def _body_v2(body: Any) -> tuple[Any, Any, Mapping[str, Any]]:
    if not isinstance(body, list | tuple) or len(body) != 3:
        raise _refuse("body", "expected [args, kwargs, embed]")
    args, kwargs, embed = body
    if embed is None:
        embed = {}
    if not isinstance(embed, Mapping):
        raise _refuse("body.embed", "expected an object")
    return args, kwargs, embed


def _check_args(args: Any, kwargs: Any, where: str) -> None:
    if not isinstance(args, list | tuple):
        raise _refuse(f"{where}.args", "expected a list")
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise _refuse(f"{where}.kwargs", "expected an object with string keys")


def _signatures(value: Any, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, list | tuple):
        raise _refuse(field, "expected a list of task signatures")
    for index, item in enumerate(value):
        _signature(item, f"{field}[{index}]")


def _signature(value: Any, field: str, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, Mapping) or not isinstance(value.get("task"), str):
        raise _refuse(field, "expected a task signature (an object with a string 'task')")
    if not isinstance(value.get("args", ()), list | tuple):
        raise _refuse(f"{field}.args", "expected a list")
    for name in ("kwargs", "options"):
        if not isinstance(value.get(name, {}), Mapping):
            raise _refuse(f"{field}.{name}", "expected an object")


def _timestamp(value: Any, field: str) -> None:
    if value is None:
        return
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise _refuse(field, f"expected an ISO 8601 time, got {value!r:.80}") from None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
