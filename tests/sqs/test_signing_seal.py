"""The signed copy of a task message's deciding headers (taskapp/sqs/signing.py), without a broker.

Messages are sealed as the publish hook seals them and then go through kombu's JSON, as they do
on their way through SQS; Hypothesis edits one header at a time.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kombu.utils.json import dumps, loads

from taskapp.sqs.deadletter import UnacceptableMessage
from taskapp.sqs.signing import SEAL, SIGNED_HEADERS, check, seal, strategy

MAX_AGE = 3600

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)


def _message(**extra: Any) -> tuple[dict[str, Any], list[Any]]:
    headers = {
        "lang": "py",
        "task": "tests.record",
        "id": "7a3c",
        "eta": None,
        "expires": None,
        "retries": 0,
        "timelimit": [10, 5],
        "group": None,
        "argsrepr": "('tag',)",
        "origin": "gen1@host",
        "idempotency_key": "order-42",
        "entity": "customer:42",
        "entity_version": 17,
        **extra,
    }
    return headers, [["tag"], {}, {"callbacks": None, "errbacks": None, "chain": None}]


def _sent(headers: dict[str, Any], body: list[Any], now: float | None = None) -> Any:
    """Seal like the publish hook, then a JSON round trip, like the trip through SQS."""
    seal(body, headers, now)
    return loads(dumps(headers)), loads(dumps(body))


def test_an_unchanged_message_passes() -> None:
    headers, body = _sent(*_message())
    check(headers, body, MAX_AGE)


@given(name=st.sampled_from(SIGNED_HEADERS), value=json_values)
def test_any_change_to_a_deciding_header_is_refused(name: str, value: Any) -> None:
    headers, body = _sent(*_message())
    if dumps(value, sort_keys=True) == dumps(headers.get(name), sort_keys=True):
        return  # not a change
    headers[name] = value
    with pytest.raises(UnacceptableMessage, match=name) as refused:
        check(headers, body, MAX_AGE)
    assert refused.value.reason == "signature"


@given(name=st.sampled_from(SIGNED_HEADERS))
def test_a_deciding_header_added_or_dropped_is_refused(name: str) -> None:
    headers, body = _sent(*_message())
    if headers.get(name) is None:
        headers[name] = "added"
    else:
        del headers[name]
    with pytest.raises(UnacceptableMessage, match=name):
        check(headers, body, MAX_AGE)


@given(name=st.sampled_from(["argsrepr", "origin", "lang", "x-trace"]), value=json_values)
def test_other_headers_are_not_part_of_the_seal(name: str, value: Any) -> None:
    headers, body = _sent(*_message())
    headers[name] = value
    check(headers, body, MAX_AGE)


@pytest.mark.parametrize(("signed", "lookalike"), [(1, True), (17, 17.0), (17, "17")])
def test_a_lookalike_value_is_a_change(signed: Any, lookalike: Any) -> None:
    # Equal in Python, yet different headers: strict, as the JSON on the wire is.
    headers, body = _sent(*_message(entity_version=signed))
    headers["entity_version"] = lookalike
    with pytest.raises(UnacceptableMessage, match="entity_version"):
        check(headers, body, MAX_AGE)


@pytest.mark.parametrize(
    "body",
    [
        [["tag"], {}, {"callbacks": None}],  # signed by a producer without the hook
        [["tag"], {}, {SEAL: {"headers": {}, "signed_at": "yesterday"}}],
        [["tag"], {}, {SEAL: {"headers": {}, "signed_at": float("nan")}}],
        [["tag"], {}, {SEAL: {"headers": {}, "signed_at": True}}],
        [["tag"], {}, {SEAL: ["not", "a", "dict"]}],
        [["tag"], {}],
        {"task": "tests.record", "args": ["tag"]},  # protocol 1
        None,
    ],
)
def test_a_body_without_a_seal_is_refused(body: Any) -> None:
    headers, _ = _message()
    with pytest.raises(UnacceptableMessage, match="no copy") as refused:
        check(headers, body, MAX_AGE)
    assert refused.value.reason == "signature"


def test_a_replay_older_than_the_window_is_refused() -> None:
    now = time.time()
    headers, body = _sent(*_message(), now=now - MAX_AGE - 1)
    with pytest.raises(UnacceptableMessage, match="replay window") as refused:
        check(headers, body, MAX_AGE, now=now)
    assert refused.value.reason == "signature"
    check(headers, body, MAX_AGE, now=now - 2)  # inside the window, the same message passes


@pytest.mark.parametrize("naive", [False, True])
def test_the_age_runs_from_the_eta_when_it_is_later(naive: bool) -> None:
    # A countdown longer than the window: signed long ago, due a moment ago.
    now = time.time()
    due = datetime.fromtimestamp(now - 5, UTC)
    eta = (due.replace(tzinfo=None) if naive else due).isoformat()
    headers, body = _sent(*_message(eta=eta), now=now - 3 * MAX_AGE)
    check(headers, body, MAX_AGE, now=now)
    with pytest.raises(UnacceptableMessage, match="replay window"):
        check(headers, body, MAX_AGE, now=now + MAX_AGE)


def test_sealing_drops_a_stale_seal_from_the_headers() -> None:
    # A retry re-publishes its request's custom headers, which include the old seal.
    headers, body = _message()
    headers[SEAL] = {"headers": {"id": "old"}, "signed_at": 0}
    seal(body, headers, now=1.0)
    assert SEAL not in headers
    assert body[2][SEAL] == {
        "headers": {n: headers.get(n) for n in SIGNED_HEADERS},
        "signed_at": 1.0,
    }


def test_sealing_leaves_a_body_it_does_not_know_alone() -> None:
    body = {"task": "tests.record", "args": []}
    seal(body, {"id": "x"})
    assert body == {"task": "tests.record", "args": []}


def _consumer() -> Any:
    consumer = mock.MagicMock()
    consumer.controller.state.revoked = set()
    return consumer


def test_without_signing_the_strategy_is_celerys_own(app: Any) -> None:
    task = app.tasks["tests.record"]
    handler = strategy(task, app, _consumer())
    assert handler.__name__ == "task_message_handler"  # celery.worker.strategy.default's


def test_with_signing_the_strategy_checks_before_celery_sees_the_message(app: Any) -> None:
    task = app.tasks["tests.record"]
    serializer = app.conf.task_serializer
    app.conf.task_serializer = "auth"  # only while the strategy is made
    try:
        handler = strategy(task, app, _consumer())
    finally:
        app.conf.task_serializer = serializer
    headers, body = _sent(*_message())
    message = mock.Mock(headers={**headers, "id": "fresh"}, payload=body)
    with pytest.raises(UnacceptableMessage, match="id"):
        handler(message, None, mock.Mock(), mock.Mock(), [])
    message.ack.assert_not_called()
