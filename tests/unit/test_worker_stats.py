"""Counters only a worker sees (heartbeat renewals and failures, idempotency waits): each worker
adds them to its ``worker_stats`` row in one statement per heartbeat tick."""

from __future__ import annotations

import multiprocessing

from sqlalchemy.exc import OperationalError

from taskapp import workerstats
from taskapp.db import engine
from tests.unit.test_claim_renewal import statements


def test_each_tick_adds_to_the_workers_row_in_one_statement(database_url: str) -> None:
    eng = engine(database_url)
    tally = workerstats.Tally()
    before = workerstats.waits()
    # given: two workers; the first ticks three times, with a wait between its ticks
    with statements(eng) as seen:
        assert tally.tick(eng, "w1@host", renewed=4, failed=0)
        workerstats.count_wait()
        assert tally.tick(eng, "w1@host", renewed=3, failed=2)
    assert len(seen) == 2  # one statement a tick: the upsert
    workerstats.publish(eng, "w2@other", 1, 0, 0)
    # when: a tick with nothing new
    with statements(eng) as seen:
        assert not tally.tick(eng, "w1@host", renewed=0, failed=0)
    # then: no statement, and the rows hold the sums
    assert seen == []
    rows = workerstats.read(eng)
    assert {k: rows["w1@host"][k] for k in ("renewals", "failures", "waits")} == {
        "renewals": 7,
        "failures": 2,
        "waits": workerstats.waits() - before,
    }
    assert rows["w1@host"]["waits"] >= 1
    assert rows["w2@other"]["renewals"] == 1


def test_a_failed_publish_is_added_at_the_next_tick(database_url: str) -> None:
    eng = engine(database_url)
    tally = workerstats.Tally()
    assert tally.tick(eng, "w@h", renewed=1, failed=0)
    gone = engine("sqlite:////nonexistent-dir/never.db")
    try:
        tally.tick(gone, "w@h", renewed=5, failed=1)
    except OperationalError:
        pass
    else:
        raise AssertionError("expected the publish to fail")
    assert tally.tick(eng, "w@h", renewed=2, failed=0)
    row = workerstats.read(eng)["w@h"]
    assert (row["renewals"], row["failures"]) == (8, 1)


def _wait_in_child() -> None:
    workerstats.count_wait()
    workerstats.count_wait()


def test_waits_counted_in_forked_pool_children_reach_the_main_process() -> None:
    before = workerstats.waits()
    child = multiprocessing.get_context("fork").Process(target=_wait_in_child)
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert workerstats.waits() == before + 2
