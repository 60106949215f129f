"""What the start-up checks (taskapp/preflight.py) add to a worker's start, against moto.

    uv run python bench/preflight.py [--runs 5]

In a fresh process: starts moto, provisions the queues and the bucket, migrates a SQLite file,
then times ``check_worker`` for a worker consuming every queue: the first call (what a starting
worker pays: alembic's imports, the migration scripts, a boto3 client per service) and later
calls (the calls alone), split into schema, queues and bucket. Prints milliseconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs

    from taskapp.local.aws import LocalAWS

    tmp = Path(tempfile.mkdtemp(prefix="bench-preflight-"))
    aws = LocalAWS().start()
    aws.export()
    os.environ.update(
        {
            "TASKAPP_QUEUE_PREFIX": f"b{uuid.uuid4().hex[:6]}-",
            "TASKAPP_BUCKET": f"b{uuid.uuid4().hex[:6]}",
            "TASKAPP_DATABASE_URL": f"sqlite:///{tmp}/bench.db",
        }
    )
    try:
        from config.settings import load_settings
        from taskapp import preflight
        from taskapp.app import app
        from taskapp.aws import client
        from taskapp.aws.s3 import ensure_bucket
        from taskapp.db import upgrade
        from taskapp.queues import app_specs
        from taskapp.sqs.admin.provision import provision

        settings = load_settings()
        upgrade(settings.database_url.get_secret_value())
        ensure_bucket(client("s3", settings), settings.bucket)
        provision(client("sqs", settings), settings, app_specs(app))
        names = preflight.worker_queue_names(app)
        from taskapp.sqs.boto import client as _client

        _client.cache_clear()  # a starting worker has built no boto3 client yet

        def one() -> tuple[float, float, float]:
            t0 = time.perf_counter()
            assert preflight.schema_problem(settings) is None
            t1 = time.perf_counter()
            assert preflight._queue_problem(settings, names) is None
            t2 = time.perf_counter()
            assert preflight.bucket_problem(settings) is None
            t3 = time.perf_counter()
            return (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000

        first = one()
        later = [one() for _ in range(runs)]
        print(f"queues checked: {len(names)} ({', '.join(names)})")
        print(
            f"first call: schema {first[0]:.0f} ms, queues {first[1]:.0f} ms, "
            f"bucket {first[2]:.0f} ms, total {sum(first):.0f} ms"
        )
        med = [statistics.median(r[i] for r in later) for i in range(3)]
        print(
            f"later calls (median of {runs}): schema {med[0]:.1f} ms, queues {med[1]:.1f} ms, "
            f"bucket {med[2]:.1f} ms, total {sum(med):.1f} ms"
        )
    finally:
        aws.stop()


if __name__ == "__main__":
    main()
