"""Events, remote control, the Broker page and no litter, against a real worker and Flower.

One worker and one Flower (subprocesses, see conftest) serve the whole module; the last test
shuts the worker down by remote control and checks that nothing was left behind.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from taskapp.app import app
from taskapp.aws import client
from tests.monitoring.conftest import (
    NODE,
    WATCH_QUEUE,
    Stack,
    celery_cli,
    monitoring_litter,
    remote_control,
)
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _send(name: str, *args: Any) -> Any:
    return app.send_task(name, args=args, queue=WATCH_QUEUE)


def _queue_lengths(stack: Stack) -> dict[str, Any]:
    return {q["name"]: q for q in stack.get_json("/api/queues/length")["active_queues"]}


def _flower_tasks(stack: Stack) -> dict[str, Any]:
    return dict(stack.get_json("/api/tasks"))


@pytest.fixture(scope="module")
def finished(stack: Stack) -> dict[str, Any]:
    """A success, a retried success and a failure, run by the worker and seen by Flower."""
    tag = uuid.uuid4().hex[:8]
    results = {
        "add": _send("tests.add", 2, 3),
        "flaky": _send("tests.flaky", f"flaky-{tag}", 1),
        "fail": _send("tests.fail_permanently", f"fail-{tag}"),
    }
    assert results["add"].get(timeout=30) == 5
    assert results["flaky"].get(timeout=30) == 2
    with pytest.raises(Exception, match="bad input"):
        results["fail"].get(timeout=30, propagate=True)
    ids = {key: r.id for key, r in results.items()}

    def all_final() -> dict[str, Any] | None:
        tasks = _flower_tasks(stack)
        done = all(tasks.get(i, {}).get("state") in ("SUCCESS", "FAILURE") for i in ids.values())
        return {key: tasks[i] for key, i in ids.items()} if done else None

    return dict(wait_for(all_final, "task events in Flower", timeout=30, interval=0.3))


def test_flower_shows_the_worker_online_with_heartbeats(stack: Stack) -> None:
    # given a worker started with -E
    # when Flower's Workers page data (built from events) is read
    def online() -> dict[str, Any] | None:
        rows = stack.get_json("/workers?json=1")["data"]
        row = next((r for r in rows if r["hostname"] == NODE), None)
        return row if row and row["status"] and row["heartbeats"] else None

    # then the worker is online, with heartbeats
    row = wait_for(online, "worker heartbeats in Flower", timeout=30, interval=0.3)
    assert row.get("worker-heartbeat", 0) >= 1


def test_flower_shows_tasks_with_state_args_runtime_retries_and_exception(
    finished: dict[str, Any],
) -> None:
    # given three tasks finished by the worker (see the fixture)
    add, flaky, fail = finished["add"], finished["flaky"], finished["fail"]
    # then Flower has each one's state, arguments, runtime, retries and exception
    assert add["state"] == "SUCCESS"
    assert add["args"] == "(2, 3)"
    assert add["result"] == "5"
    assert add["runtime"] > 0
    assert add["worker"] == NODE
    assert flaky["state"] == "SUCCESS"
    assert flaky["retries"] >= 1
    assert fail["state"] == "FAILURE"
    assert "bad input" in fail["exception"]


def test_inspect_and_control_commands_work_against_a_worker_on_sqs(stack: Stack) -> None:
    # given the worker on SQS
    # when `celery inspect ping` runs, and the inspect/control calls behind the other
    # `celery inspect|control` commands run in one more subprocess (one import, not eight)
    with ThreadPoolExecutor(2) as pool:
        cli = pool.submit(celery_cli, "inspect", "ping", "-d", NODE, "-t", "5", "-j")
        calls = pool.submit(remote_control, NODE)
    ping, replies = cli.result(), calls.result()
    # then the worker answers every one
    assert ping.returncode == 0, ping.stdout + ping.stderr[-2000:]
    assert json.loads(ping.stdout) == {NODE: {"ok": "pong"}}
    assert replies["ping"] == {NODE: {"ok": "pong"}}
    assert replies["active"] == {NODE: []}
    assert replies["reserved"] == {NODE: []}
    assert "tests.add" in replies["registered"][NODE]
    assert replies["stats"][NODE]["pool"]["max-concurrency"] == 1
    assert replies["rate_limit"] == [{NODE: {"ok": "new rate limit set successfully"}}]
    assert replies["pool_grow"] == [{NODE: {"ok": "pool will grow"}}]
    assert replies["pool_shrink"] == [{NODE: {"ok": "pool will shrink"}}]


def test_flower_worker_page_and_control_buttons(stack: Stack) -> None:
    # given the worker in Flower
    # when its detail page is opened and the control buttons' endpoints are used
    page = stack.get(f"/worker/{NODE}")
    grow = stack.post(f"/api/worker/pool/grow/{NODE}?n=1")
    shrink = stack.post(f"/api/worker/pool/shrink/{NODE}?n=1")
    limit = stack.post(f"/api/task/rate-limit/taskapp.ping?workername={NODE}&ratelimit=20/m")
    # then the page shows the worker and each command is confirmed by the worker
    assert NODE in page
    assert "tests.add" in page
    for status, body in (grow, shrink, limit):
        assert status == 200, body


def test_broker_page_and_queue_lengths_show_every_queue_and_its_dlq(stack: Stack) -> None:
    # given one visible and one delayed message in the watched queue's DLQ
    sqs = client("sqs", stack.settings)
    dlq = sqs.get_queue_url(QueueName=stack.settings.queue_prefix + WATCH_QUEUE + "-dlq")
    before = _queue_lengths(stack)[WATCH_QUEUE + "-dlq"]
    sqs.send_message(QueueUrl=dlq["QueueUrl"], MessageBody="{}")
    sqs.send_message(QueueUrl=dlq["QueueUrl"], MessageBody="{}", DelaySeconds=900)
    # when Flower's queue API and Broker page are read
    rows = _queue_lengths(stack)
    page = stack.get("/broker")
    # then every work queue and DLQ is listed with visible, in-flight and delayed counts
    for name in ("default", "default-dlq", "email", "email-high-dlq", WATCH_QUEUE):
        assert name in rows, sorted(rows)
        assert {"visible", "in_flight", "delayed"} <= rows[name].keys()
        assert name in page
    assert rows[WATCH_QUEUE + "-dlq"]["visible"] == before["visible"] + 1
    assert rows[WATCH_QUEUE + "-dlq"]["delayed"] == before["delayed"] + 1
    assert rows[WATCH_QUEUE + "-dlq"]["dlq_of"] == WATCH_QUEUE
    assert "Delayed" in page
    assert "In flight" in page


def test_prometheus_metrics_are_exposed(stack: Stack, finished: dict[str, Any]) -> None:
    # given tasks seen by Flower
    # when Prometheus scrapes /metrics
    metrics = stack.get("/metrics")
    # then task events and the worker's online state are there
    assert f'flower_worker_online{{worker="{NODE}"}} 1.0' in metrics
    assert 'type="task-succeeded"' in metrics
    assert f'worker="{NODE}"' in metrics


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's package) driven by Playwright; skipped if it cannot start."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000
            )
        except Exception as exc:  # any launch failure means "no browser here", not a bug
            pytest.skip(f"headless Chromium at {CHROMIUM} cannot start: {exc}")
        try:
            yield chromium
        finally:
            chromium.close()


def test_browser_shows_worker_tasks_and_queues(
    stack: Stack, finished: dict[str, Any], browser: Any, tmp_path: Path
) -> None:
    # given Flower watching the worker, which has run tasks
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(20_000)
    base = f"http://127.0.0.1:{stack.port}"
    # when the Workers, Tasks and Broker pages are opened
    page.goto(f"{base}/workers")
    page.get_by_text(NODE).first.wait_for()
    page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)
    page.goto(f"{base}/tasks")
    add_row = page.locator("#tasks-table tr", has_text=finished["add"]["uuid"])
    add_row.wait_for()
    add_text = add_row.inner_text()
    page.screenshot(path=str(tmp_path / "tasks.png"), full_page=True)
    page.goto(f"{base}/broker")
    broker_text = page.locator("#queue-table").inner_text()
    page.screenshot(path=str(tmp_path / "broker.png"), full_page=True)
    # then the worker, the tasks with state SUCCESS, and the queues with their DLQs are shown
    assert "tests.add" in add_text
    assert "SUCCESS" in add_text
    for name in ("default", "default-dlq", "email", WATCH_QUEUE):
        assert name in broker_text
    assert (tmp_path / "tasks.png").stat().st_size > 0


def test_worker_flower_and_inspect_leave_no_queue_or_subscription(stack: Stack) -> None:
    # given the stack has run (an inspect call per test above)
    # when the worker is shut down by remote control and Flower is stopped
    done = celery_cli("control", "shutdown", "-d", NODE, "-t", "2")
    # (a worker shuts down instead of replying, so the CLI reports no reply on any broker)
    assert done.returncode in (0, 69), done.stdout + done.stderr[-2000:]
    assert stack.worker.popen.wait(30) == 0, stack.worker.tail()
    assert stack.flower.stop() == 0, stack.flower.tail()
    # then the monitoring queues and subscriptions are back to what they were before
    queues, subs = wait_for(
        lambda: (lit := monitoring_litter(stack.settings)) == stack.baseline and lit,
        "the monitoring queues and subscriptions to be removed",
        timeout=10,
        interval=0.3,
    )
    assert (queues, subs) == stack.baseline
