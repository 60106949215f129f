"""Celery's own integration suite (``t/integration`` of the celery 5.7.0 sdist) on taskapp's SQS
extension, next to the same suite on a Redis broker; and the remote-control round trip on SQS.

    uv run python bench/celery_suite.py [--files inspect,worker,tasks,canvas] [--brokers sqs,redis]
                                        [--ping 50] [--load results.json] [--transport-only]
                                        [--group-timeout 1200] [--redis-db 9] [--no-fail]

1. **The suite.** The pinned sdist is downloaded from PyPI once (``pip download``, checked
   against its sha256) into ``var/celery-suite/`` (gitignored) and unpacked there. Its test
   requirements that taskapp's environment lacks (``pytest-rerunfailures``, Django) come in
   through ``uv run --with``; Celery's fixtures are loaded as the plugin pytest-celery makes
   them in Celery's CI. Each file runs as one pytest per test class (the module's free
   functions are one more group), in a fresh process with a fresh session worker, so a class
   that wedges the worker costs that class only. Each group is bounded by ``--group-timeout``;
   a test that never reported counts as failed (``not run``).

   * **sqs**: a fresh (reset) moto server on 127.0.0.1 per group; the broker is ``sqs://``
     (boto3 finds moto through ``AWS_ENDPOINT_URL``). The extension is applied without editing
     the suite:
     ``celery_suite_support.plugin`` calls ``taskapp.sqs.install(app)`` on every app the suite's
     fixtures make (the session worker's and each test's), and Celery's default loader reads
     ``celery_suite_support/config.py`` (``CELERY_LOADER=default``, ``CELERY_CONFIG_MODULE``)
     into every app, so the two that no fixture makes (``Celery(broker=TEST_BROKER)`` and the
     ``celery worker`` subprocess of ``test_worker.py``) get the extension's transport too.
     ``--transport-only``: the transport and options alone, no ``install`` (the issue's "today").
   * **redis**: the suite as Celery's CI runs it, broker ``redis://127.0.0.1:6379/<db>``.

   Results go to Redis db ``--redis-db`` (9) in both runs, and the suite's own Redis keys too
   (the plugin points its ``get_redis_connection`` there); only that db is flushed, before
   each group (two runs at once need two dbs). ``test_worker.py`` starts a worker against
   ``amqp://foobar:1234`` that must fail to connect: ``HOSTALIASES`` maps ``foobar`` to
   localhost so no name leaves the machine.

   Printed: passed/failed/skipped per file and broker, each test that passes on Redis and not on
   SQS with its error line, and the wall time per file; every outcome is saved in the run's
   ``results.json``, which ``--load`` reports with a later run (``--brokers sqs --load
   <a Redis run's results.json>`` compares without running Redis again). Exit 1 when a test
   passes on Redis and not on SQS (``--no-fail``: exit 0).

2. **Remote control** (``--ping N``, 0 to skip): one ``celery worker`` (solo pool) on a fresh
   moto, then ``N`` times ``app.control.inspect(destination=[worker], timeout=1).ping()`` from a
   fresh app, exactly what ``celery inspect ping`` does (a new reply queue each call), and ``N``
   times ``app.control.ping`` from one warm app. p50/p99 of the call and the number of calls
   that got no reply within Celery's default 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from taskapp.local.aws import LocalAWS  # noqa: E402

CELERY_VERSION = "5.7.0"
CELERY_SHA256 = "6a5dfcf6662287204f009a02002b9e66c83d4105e47ebabdc7079108772fc6f0"
#: The suite's requirements (requirements/test.txt) missing from taskapp's dev environment;
#: Django 5.2 is the newest series that runs on Python 3.11.
SUITE_REQUIREMENTS = ("pytest-rerunfailures==16.7", "django==5.2.19")
CACHE = ROOT / "var" / "celery-suite"
SUITE = CACHE / f"celery-{CELERY_VERSION}"
SUPPORT = Path(__file__).resolve().parent  # celery_suite_support/ is imported from here
FILES = ("inspect", "worker", "tasks", "canvas")
REDIS = ("127.0.0.1", 6379)
QUEUE_PREFIX = "suite-"
#: Tests that pass on Redis and cannot on the extension by design: not a failure of the run.
KNOWN = {
    "t/integration/test_inspect.py::test_Inspect::test_scheduled": (
        "the extension turns a countdown/ETA into SQS DelaySeconds, so the message waits in SQS, "
        "invisible, and no worker holds it as scheduled (which is what lets a countdown outlive "
        "the visibility timeout)"
    ),
}
#: Celery's fixtures are a plugin that pytest-celery registers in Celery's CI (the suite's
#: conftest imports only three of them); ours comes after.
PLUGINS = ("-p", "celery.contrib.pytest", "-p", "celery_suite_support.plugin", "-p",
           "no:cacheprovider")  # fmt: skip


# -- the sdist ------------------------------------------------------------------------------------
def ensure_suite() -> Path:
    """The unpacked sdist, downloaded and checked on first use."""
    archive = CACHE / f"celery-{CELERY_VERSION}.tar.gz"
    if not archive.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", f"celery=={CELERY_VERSION}", "-d", str(CACHE)],
            check=True, timeout=300,
        )  # fmt: skip
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != CELERY_SHA256:
        archive.unlink()
        raise SystemExit(f"celery sdist sha256 {digest} != {CELERY_SHA256}: deleted, rerun")
    if not (SUITE / "t" / "integration" / "conftest.py").exists():
        with tarfile.open(archive) as tar:
            tar.extractall(CACHE, filter="data")
    # A stale override file from an older runner must not configure the Redis baseline.
    (SUITE / "integration-tests-config.json").unlink(missing_ok=True)
    return SUITE


def suite_python() -> list[str]:
    """The command of taskapp's interpreter with the suite's extra requirements layered on (uv
    builds that overlay once into its cache and removes it when the command exits)."""
    withs = [arg for req in SUITE_REQUIREMENTS for arg in ("--with", req)]
    command = ["uv", "run", "--quiet", "--project", str(ROOT), *withs, "python", "-P"]
    subprocess.run([*command, "-c", "import django, pytest_rerunfailures"], check=True, timeout=600)
    return command


# -- groups, environment, one run -----------------------------------------------------------------
@dataclass
class Outcome:
    """One test's final result in one run."""

    state: str = "not run"  # passed, failed, skipped, not run
    error: str = ""


