"""``taskapp demo`` and ``taskapp dev``: the embedded local stack (moto, an SMTP sink, roles)."""

from __future__ import annotations

import signal
import sys
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
    for stop_signal in (signal.SIGTERM, signal.SIGHUP):  # kill, or the terminal closed
        signal.signal(stop_signal, lambda *_: sys.exit(0))
    try:
        stack.start()
        for name, url in stack.urls.items():
            console.print(f"{name:>12}: {url}")
        console.print("Ctrl-C stops everything.")
        while not stack.dead_roles():
            time.sleep(0.5)
        dead = ", ".join(r.name for r in stack.dead_roles())
        console.print(f"[red]{dead} exited; see {stack.var_dir / 'log'}[/red]")
    except KeyboardInterrupt:
        pass
    finally:
        # A second Ctrl-C must not cut the stop short.
        for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(stop_signal, signal.SIG_IGN)
        console.print("stopping ...")
        stopping = time.monotonic()
        stack.stop()
        console.print(f"stopped in {time.monotonic() - stopping:.1f} s")
