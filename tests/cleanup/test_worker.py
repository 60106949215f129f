"""cleanup.run end to end: through SQS and the session worker, on the session database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from taskapp import db
from taskapp.cleanup.rules import RuleError
from taskapp.cleanup.runs import cleanup_runs
from taskapp.cleanup.tasks import run_cleanup
from taskapp.sample import events, seed

pytestmark = pytest.mark.integration
RULES = ["events", "inactive-customers"]


def test_cleanup_run_counts_then_cleans_through_the_worker(migrated_db, worker):
    # given the sample business in the worker's database
    now = datetime.now(UTC)
    seed(migrated_db, 300, now)
    old = select(func.count()).where(events.c.created_at < now - timedelta(days=30))
    with db.engine(migrated_db).connect() as conn:
        expected = conn.scalar(old)
    # when cleanup.run goes through the queue, dry and then for real
    dry = run_cleanup.delay(RULES, True).get(timeout=60)
    real = run_cleanup.delay(RULES).get(timeout=60)
    # then the dry run's counts are what the real run did, and the real run is recorded
    assert dry["rules"]["events"]["count"] == real["rules"]["events"]["count"] == expected > 0
    assert dry["rules"]["inactive-customers"]["count"] == 3  # customers 4, 8, 12 of 15
    assert real["rules"]["inactive-customers"]["count"] == 3
    with db.engine(migrated_db).connect() as conn:
        assert conn.scalar(old) == 0
        run = conn.execute(select(cleanup_runs).where(cleanup_runs.c.id == real["run_id"])).one()
    assert (run.status, run.total) == ("succeeded", expected + 3)


def test_an_unknown_rule_fails_once_without_retries(migrated_db, worker):
    # when cleanup.run is asked for a rule nobody configured
    result = run_cleanup.delay(["no-such-rule"])
    # then it fails permanently, naming the rule, on the first attempt
    with pytest.raises(RuleError, match="retention rule 'no-such-rule': no such rule"):
        result.get(timeout=60)
    assert result.state == "FAILURE"
    assert (result.retries or 0) == 0
