"""Cost of monitoring over SQS + SNS: API calls per task, counted at the endpoint.

    uv run python bench/monitoring.py [--tasks 100] [--rates 1,0.25,0]

For each event sample rate (``TASKAPP_EVENT_SAMPLE_RATE``) a fresh moto server is started with
a WSGI counter in front of it, so every request of every process is counted: the worker
(``-E``, threads pool, concurrency 4, a subprocess), the producer (this process, which also
sends ``task-sent`` events) and one event subscriber (a ``celery.events.EventReceiver`` here,
as Flower runs one). Then ``--tasks`` ``taskapp.ping`` tasks are sent and awaited, and the
requests made during that window are divided by the task count.

Printed per task: SNS ``Publish`` calls on the event topic (task events; worker heartbeats are
shown apart, they cost the same with or without tasks), event messages SNS delivered to the
subscriber's queue (one per publish per subscriber; the subscriber deletes each one, which is
what is counted), the subscriber's ``ReceiveMessage`` calls, and the task's own SQS calls for
scale. Each subscriber (each Flower) adds one delivery and one delete per publish.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class RequestCounter:
    """WSGI middleware counting (service, action, target) of every AWS request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        key = self.classify(environ, body)
        if key:
            with self.lock:
                self.counts[key] += 1
        return self.app(environ, start_response)

    @staticmethod
    def classify(environ: dict[str, Any], body: bytes) -> tuple[str, str, str] | None:
        auth = environ.get("HTTP_AUTHORIZATION", "")
        service = auth.split("Credential=", 1)[-1].split("/")[3] if "Credential=" in auth else ""
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target:
            action = target.rsplit(".", 1)[-1]
            params = json.loads(body or b"{}")
        else:
            form = parse_qs(body.decode(errors="replace"))
            params = {k: v[0] for k, v in form.items()}
            action = params.get("Action", "")
        if not service or not action:
            return None
        where = params.get("QueueUrl") or params.get("TopicArn") or ""
        name = where.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        if action == "Publish":
            return service, action, _event_kind(name, params.get("Message", ""))
        for marker, kind in (
            ("-mon-ev-", "events queue"),
            ("-mon-ctl-", "control queue"),
            ("-mon-re-", "reply queue"),
        ):
            if marker in name:
                return service, action, kind
        return service, action, "work queue" if name else "-"


def _event_kind(topic: str, message: str) -> str:
    try:
        key = json.loads(message)["properties"]["delivery_info"]["routing_key"]
    except (ValueError, KeyError, TypeError):
        key = "?"
    return f"{topic.split('-', 1)[-1]} {key}"


