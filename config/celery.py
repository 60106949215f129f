"""Celery configuration, built from the validated settings (``config/settings.py``).

Loaded lazily by ``taskapp.app`` through ``app.config_from_object("config.celery")``, so a process
reads its environment when the app is first configured, and a bad setting stops it there.
Reference: https://docs.celeryq.dev/en/stable/userguide/configuration.html
"""

from __future__ import annotations

import sys

from kombu import Queue

from config.beat import build_beat_schedule
from config.settings import SettingError, load_settings
from taskapp.queues import queue_names, route_task

try:
    settings = load_settings()
except SettingError as exc:
    # Every process (worker, beat, flower, producers) stops here with one clear line.
    print(f"taskapp: configuration error: {exc}", file=sys.stderr)  # noqa: T201 - no logging yet
    raise SystemExit(2) from exc

# "sqs://": boto3 resolves endpoint and credentials. taskapp.sqs.install(app) (taskapp/app.py)
# selects the extension's transport for it: the delivery fixes of taskapp/sqs/delivery.py, and
# events and remote control over SNS fan-out (Flower, celery inspect/control) described in
# taskapp/sqs/monitoring.py; taskapp/sqs/transport.py lists what its channel is made of. The
# options below are the extension's (README, "The SQS extension").
broker_url = "sqs://"
broker_connection_retry_on_startup = True
broker_transport_options = {
    "region": settings.region,
    "queue_name_prefix": settings.queue_prefix,
    # Long polling: an idle queue costs ~3 requests a minute instead of one a second.
    # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-short-and-long-polling.html
    "wait_time_seconds": settings.wait_time_seconds,
    # kombu sleeps this long when every prefetch slot is taken; 1 s (the default) caps a
    # busy worker's throughput, long polling already covers the idle case.
    "polling_interval": 0.1,
    # Longest DelaySeconds of one hop of a long countdown (taskapp/sqs/delay.py).
    "delay_hop": settings.delay_hop,
    # Visibility heartbeat of held messages (taskapp/sqs/heartbeat.py).
    "heartbeat_interval": settings.heartbeat_interval,
    # Bodies over this size go through S3 (taskapp/sqs/claimcheck.py).
    "claim_check_threshold": settings.claim_check_threshold,
    "claim_check_bucket": settings.bucket,
    "claim_check_max_bytes": settings.claim_check_max_bytes,
    # Replay window of signed messages (taskapp/sqs/signing.py), read only with signing on.
    "signing_max_age": settings.signing_max_age,
    # fetch_message_attributes: the extension's default (receive counts, our attributes).
}
# Share of tasks whose events reach monitoring; worker heartbeats are always sent.
broker_transport_options["event_sample_rate"] = settings.event_sample_rate
if settings.predefined_queues:
    from taskapp.aws import client
    from taskapp.preflight import queues_missing_line, refuse
    from taskapp.sqs.admin.provision import QueuesMissing, predefined_queues

    try:
        broker_transport_options["predefined_queues"] = predefined_queues(
            client("sqs", settings), settings.queue_prefix, queue_names()
        )
    except QueuesMissing as missing:  # one line and exit 2, as the worker's own check does
        refuse(queues_missing_line(missing.names))
if settings.sts_role_arn:
    # https://docs.celeryq.dev/projects/kombu/en/stable/reference/kombu.transport.SQS.html
    broker_transport_options["sts_role_arn"] = settings.sts_role_arn

# JSON only: pickle would let anyone who can write to a queue run code in the worker.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]

if settings.signing_key:
    # Celery message signing: tasks are signed with the key and only signed ones are accepted
    # (https://docs.celeryq.dev/en/stable/userguide/security.html#message-signing); taskapp/app.py
    # calls setup_security(). Results and events stay plain JSON.
    task_serializer = "auth"
    accept_content = ["auth"]
    security_key = settings.signing_key
    security_certificate = settings.signing_cert
    security_cert_store = settings.signing_cert_store
    security_digest = "sha256"

task_default_queue = "default"
# worker_consumer: the extension's (taskapp/sqs/worker.py), set by taskapp.sqs.install: poison
# messages (undecodable, unknown task) go to the DLQ with a reason.
task_queues = [Queue(name, routing_key=name) for name in queue_names()]
task_routes = (route_task,)

# At-least-once: a message is deleted only after its task finished, so a crashed worker's
# message comes back after the visibility timeout.
task_acks_late = True
task_reject_on_worker_lost = True
# Prefetch count = multiplier x concurrency. At 20 or more, every receive of a busy worker asks
# SQS for 10 messages while 10 are still held (taskapp/sqs/receives.py): a drain of 300 no-op
# tasks at -c 2 took 31 receives of 9.7 messages at multipliers 6 to 16, 39 of 7.7 at 4
# (bench/sqs_requests.py). The cost: a busy worker holds 10-20 messages per 2 pool processes.
# https://docs.celeryq.dev/en/stable/userguide/optimizing.html#prefetch-limits
worker_prefetch_multiplier = 10
worker_concurrency = settings.worker_concurrency
task_time_limit = 300
task_soft_time_limit = 270
task_track_started = True
task_send_sent_event = True

result_backend = settings.result_backend
result_extended = True
result_expires = settings.result_expires
database_create_tables_at_setup = True
# The result engine gets the same SQLite set-up as ours (taskapp.db: WAL, busy timeout, sync):
# worker processes, beat and the CLI share one file. A trigger also keeps a late RETRY of an
# earlier attempt from replacing a later SUCCESS or FAILURE (taskapp.db.tune_result_engine).
database_engine_callback = "taskapp.db.tune_result_engine"

beat_schedule = build_beat_schedule(settings)
timezone = "UTC"
