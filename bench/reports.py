"""Benchmark: stream the ``orders`` report (one row per order) to CSV and XLSX in S3 (moto).

For each database and size (100k and 1M orders by default) this seeds the sample tables, then
generates each format in a fresh subprocess and reads that child's peak RSS (``ru_maxrss`` from
``os.wait4``). Memory must stay under 200 MB and must not grow with the row count: the script
prints the 1M/100k RSS ratio per format (about 1.0 means flat).

Linux carries a process's RSS high-water mark across fork and exec, so a child's ``ru_maxrss``
starts at its parent's RSS. This parent therefore stays small: moto, seeding and every
measurement run in subprocesses, and the parent imports neither taskapp nor moto. Each child
also reports its own ``VmHWM`` (peak RSS of the exec'd image) as a cross-check.

    uv run python bench/reports.py                      # SQLite, 100k and 1M
    uv run python bench/reports.py --databases sqlite,postgresql
    uv run python bench/reports.py --sizes 20000,200000  # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NOW = datetime(2025, 3, 31, 23, tzinfo=UTC)
LIMIT_MB = 200
BUCKET = "bench-reports"
POSTGRES_ADMIN_URL = os.environ.get(
    "TASKAPP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


# --- subprocess roles -----------------------------------------------------------------------


def serve_aws(port: int) -> None:
    """Run moto on ``port`` until stdin closes."""
    from taskapp.local.aws import LocalAWS

    aws = LocalAWS(port).start()
    print("ready", flush=True)
    sys.stdin.read()
    aws.stop()


def setup(kind: str, size: int, tmp: str) -> None:
    """Create (PostgreSQL) and migrate a database, seed ``size`` orders; print its URL."""
    from sqlalchemy import create_engine, text

    from taskapp import db
    from taskapp.aws import client
    from taskapp.aws.s3 import ensure_bucket
    from taskapp.sample import seed

    ensure_bucket(client("s3"), BUCKET)
    if kind == "sqlite":
        url = f"sqlite:///{tmp}/bench-{size}.db"
    else:
        name = f"taskapp_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    db.upgrade(url)
    seed(url, n_orders=size, now=NOW, n_events=0)
    print(url)


def drop(url: str) -> None:
    """Drop a benchmark database (PostgreSQL) or its file (SQLite)."""
    from sqlalchemy import create_engine, text

    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
        return
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(url: str, fmt: str) -> None:
    """Generate the report once in this process; print rows, seconds and baseline RSS."""
    from taskapp.reports import service

    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = (NOW - timedelta(days=90)).date().isoformat()
    request = service.ReportRequest.build(
        "orders", {"start": start, "end": NOW.date().isoformat()}, fmt
    )
    began = time.perf_counter()
    result = service.generate(request, f"bench-{uuid.uuid4().hex[:8]}", url=url)
    seconds = time.perf_counter() - began
    print(
        json.dumps(
            {
                "rows": result["rows"],
                "bytes": result["bytes"],
                "seconds": seconds,
                "baseline_mb": baseline_kb / 1024,
                "hwm_mb": _vm_hwm_mb(),
            }
        )
    )


def measure(url: str, fmt: str) -> dict[str, Any]:
    """Run ``child`` in a subprocess; add its peak RSS from the kernel's accounting."""
    process = subprocess.Popen(
        [sys.executable, __file__, "--child", url, fmt], stdout=subprocess.PIPE, cwd=ROOT
    )
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"child failed for {url} {fmt} (exit {process.returncode})")
    result = json.loads(output)
    result["peak_mb"] = usage.ru_maxrss / 1024
    return result


def _run(*args: str) -> str:
    return subprocess.run(
        [sys.executable, __file__, *args], check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT
    ).stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the parent -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--formats", default="csv,xlsx")
    parser.add_argument("--databases", default="sqlite")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    formats = args.formats.split(",")

    port = _free_port()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "TASKAPP_BUCKET": BUCKET,
            "TASKAPP_REPORT_MAX_DAYS": "366",
        }
    )
    moto = subprocess.Popen(
        [sys.executable, __file__, "--serve-aws", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert moto.stdin is not None
    assert moto.stdout is not None
    moto.stdout.readline()  # "ready"
    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    print(
        f"{'db':<10} {'format':<6} {'rows':>9} {'seconds':>8} {'rows/s':>9} {'MB out':>7} "
        f"{'ru_maxrss MB':>12} {'VmHWM MB':>9} {'after import':>12}"
    )
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-reports-{uuid.uuid4().hex[:6]}"
    tmp.mkdir()
    try:
        for kind in args.databases.split(","):
            for size in sizes:
                url = _run("--setup", kind, str(size), str(tmp))
                try:
                    for fmt in formats:
                        r = measure(url, fmt)
                        results[(kind, fmt, size)] = r
                        print(
                            f"{kind:<10} {fmt:<6} {r['rows']:>9} {r['seconds']:>8.1f} "
                            f"{r['rows'] / r['seconds']:>9,.0f} {r['bytes'] / 2**20:>7.1f} "
                            f"{r['peak_mb']:>12.1f} {r['hwm_mb']:>9.1f} "
                            f"{r['baseline_mb']:>12.1f}",
                            flush=True,
                        )
                finally:
                    _run("--drop", url)
    finally:
        moto.stdin.close()
        moto.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    _summary(results, sizes)


def _summary(results: dict[tuple[str, str, int], dict[str, Any]], sizes: list[int]) -> None:
    small, big = min(sizes), max(sizes)
    print()
    verdicts = []
    for (kind, fmt, size), r in sorted(results.items()):
        if size != big or (kind, fmt, small) not in results or small == big:
            continue
        ratio = r["peak_mb"] / results[(kind, fmt, small)]["peak_mb"]
        ok = r["peak_mb"] < LIMIT_MB and ratio < 1.25
        verdicts.append(ok)
        print(
            f"{kind} {fmt}: peak RSS {big:,} rows / {small:,} rows = {ratio:.2f}; "
            f"peak {r['peak_mb']:.0f} MB (limit {LIMIT_MB}) -> {'OK' if ok else 'FAIL'}"
        )
    if not all(verdicts):
        raise SystemExit(1)


if __name__ == "__main__":
    role, *rest = sys.argv[1:] or [""]
    if role == "--child":
        child(rest[0], rest[1])
    elif role == "--setup":
        setup(rest[0], int(rest[1]), rest[2])
    elif role == "--drop":
        drop(rest[0])
    elif role == "--serve-aws":
        serve_aws(int(rest[0]))
    else:
        main()
