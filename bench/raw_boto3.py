"""The practical limit of the emulator: a plain boto3 loop, no Celery, batched both ways.

    python bench/raw_boto3.py QUEUE_URL CONCURRENCY

``CONCURRENCY`` threads each loop ReceiveMessage(10, long poll 20 s) -> no-op work (the same
UDP report as the Celery contenders) -> DeleteMessageBatch. Producing is :func:`enqueue`
(SendMessageBatch of 10). Exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import boto3
from throughput_tasks import report_start


def client() -> Any:
    return boto3.session.Session().client("sqs")


def body(port: int, run: str, index: int, sent_at: float) -> str:
    return json.dumps({"port": port, "run": run, "index": index, "sent_at": sent_at})


def enqueue(sqs: Any, url: str, bodies: list[str]) -> None:
    """Send ``bodies`` with SendMessageBatch, 10 per call."""
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
        ]
        resp = sqs.send_message_batch(QueueUrl=url, Entries=entries)
        assert not resp.get("Failed"), resp["Failed"]


def consume(url: str, stop: threading.Event) -> None:
    sqs = client()
    while not stop.is_set():
        resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=20)
        messages = resp.get("Messages", [])
        for message in messages:
            task = json.loads(message["Body"])
            report_start(task["port"], task["run"], task["index"], task["sent_at"])
        if messages:
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ]
            sqs.delete_message_batch(QueueUrl=url, Entries=entries)


def main(url: str, concurrency: int) -> None:
    stop = threading.Event()
    for _ in range(concurrency):
        threading.Thread(target=consume, args=(url, stop), daemon=True).start()
    sys.stdin.read()  # EOF: the bench is done (or gone)
    stop.set()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