@dataclass
class Run:
    """One file on one broker."""

    tests: dict[str, Outcome] = field(default_factory=dict)
    seconds: float = 0.0

    def counts(self) -> Counter[str]:
        return Counter(o.state for o in self.tests.values())


def base_env(args: argparse.Namespace, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CELERY_", "TEST_"))}
    aliases = tmp / "hostaliases"
    aliases.write_text("foobar localhost\n")
    env.update(
        {
            "PYTHONPATH": str(SUPPORT),
            "HOSTALIASES": str(aliases),
            "REDIS_HOST": REDIS[0],
            "REDIS_PORT": str(REDIS[1]),
            "CELERY_SUITE_REDIS_DB": str(args.redis_db),
            "TEST_BACKEND": f"redis://{REDIS[0]}:{REDIS[1]}/{args.redis_db}",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def broker_env(broker: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, str]:
    env = dict(env)
    if broker == "redis":
        env["TEST_BROKER"] = f"redis://{REDIS[0]}:{REDIS[1]}/{args.redis_db}"
        return env
    env.update(
        {
            "TEST_BROKER": "sqs://",
            "CELERY_LOADER": "default",
            "CELERY_CONFIG_MODULE": "celery_suite_support.config",
            "CELERY_SUITE_QUEUE_PREFIX": QUEUE_PREFIX,
        }
    )
    if not args.transport_only:
        env["CELERY_SUITE_INSTALL"] = "1"
    return env


def collect(python: list[str], name: str, env: dict[str, str]) -> dict[str, list[str]]:
    """Test ids of ``test_<name>.py``, grouped by class (free functions: one group)."""
    out = subprocess.run(
        [*python, "-m", "pytest", *PLUGINS, "--collect-only", "-q",
         f"t/integration/test_{name}.py"],
        cwd=SUITE, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    groups: dict[str, list[str]] = defaultdict(list)
    for line in out.stdout.splitlines():
        if not line.startswith("t/integration/") or "::" not in line:
            continue
        parts = line.split("::")
        groups[parts[1] if len(parts) > 2 else "(functions)"].append(line)
    if not groups:
        raise SystemExit(f"collected nothing from test_{name}.py:\n{out.stdout}\n{out.stderr}")
    return dict(groups)


def fresh_aws() -> LocalAWS:
    """A moto server with nothing in it. moto keeps its state per process, not per server: a new
    server here would still hold the previous group's queues, topics and unconsumed messages
    (its session worker's ping then waited behind them), so it is reset."""
    local_aws = LocalAWS().start()
    request = urllib.request.Request(f"{local_aws.endpoint_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=30).close()
    return local_aws


def flush_redis(db: int) -> None:
    import redis

    redis.Redis(host=REDIS[0], port=REDIS[1], db=db).flushdb()


def run_group(
    python: list[str], ids: list[str], env: dict[str, str], args: argparse.Namespace, log: Path
) -> dict[str, Outcome]:
    """Run ``ids`` in one pytest process (its own session worker); the outcome of each."""
    report = log.with_suffix(".jsonl")
    report.unlink(missing_ok=True)
    env = dict(env, CELERY_SUITE_REPORT=str(report))
    cmd = [*python, "-m", "pytest", *PLUGINS, "-q", f"--timeout={args.test_timeout}"]
    cmd += [*shlex.split(args.pytest_args), *ids]
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd, cwd=SUITE, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=args.group_timeout)
        except subprocess.TimeoutExpired:
            out.write(f"\n== celery_suite: group over {args.group_timeout}s, stopped\n")
        finally:
            stop_group(proc)
    return read_report(report, ids)


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop the pytest process we started and its pool children (its own process group)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def read_report(report: Path, ids: list[str]) -> dict[str, Outcome]:
    """Final outcome per test from the plugin's report lines (a rerun starts a test afresh)."""
    outcomes = {nodeid: Outcome() for nodeid in ids}
    if not report.exists():
        return outcomes
    for line in report.read_text().splitlines():
        rec = json.loads(line)
        o = outcomes.setdefault(rec["nodeid"], Outcome())
        if rec["outcome"] == "rerun":
            outcomes[rec["nodeid"]] = Outcome()
        elif rec["outcome"] == "failed":
            o.state, o.error = "failed", o.error or f"{rec['when']}: {rec['error']}"
        elif o.state == "failed":
            continue
        elif rec["outcome"] == "skipped":
            o.state = "skipped"
        elif rec["when"] == "call":
            o.state = "passed"
    for o in outcomes.values():
        if o.state == "not run":
            o.error = "no result: the group timed out or its process died"
    return outcomes


def run_file(
    python: list[str],
    name: str,
    broker: str,
    env: dict[str, str],
    args: argparse.Namespace,
    logs: Path,
    keep: set[str] | None = None,
) -> Run:
    """Run ``test_<name>.py`` on ``broker``, group by group (only the tests in ``keep`` if set)."""
    run = Run()
    started = time.monotonic()
    groups = collect(python, name, env) if args.per == "class" else None
    if groups is None:
        groups = {"(file)": [f"t/integration/test_{name}.py"]}
    if keep is not None:
        groups = {g: [i for i in ids if i in keep] for g, ids in groups.items()}
    if args.groups:
        groups = {g: ids for g, ids in groups.items() if g in args.groups.split(",")}
    for group, ids in groups.items():
        if not ids:
            continue
        flush_redis(args.redis_db)
        local_aws = fresh_aws() if broker == "sqs" else None
        try:
            group_env = dict(env)
            if local_aws is not None:
                local_aws.export(group_env)
            log = logs / f"{broker}-{name}-{group.strip('()')}.log"
            t0 = time.monotonic()
            outcomes = run_group(python, ids, group_env, args, log)
        finally:
            if local_aws is not None:
                local_aws.stop()
        run.tests.update(outcomes)
        c = Counter(o.state for o in outcomes.values())
        print(
            f"  {broker:5} test_{name}.py {group:32} {c['passed']:3} passed {c['failed']:3} failed"
            f" {c['skipped']:3} skipped {c['not run']:2} not run  {time.monotonic() - t0:6.1f}s",
            flush=True,
        )
    run.seconds = time.monotonic() - started
    return run


# -- remote-control round trip --------------------------------------------------------------------
def ping_bench(
    args: argparse.Namespace, env: dict[str, str], python: list[str], logs: Path
) -> None:
    from celery import Celery

    local_aws = fresh_aws()
    env = broker_env("sqs", args, env)
    local_aws.export(env)
    node = "ping@celery-suite"
    worker_log = (logs / "ping-worker.log").open("w")
    worker = subprocess.Popen(
        [*python, "-m", "celery", "-A", "celery_suite_support.ping_app", "worker", "-P",
         "solo", "-c", "1", "-n", node, "--without-mingle", "--without-gossip", "-l", "WARNING"],
        env=env, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    saved = dict(os.environ)
    os.environ.update(env)  # this process's apps: same config module, same moto
    try:
        from celery_suite_support.ping_app import make_app

        warm = make_app()
        deadline = time.monotonic() + 120
        while not warm.control.ping(destination=[node], timeout=2.0):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the ping worker never answered: see {worker_log.name}")
        cold_times, cold_missed = [], 0
        for _ in range(args.ping):
            app: Celery = make_app()
            t0 = time.perf_counter()
            replies = app.control.inspect(destination=[node], timeout=1.0).ping()
            cold_times.append(time.perf_counter() - t0)
            cold_missed += not replies
            app.close()
        warm_times, warm_missed = [], 0
        for _ in range(args.ping):
            t0 = time.perf_counter()
            replies = warm.control.ping(destination=[node], timeout=1.0)
            warm_times.append(time.perf_counter() - t0)
            warm_missed += not replies
        warm.close()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        stop_group(worker)
        worker_log.close()
        local_aws.stop()
    print(f"\nremote-control round trip on idle moto, one solo worker, {args.ping} calls each:")
    for label, times, missed in (
        ("inspect ping, fresh app (as `celery inspect ping`)", cold_times, cold_missed),
        ("control.ping, one warm app", warm_times, warm_missed),
    ):
        p50, p99 = percentile(times, 50), percentile(times, 99)
        print(
            f"  {label:52} p50 {p50 * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms  "
            f"max {max(times) * 1000:6.0f} ms  no reply within 1 s: {missed}/{len(times)}"
        )


def percentile(values: list[float], pct: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


# -- the report -----------------------------------------------------------------------------------
def report(runs: dict[tuple[str, str], Run], files: list[str], brokers: list[str]) -> int:
    print("\nfile              " + "".join(f" {b:>32}" for b in brokers))
    totals = {b: Counter[str]() for b in brokers}
    for name in files:
        cells = []
        for b in brokers:
            run = runs.get((name, b))
            if run is None:
                cells.append("-")
                continue
            totals[b].update(run.counts())
            cells.append(cell(run.counts(), run.seconds))
        print(f"test_{name + '.py':13}" + "".join(f" {x:>32}" for x in cells))
    print(f"{'all':18}" + "".join(f" {cell(totals[b], None):>32}" for b in brokers))
    if "sqs" not in brokers or "redis" not in brokers:
        return 0
    if any((name, "redis") not in runs or (name, "sqs") not in runs for name in files):
        return 0
    regressions = [
        (nodeid, outcome)
        for name in files
        for nodeid, outcome in runs[name, "sqs"].tests.items()
        if outcome.state != "passed"
        and runs[name, "redis"].tests.get(nodeid, Outcome()).state == "passed"
    ]
    print(f"\npassed on Redis, not on SQS: {len(regressions)}")
    for nodeid, outcome in regressions:
        known = KNOWN.get(nodeid)
        print(f"  {nodeid}\n      {outcome.state}: {outcome.error.splitlines()[0][:300]}")
        if known:
            print(f"      known, by design: {known}")
    return 1 if any(nodeid not in KNOWN for nodeid, _ in regressions) else 0


def save(runs: dict[tuple[str, str], Run], path: Path) -> None:
    """Every test's outcome per file and broker, for ``--load`` and ``--baseline``."""
    data: dict[str, Any] = defaultdict(dict)
    for (name, broker), run in runs.items():
        data[broker][name] = {
            "seconds": round(run.seconds, 1),
            "tests": {n: [o.state, o.error] for n, o in run.tests.items()},
        }
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


def load(path: Path, runs: dict[tuple[str, str], Run], brokers: list[str]) -> list[str]:
    """Add the runs saved in ``path`` (a results.json) to ``runs``; the brokers, in order."""
    for broker, files in json.loads(path.read_text()).items():
        for name, saved in files.items():
            tests = {n: Outcome(state, error) for n, (state, error) in saved["tests"].items()}
            runs[name, broker] = Run(tests, saved["seconds"])
        brokers = brokers if broker in brokers else [*brokers, broker]
    return brokers


def cell(c: Counter[str], seconds: float | None) -> str:
    failed = c["failed"] + c["not run"]
    text = f"{c['passed']} passed, {failed} failed"
    if c["skipped"]:
        text += f", {c['skipped']} sk"
    return text + (f" {seconds:4.0f}s" if seconds is not None else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default=",".join(FILES))
    parser.add_argument("--brokers", default="sqs,redis")
    parser.add_argument("--per", choices=("class", "file"), default="class")
    parser.add_argument("--group-timeout", type=int, default=1200)
    parser.add_argument("--test-timeout", type=int, default=120)
    parser.add_argument("--ping", type=int, default=50)
    parser.add_argument("--redis-db", type=int, default=9)
    parser.add_argument(
        "--transport-only",
        action="store_true",
        help="taskapp's transport without taskapp.sqs.install (the issue's 'today' column)",
    )
    parser.add_argument(
        "--load",
        action="append",
        default=[],
        type=Path,
        help="results.json of an earlier run (e.g. the Redis baseline): reported with this one",
    )
    parser.add_argument(
        "--only-passed-on-redis",
        action="store_true",
        help="run only the tests that passed in the Redis run given with --load (CI)",
    )
    parser.add_argument("--groups", default="", help="only these test classes ('(functions)')")
    parser.add_argument("--no-fail", action="store_true")
    parser.add_argument("--pytest-args", default="", help="e.g. '-k test_ping -p no:rerunfailures'")
    args = parser.parse_args()
    files = [f for f in args.files.split(",") if f]
    brokers = [b for b in args.brokers.split(",") if b]

    ensure_suite()
    python = suite_python()
    logs = CACHE / "runs" / time.strftime("%Y%m%d-%H%M%S")
    logs.mkdir(parents=True)
    print(f"celery {CELERY_VERSION} t/integration, logs in {logs}", flush=True)
    with tempfile.TemporaryDirectory(prefix="celery-suite-") as tmp:
        env = base_env(args, Path(tmp))
        loaded: dict[tuple[str, str], Run] = {}
        shown = list(brokers)
        for path in args.load:
            shown = load(path, loaded, shown)
        keep = None
        if args.only_passed_on_redis:
            keep = {
                n for (_, b), r in loaded.items() if b == "redis"
                for n, o in r.tests.items() if o.state == "passed"
            }  # fmt: skip
        runs: dict[tuple[str, str], Run] = {}
        for name in files:
            for broker in brokers:
                runs[name, broker] = run_file(
                    python, name, broker, broker_env(broker, args, env), args, logs, keep
                )
        save(runs, logs / "results.json")
        runs = {**loaded, **runs}
        brokers = shown
        status = report(runs, files, brokers) if files else 0
        if args.ping:
            ping_bench(args, env, python, logs)
    flush_redis(args.redis_db)
    return 0 if args.no_fail else status


if __name__ == "__main__":
    sys.exit(main())
