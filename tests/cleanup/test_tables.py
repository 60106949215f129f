"""Table retention on SQLite and PostgreSQL: batched deletes, anonymize, dry run, resume."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from taskapp import db
from taskapp.cleanup.rules import RuleError, load_rules, validate_rules
from taskapp.cleanup.runs import cleanup_runs, start_run
from taskapp.cleanup.service import run_cleanup
from taskapp.sample import customers, events, install, orders, seed

NOW = datetime(2024, 6, 1, tzinfo=UTC)
TABLE_RULES = ["events", "inactive-customers"]


def rows(url, query):
    with db.engine(url).connect() as conn:
        return conn.execute(query).all()


def count(url, table, *where):
    return rows(url, select(func.count()).select_from(table).where(*where))[0][0]


def old_events(url):
    return count(url, events, events.c.created_at < NOW - timedelta(days=30))


def test_a_dry_run_counts_and_changes_nothing(database_url):
    # given the sample business, with about half its events older than 30 days
    seed(database_url, 400, NOW)
    expected_events = old_events(database_url)
    before = rows(database_url, select(customers).order_by(customers.c.id))
    # when cleanup runs dry
    report = run_cleanup(TABLE_RULES, dry_run=True, url=database_url, now=NOW)
    # then it reports what it would touch...
    assert report["dry_run"] is True
    assert report["run_id"] is None
    assert report["rules"]["events"]["count"] == expected_events > 0
    assert report["rules"]["inactive-customers"]["count"] == 5  # every 4th of 20 customers
    # ...and nothing changed: not the data, not even the runs table
    assert count(database_url, events) == 400
    assert rows(database_url, select(customers).order_by(customers.c.id)) == before
    assert count(database_url, cleanup_runs) == 0


def test_a_run_deletes_old_rows_in_batches_and_records_itself(database_url):
    # given the sample business
    seed(database_url, 400, NOW)
    expected = old_events(database_url)
    # when cleanup runs with batches of 50 rows
    report = run_cleanup(["events"], url=database_url, now=NOW, batch_size=50)
    # then exactly the old events are gone, in ceil(expected / 50) transactions
    result = report["rules"]["events"]
    assert result["count"] == expected
    assert result["batches"] == -(-expected // 50)
    assert count(database_url, events) == 400 - expected
    assert old_events(database_url) == 0
    assert count(database_url, orders) == 400  # no rule for orders
    # and the run is recorded with its per-rule counts
    (run,) = rows(database_url, select(cleanup_runs))
    assert (run.id, run.status, run.dry_run) == (report["run_id"], "succeeded", False)
    assert run.total == expected
    assert run.results["events"]["count"] == expected
    assert run.duration_s == report["duration_s"]


def test_anonymize_replaces_columns_once_and_leaves_the_rest(database_url):
    # given the sample business: customers 4, 8, 12, 16, 20 inactive for over a year
    seed(database_url, 400, NOW)
    active_before = rows(database_url, select(customers).where(customers.c.id % 4 != 0))
    # when cleanup anonymizes inactive customers, twice
    first = run_cleanup(["inactive-customers"], url=database_url, now=NOW, batch_size=2)
    second = run_cleanup(["inactive-customers"], url=database_url, now=NOW, batch_size=2)
    # then the first run replaced their name and email, keyed by id; the second found nothing
    assert first["rules"]["inactive-customers"]["count"] == 5
    assert second["rules"]["inactive-customers"]["count"] == 0
    quiet = rows(
        database_url,
        select(customers.c.id, customers.c.name, customers.c.email, customers.c.region)
        .where(customers.c.id % 4 == 0)
        .order_by(customers.c.id),
    )
    assert [(r.name, r.email) for r in quiet] == [
        ("anonymized", f"anonymized-{i}@invalid") for i in (4, 8, 12, 16, 20)
    ]
    assert all(r.region for r in quiet)  # not in "replace": kept for reporting
    assert rows(database_url, select(customers).where(customers.c.id % 4 != 0)) == active_before


class Killed(BaseException):
    """Stands in for the worker being killed between two batches."""


def test_a_killed_run_resumes_to_the_same_end_state(database_url):
    # given the sample business, and a run killed after its second batch
    seed(database_url, 400, NOW)
    expected = old_events(database_url)

    def kill_after_two(rule, done):
        if done >= 2 * 30:
            raise Killed

    with pytest.raises(Killed):
        run_cleanup(TABLE_RULES, url=database_url, now=NOW, batch_size=30, on_batch=kill_after_two)
    # then the two committed batches stayed done and the run is recorded as failed
    assert old_events(database_url) == expected - 60
    (killed,) = rows(database_url, select(cleanup_runs))
    assert killed.status == "failed"
    assert "Killed" in killed.error
    # when it runs again
    report = run_cleanup(TABLE_RULES, url=database_url, now=NOW, batch_size=30)
    # then it finishes the job: the end state is that of one uninterrupted run
    assert report["rules"]["events"]["count"] == expected - 60
    assert report["rules"]["inactive-customers"]["count"] == 5
    assert old_events(database_url) == 0
    assert count(database_url, events) == 400 - expected


def test_a_run_left_running_by_a_crash_is_marked_interrupted(database_url):
    # given a run row a crashed worker left "running" two hours ago (on the demo's tables)
    install(database_url)
    engine = db.engine(database_url)
    crashed = start_run(engine, NOW - timedelta(hours=2), ["events"], timedelta(hours=1))
    # when the next run starts
    run_cleanup(["events"], url=database_url, now=NOW)
    # then the crashed one is marked interrupted
    status = dict(rows(database_url, select(cleanup_runs.c.id, cleanup_runs.c.status)))
    assert status[crashed] == "interrupted"


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"table": "no_such_table"}, "table 'no_such_table' does not exist"),
        ({"timestamp": "born_at"}, "table 'events' has no column 'born_at'"),
        ({"action": "anonymize", "replace": {"nickname": "x"}}, "has no column 'nickname'"),
        ({"where": {"colour": "red"}}, "has no column 'colour'"),
    ],
)
def test_a_rule_naming_what_is_not_there_fails_before_any_change(
    database_url, rules_file, rule, problem
):
    # given the sample business and a rule set whose second rule is wrong
    seed(database_url, 100, NOW)
    good = {"name": "events", "table": "events", "timestamp": "created_at", "max_age_days": 30}
    rules_file(tables=[good, {**good, "name": "broken", **rule}])
    # when validated at start-up, or run / then a permanent error names the rule
    with pytest.raises(RuleError, match=f"retention rule 'broken': .*{problem}"):
        validate_rules(db.engine(database_url), load_rules())
    with pytest.raises(RuleError, match="retention rule 'broken'"):
        run_cleanup(url=database_url, now=NOW)
    # and the good rule did not run either
    assert count(database_url, events) == 100


def test_a_replacement_the_database_rejects_is_permanent(database_url, rules_file):
    # given an anonymize rule that would set a NOT NULL column to NULL
    seed(database_url, 100, NOW)
    rules_file(
        tables=[
            {
                "name": "null-names",
                "table": "customers",
                "timestamp": "last_active_at",
                "max_age_days": 365,
                "action": "anonymize",
                "replace": {"name": None},
            }
        ]
    )
    # when it runs / then the error is permanent and names the rule
    with pytest.raises(RuleError, match="retention rule 'null-names': the database refused"):
        run_cleanup(["null-names"], url=database_url, now=NOW)
    assert count(database_url, customers, customers.c.name == "anonymized") == 0


def test_an_optional_rule_on_a_missing_table_is_skipped(database_url, rules_file):
    rules_file(
        tables=[
            {
                "name": "later",
                "table": "not_yet_created",
                "timestamp": "created_at",
                "max_age_days": 1,
                "optional": True,
            }
        ],
        storage=[],
        hygiene=[],
    )
    report = run_cleanup(url=database_url, now=NOW)
    assert report["rules"]["later"]["skipped"] == "table 'not_yet_created' does not exist"
    assert report["total"] == 0
