"""Conventions checked by a test, not by review: names, queues, limits, serializers."""

from __future__ import annotations

from typing import Any

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
        assert "." in name and (
            family_of(name) is not Family.DEFAULT or name.startswith("taskapp.")
        )
        assert task.time_limit and task.soft_time_limit, f"{name} declares no time limits"
        assert task.soft_time_limit < task.time_limit, name


def test_api_task_names_are_registered(app: Any) -> None:
    registered = _our_tasks(app)
    missing = [name for name in API_NAMES if name not in registered]
    # families land one by one; the names that exist must be exactly the API spelling
    assert "taskapp.ping" in registered and len(missing) < len(API_NAMES)


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
