"""Conventions checked by a test, not by review: names, queues, limits, serializers."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from taskapp.errors import PermanentError, RetryableError
from taskapp.queues import Family, family_of, lane, plan_queues, queue_names, route_task

API_NAMES = ["email.send", "images.thumbnails", "cleanup.run", "reports.generate", "taskapp.ping"]


def _our_tasks(app: Any) -> dict[str, Any]:
    app.loader.import_default_modules()
    return {
        name: task for name, task in app.tasks.items() if task.__module__.startswith("taskapp.")
    }


def test_every_task_has_an_explicit_dotted_name_a_family_and_limits(app: Any) -> None:
    tasks = _our_tasks(app)
    assert tasks, "no taskapp task registered"
    for name, task in tasks.items():
        # an explicit name is not the import path Celery would invent
        assert name != f"{task.__module__}.{task.__wrapped__.__name__}", name
        assert "." in name
        assert family_of(name) is not Family.DEFAULT or name.startswith("taskapp.")
        assert task.time_limit, f"{name} declares no hard time limit"
        assert task.soft_time_limit, f"{name} declares no soft time limit"
        assert task.soft_time_limit < task.time_limit, name


#: The retry policy every task's decorator spreads in (``**retry_policy(...)``, taskapp/retry.py).
POLICY_OPTIONS = {
    "autoretry_for",
    "throws",
    "retry_backoff",
    "retry_backoff_max",
    "retry_jitter",
    "max_retries",
}
TIME_LIMITS = {"soft_time_limit", "time_limit"}


def _decorator_keywords(task: Any) -> set[str]:
    """The keyword arguments written in the task's ``@app.task(...)`` call."""
    source = textwrap.dedent(inspect.getsource(task.__wrapped__))
    function = ast.parse(source).body[0]
    assert isinstance(function, ast.FunctionDef)
    (call,) = [d for d in function.decorator_list if isinstance(d, ast.Call)]
    return {keyword.arg for keyword in call.keywords if keyword.arg}


def test_every_task_declares_its_retry_policy_and_time_limits(app: Any) -> None:
    tasks = _our_tasks(app)
    assert tasks, "no taskapp task registered"
    for name, task in tasks.items():
        # app.task puts the decorator's options on the task's own class, over Celery's defaults
        missing = POLICY_OPTIONS - set(vars(type(task)))
        # but Celery also copies the app's default time limits there: read the decorator itself
        missing |= TIME_LIMITS - _decorator_keywords(task)
        assert not missing, f"{name} does not declare {sorted(missing)}"
        # retryable errors are retried, permanent ones never (and are expected: no traceback)
        assert RetryableError in task.autoretry_for, name
        assert not any(issubclass(PermanentError, kind) for kind in task.autoretry_for), name
        assert PermanentError in task.throws, name
        assert task.retry_jitter is True, name
        assert 0 < task.retry_backoff <= task.retry_backoff_max, name
        assert isinstance(task.max_retries, int), name
        assert task.max_retries >= 0, name


def test_api_task_names_are_registered(app: Any) -> None:
    registered = _our_tasks(app)
    # every family has landed: each API name is registered under exactly that spelling
    missing = [name for name in API_NAMES if name not in registered]
    assert missing == [], f"API task names not registered: {missing}"


def test_json_only(app: Any) -> None:
    assert app.conf.accept_content == ["json"]
    assert app.conf.result_accept_content == ["json"]
    assert app.conf.task_serializer == app.conf.result_serializer == "json"


def test_routing_by_family_prefix_and_lane() -> None:
    assert route_task("email.send", (), {}, {}) == {"queue": "email"}
    assert route_task("email.send", (), {}, {"priority": "high"}) == {"queue": "email-high"}
    assert route_task("taskapp.ping", (), {}, {"priority": "high"}) == {"queue": "default"}
    assert route_task("celery.chord_unlock", (), {}, {}) == {"queue": "default"}
    assert lane(Family.REPORTS, "low") == "reports"


def test_every_family_has_a_high_lane_and_default_does_not() -> None:
    names = queue_names()
    for family in Family:
        assert family.value in names
        assert (f"{family.value}-high" in names) == (family is not Family.DEFAULT)


def test_visibility_is_derived_from_the_longest_hard_limit_on_the_queue() -> None:
    specs = {
        s.name: s for s in plan_queues({"images.a": 60, "images.b": 150, "email.x": None}, 300)
    }
    assert specs["images"].hard_time_limit == 150
    assert specs["images-high"].visibility_timeout == specs["images"].visibility_timeout > 150
    assert specs["email"].hard_time_limit == 300  # unset -> the app default
    assert specs["reports"].tasks == ()
