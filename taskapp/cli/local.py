"""``taskapp demo`` and ``taskapp dev``: the embedded local stack (moto, an SMTP sink, roles)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path

import click

from taskapp.cli.console import console

__all__ = ["demo", "dev"]


@click.command()
@click.option("--var-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
def demo(var_dir: Path) -> None:
    """Start the local stack, run one task of every family, print what they produced."""
    from taskapp.local.demo import run_demo

    sys.exit(run_demo(var_dir, console))


@click.command()
@click.option("--var-dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True)
def dev(var_dir: Path) -> None:
    """Run moto, an SMTP sink, a worker, beat and Flower on 127.0.0.1 until Ctrl-C."""
    from taskapp.local.stack import Stack

    stack = Stack(var_dir, flower=True)
    # The signal only sets a flag: an exception raised wherever the main thread happens to be
    # (KeyboardInterrupt, or SystemExit from a handler) could leave a lock held that the stop
    # then waits on for ever; beside a CPU hog `taskapp dev` once never exited.
    stopping = threading.Event()
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, kill, hang-up
        signal.signal(stop_signal, lambda *_: stopping.set())
    try:
        stack.start()
        if not stopping.is_set():
            for name, url in stack.urls.items():
                console.print(f"{name:>12}: {url}")
            console.print("Ctrl-C stops everything.")
        while not stopping.wait(0.5):
            if stack.dead_roles():
                dead = ", ".join(r.name for r in stack.dead_roles())
                console.print(f"[red]{dead} exited; see {stack.var_dir / 'log'}[/red]")
                break
    finally:
        # A second Ctrl-C must not cut the stop short.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        console.print("stopping ...")
        began = time.monotonic()
        stack.stop()
        console.print(f"stopped in {time.monotonic() - began:.1f} s")
