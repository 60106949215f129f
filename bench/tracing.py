"""What OpenTelemetry tracing costs: taskapp's worker and producer with tracing off and with
``TASKAPP_TRACING=file:<path>`` (every span exported, as JSON lines), in alternating rounds.

    uv run python bench/tracing.py [--rounds 2] [--tasks 500] [--preload 200] [--latency 30]

Each round measures both variants with ``bench/throughput.py``'s steps (enqueue, drain of the
preloaded queue, end to end with a bounded depth, idle latency), each on queues of its own on one
moto server, and stops its worker before the next, so no idle worker competes. With tracing on,
this process (the producer) traces too: its ``apply_async`` and SQS send spans go to the same
file. Tracing off is the shipped default; that it loads no SDK at all is checked by
``tests/operate/test_tracing.py``. Ratios are within one run; across runs on this shared 2-core
machine the absolute rates vary by a third (see the README's "Measured here").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import throughput
from throughput import OUT, Moto, Reports, Result, environment, measure, stop_all


class Variant(throughput.Taskapp):
    """taskapp as shipped, on queues of its own, with tracing off or to a file."""

    def __init__(self, env: dict[str, str], reports: Reports, traced: bool, round_: int) -> None:
        super().__init__(env, reports)
        self.traced = traced
        self.name = f"{'traced' if traced else 'off'}-{round_}"
        self.prefix = f"btr{'t' if traced else 'o'}{round_}-"
        self.queue, self.sns_prefix = f"{self.prefix}default", self.prefix
        self.spans = OUT / "tracing-spans.jsonl"

    def setup(self) -> None:
        from config.settings import load_settings
        from taskapp import tracing
        from taskapp.app import app
        from taskapp.aws import client
        from taskapp.aws.s3 import ensure_bucket
        from taskapp.db import upgrade
        from taskapp.queues import app_specs
        from taskapp.sqs.admin.provision import provision
        from tests.support.queues import prefixed_app

        settings = load_settings().model_copy(update={"queue_prefix": self.prefix})
        upgrade(settings.database_url.get_secret_value())
        ensure_bucket(client("s3", settings), settings.bucket)
        provision(client("sqs", settings), settings, app_specs(app))
        self.app = prefixed_app(app, self.prefix)
        if self.traced:
            tracing.install(tracing.JsonLinesExporter(str(self.spans)), set_global=False)
        else:
            tracing.uninstall()

    def worker_env(self) -> dict[str, str]:
        env = {**self.env, "TASKAPP_QUEUE_PREFIX": self.prefix}
        if self.traced:
            env["TASKAPP_TRACING"] = f"file:{self.spans}"
        return env

    def worker_argv(self) -> list[str]:
        return [a.replace("bench-taskapp@", f"bench-{self.name}@") for a in super().worker_argv()]


def _mean(results: list[Result], field: str) -> float:
    values = [getattr(r, field) for r in results if getattr(r, field)]
    return statistics.mean(values) if values else 0.0


def report(results: dict[str, list[Result]], spans: Path) -> dict[str, Any]:
    off, on = results["off"], results["traced"]
    print(f"\n{'':<28}{'off':>10}{'traced':>10}{'traced/off':>12}")
    rows = [
        ("enqueue tasks/s", "enqueue_per_s", ".0f"),
        ("drain tasks/s", "preload_drain_per_s", ".0f"),
        ("end to end tasks/s", "drain_per_s", ".0f"),
        ("p50 send->start ms", "p50_ms", ".1f"),
        ("worker RSS MiB", "rss_mib", ".0f"),
    ]
    summary: dict[str, Any] = {}
    for label, field, spec in rows:
        a, b = _mean(off, field), _mean(on, field)
        ratio = b / a if a else 0.0
        summary[field] = {"off": a, "traced": b, "ratio": ratio}
        print(f"{label:<28}{a:>10{spec}}{b:>10{spec}}{ratio:>12.2f}")
    for label, runs in (("off", off), ("traced", on)):
        per_round = ", ".join(f"{r.drain_per_s:.0f}" for r in runs)
        print(f"end to end per round, {label}: {per_round}")
    lines = spans.read_text().count("\n") if spans.exists() else 0
    print(f"spans exported: {lines} ({spans})")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="off/traced pairs, alternating")
    parser.add_argument("--tasks", type=int, default=500, help="tasks of each end-to-end run")
    parser.add_argument("--depth", type=int, default=100, help="most tasks outstanding in it")
    parser.add_argument("--preload", type=int, default=200, help="tasks of the enqueue/drain")
    parser.add_argument("--latency", type=int, default=30, help="latency samples per variant")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-tracing-"))
    moto = Moto(environment(None, workdir))
    try:
        os.environ.update(environment(moto.start(), workdir))
        os.environ.pop("TASKAPP_TRACING", None)
        sys.path[:0] = [str(throughput.BENCH), str(throughput.ROOT)]
        import throughput_tasks  # noqa: F401  (registers bench.noop on taskapp's app)

        OUT.mkdir(exist_ok=True)
        (OUT / "tracing-spans.jsonl").unlink(missing_ok=True)
        reports = Reports()
        results: dict[str, list[Result]] = {"off": [], "traced": []}
        for round_ in range(args.rounds):
            for traced in (False, True):
                variant = Variant(dict(os.environ), reports, traced, round_)
                print(f"measuring {variant.name} ...", flush=True)
                results["traced" if traced else "off"].append(measure(variant, moto, args))
                assert variant.worker is not None
                variant.worker.stop()
        print(
            f"\nno-op task (bench.noop), worker concurrency {throughput.CONCURRENCY}, "
            f"{args.rounds} rounds; end to end: {args.tasks} tasks, at most {args.depth} queued"
        )
        report(results, OUT / "tracing-spans.jsonl")
    finally:
        stop_all()


if __name__ == "__main__":
    main()
