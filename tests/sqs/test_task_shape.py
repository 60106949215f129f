"""taskapp/sqs/shape.py: a malformed task message is refused, field named, before it runs."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskapp.sqs.deadletter import UnacceptableMessage
from taskapp.sqs.shape import MAX_RETRIES, MAX_TASK_ID, check_task_message

HEADERS = {"task": "tests.record", "id": "a1", "retries": 0, "eta": None, "timelimit": [None, None]}
BODY = ([1], {"x": 1}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None})


def _with(mapping: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**mapping, **changes}


def test_a_well_formed_message_and_what_celery_sends_pass(app: Any) -> None:
    # given what Celery itself puts on the wire for a chain
    sig = app.signature("tests.record", args=(1,)) | app.signature("tests.record", args=(2,))
    message = app.amqp.as_task_v2("id-1", "tests.record", args=(1,), chain=[dict(sig.tasks[1])])
    # then
    check_task_message(HEADERS, BODY)
    check_task_message(message.headers, message.body)


@pytest.mark.parametrize(
    ("headers", "body", "field"),
    [
        (_with(HEADERS, id=5), BODY, "headers.id"),
        (_with(HEADERS, id="x" * (MAX_TASK_ID + 1)), BODY, "headers.id"),
        (_with(HEADERS, task=["a"]), BODY, "headers.task"),
        (_with(HEADERS, retries=MAX_RETRIES + 1), BODY, "headers.retries"),
        (_with(HEADERS, retries=-1), BODY, "headers.retries"),
        (_with(HEADERS, retries=True), BODY, "headers.retries"),
        (_with(HEADERS, eta="soon"), BODY, "headers.eta"),
        (_with(HEADERS, expires=3), BODY, "headers.expires"),
        (_with(HEADERS, timelimit="abc"), BODY, "headers.timelimit"),
        (_with(HEADERS, timelimit=[1, 2, 3]), BODY, "headers.timelimit"),
        (_with(HEADERS, stamped_headers=True), BODY, "headers.stamped_headers"),
        (_with(HEADERS, stamped_headers=[["a"]]), BODY, "headers.stamped_headers"),
        (_with(HEADERS, stamps=[1]), BODY, "headers.stamps"),
        (_with(HEADERS, entity="customer:1"), BODY, "headers.entity_version"),
        (_with(HEADERS, entity="c", entity_version="7"), BODY, "headers.entity_version"),
        (_with(HEADERS, entity="c", entity_version=2**63), BODY, "headers.entity_version"),
        (_with(HEADERS, entity="c", entity_version=-1), BODY, "headers.entity_version"),
        (_with(HEADERS, entity=42, entity_version=1), BODY, "headers.entity"),
        (_with(HEADERS, entity="e" * 301, entity_version=1), BODY, "headers.entity"),
        (HEADERS, [1, 2], "body"),
        (HEADERS, ({}, {}, {}), "body.args"),
        (HEADERS, ([], [], {}), "body.kwargs"),
        (HEADERS, ([], {}, 5), "body.embed"),
        (HEADERS, ([], {}, {"chain": [{"task": 5}]}), "body.embed.chain[0]"),
        (HEADERS, ([], {}, {"callbacks": -1}), "body.embed.callbacks"),
        (
            HEADERS,
            ([], {}, {"errbacks": [{"task": "t", "options": []}]}),
            "body.embed.errbacks[0].options",
        ),
        (HEADERS, ([], {}, {"chord": "x"}), "body.embed.chord"),
        ({}, {"task": "t", "id": "i", "args": [], "kwargs": {}, "callbacks": -1}, "body.callbacks"),
    ],
)
def test_each_malformed_field_is_refused_by_name(headers: Any, body: Any, field: str) -> None:
    with pytest.raises(UnacceptableMessage) as refused:
        check_task_message(headers, body)
    assert refused.value.reason == "poison"
    assert str(refused.value).startswith(f"{field}:")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


FIELDS = st.sampled_from(
    [*HEADERS, "expires", "stamped_headers", "stamps", "entity", "entity_version"]
)


@given(headers=st.dictionaries(FIELDS, JSON), body=JSON)
def test_any_json_passes_or_is_refused_never_raises_otherwise(headers: Any, body: Any) -> None:
    with contextlib.suppress(UnacceptableMessage):
        check_task_message({"task": "t", "id": "i", **headers}, body)