def child(tasks: int, rate: float) -> dict[str, Any]:
    """One measurement in a fresh environment; returns the counts per task."""
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from taskapp.local.aws import LOCAL_CREDENTIALS
    from taskapp.local.net import free_port

    counter = RequestCounter(DomainDispatcherApplication(create_backend_app))
    port = free_port()

    class CountingServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            self._server = make_server(
                "127.0.0.1", port, counter, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    server = CountingServer("127.0.0.1", port, verbose=False)
    server.start()
    tmp = Path(tempfile.mkdtemp(prefix="bench-monitoring-"))
    os.environ.update(LOCAL_CREDENTIALS)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "TASKAPP_QUEUE_PREFIX": f"b{uuid.uuid4().hex[:6]}-",
            "TASKAPP_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "TASKAPP_EVENT_SAMPLE_RATE": str(rate),
            "TASKAPP_WAIT_TIME_SECONDS": "20",
        }
    )
    from celery.events import EventReceiver

    from config.settings import load_settings
    from taskapp.app import app
    from taskapp.aws import client
    from taskapp.db import upgrade
    from taskapp.queues import app_specs
    from taskapp.sqs.admin.provision import provision

    settings = load_settings()
    upgrade(settings.database_url.get_secret_value())
    provision(client("sqs", settings), settings, app_specs(app))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "taskapp",
            "worker",
            "-E",
            "-n",
            "bench@%h",
            "--pool=threads",
            "-c",
            "4",
            "-Q",
            "default",
            "-l",
            "WARNING",
        ],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=(tmp / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    seen: Counter[str] = Counter()
    stop = threading.Event()

    def receive() -> None:
        with app.connection() as conn:
            recv = EventReceiver(conn, handlers={"*": lambda e: seen.update([e["type"]])}, app=app)
            for _ in recv.consume(limit=None, timeout=None, wakeup=False):
                if stop.is_set():
                    return

    threading.Thread(target=receive, daemon=True).start()
    try:
        deadline = time.monotonic() + 90
        while not seen["worker-heartbeat"] and time.monotonic() < deadline:
            time.sleep(0.2)
        app.send_task("taskapp.ping").get(timeout=60)  # warm: queue URLs, topics, clients
        time.sleep(2)
        windows = {}
        for mode in ("burst", "one at a time"):
            before, started = Counter(counter.counts), time.monotonic()
            if mode == "burst":
                results = [app.send_task("taskapp.ping") for _ in range(tasks)]
                for result in results:
                    result.get(timeout=120, interval=0.05)
            else:
                for _ in range(tasks):
                    app.send_task("taskapp.ping").get(timeout=60, interval=0.05)
            time.sleep(3)  # let the last events arrive
            delta = Counter(counter.counts)
            delta.subtract(before)
            windows[mode] = {
                "window_s": round(time.monotonic() - started, 1),
                "calls": {" | ".join(k): v for k, v in sorted(delta.items()) if v},
            }
    finally:
        stop.set()
        worker.terminate()
        worker.wait(60)
        server.stop()
    return {
        "tasks": tasks,
        "rate": rate,
        "events_received": dict(seen),
        "windows": windows,
    }


def summarise(window: dict[str, Any], n: int) -> list[tuple[str, float]]:
    calls = window["calls"]

    def total(pred: Any) -> int:
        return sum(v for k, v in calls.items() if pred(k.split(" | ")))

    task_publishes = total(lambda k: k[1] == "Publish" and " task." in k[2])
    heartbeat_publishes = total(lambda k: k[1] == "Publish" and "worker." in k[2])
    deliveries = total(lambda k: k[1] == "DeleteMessage" and k[2] == "events queue")
    receives = total(lambda k: k[1] == "ReceiveMessage" and k[2] == "events queue")
    work = total(lambda k: k[0] == "sqs" and k[2] == "work queue")
    return [
        ("SNS Publish (task events) per task", task_publishes / n),
        (
            "SQS deliveries of task events, per subscriber, per task",
            (deliveries - heartbeat_publishes) / n,
        ),
        ("subscriber ReceiveMessage per task", receives / n),
        ("task's own SQS calls per task (send/receive/delete)", work / n),
        (
            "SNS Publish (worker heartbeats) per minute",
            heartbeat_publishes * 60 / window["window_s"],
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--rates", default="1,0.25,0")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.tasks, args.child)))
        return
    for rate in (float(r) for r in args.rates.split(",")):
        done = subprocess.run(
            [sys.executable, __file__, "--tasks", str(args.tasks), "--child", str(rate)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=ROOT,
        )
        if done.returncode:
            sys.exit(f"rate {rate}: failed\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"\nTASKAPP_EVENT_SAMPLE_RATE={rate}: events received {result['events_received']}")
        for mode, window in result["windows"].items():
            print(f"  {result['tasks']} tasks, {mode} ({window['window_s']} s):")
            for label, value in summarise(window, result["tasks"]):
                print(f"    {label:<58} {value:6.2f}")
            if os.environ.get("BENCH_VERBOSE"):
                for key, value in window["calls"].items():
                    print(f"      {key:<60} {value}")


if __name__ == "__main__":
    main()
