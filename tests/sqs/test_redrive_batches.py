"""Redrive batches: SendMessageBatch calls within SQS's count and size limits, in order."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from taskapp.sqs.admin.redrive import BATCH_MAX_BYTES, BATCH_MAX_ENTRIES, batches_by_size
from taskapp.sqs.claimcheck import message_size

#: A small limit, so generated bodies cross it without building megabytes.
LIMIT = 300

attribute = st.fixed_dictionaries(
    {
        "DataType": st.sampled_from(["String", "Number", "String.custom"]),
        "StringValue": st.text(max_size=30),
    }
)
entry = st.fixed_dictionaries(
    {
        # Non-ASCII text: SQS counts bytes, not characters.
        "MessageBody": st.text(alphabet=st.characters(codec="utf-8"), max_size=200),
        "MessageAttributes": st.dictionaries(
            st.text(min_size=1, max_size=10), attribute, max_size=3
        ),
    }
)


def _size(e: dict[str, Any]) -> int:
    return message_size(e["MessageBody"], e["MessageAttributes"])


@hypothesis_settings(max_examples=150, deadline=None)
@given(st.lists(entry, max_size=25), st.integers(min_value=1, max_value=BATCH_MAX_ENTRIES))
def test_batches_keep_order_and_stay_within_both_limits(
    entries: list[dict[str, Any]], max_entries: int
) -> None:
    # when generated entries are split into calls
    batches = batches_by_size(entries, max_bytes=LIMIT, max_entries=max_entries)
    # then every entry is sent once, in order
    assert [e for batch in batches for e in batch] == entries
    for batch in batches:
        # and no call has too many entries or, unless it holds one message alone, too many bytes
        assert 1 <= len(batch) <= max_entries
        assert len(batch) == 1 or sum(map(_size, batch)) <= LIMIT
    # and a call ends only when the next entry would not fit (no needless calls)
    for batch, following in zip(batches, batches[1:], strict=False):
        full = len(batch) == max_entries
        assert full or sum(map(_size, batch)) + _size(following[0]) > LIMIT


def test_two_600_kb_messages_go_in_two_calls_and_small_ones_together() -> None:
    big = {"MessageBody": "x" * 600_000, "MessageAttributes": {}}
    small = {
        "MessageBody": "y" * 100,
        "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "1"}},
    }
    assert batches_by_size([big, big]) == [[big], [big]]
    assert batches_by_size([big, small, small, big]) == [[big, small, small], [big]]
    assert len(batches_by_size([small] * 25)) == 3
    # a message at the limit with its attributes goes alone
    edge = {
        "MessageBody": "z" * (BATCH_MAX_BYTES - 11),
        "MessageAttributes": small["MessageAttributes"],
    }
    assert _size(edge) == BATCH_MAX_BYTES - 11 + len("n") + len("Number") + len("1")
    assert batches_by_size([small, edge, small]) == [[small], [edge], [small]]
