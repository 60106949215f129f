"""``taskapp demo``: start the local stack, run one task of every family, print what came out."""

from __future__ import annotations

import importlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from taskapp.local.stack import Stack

__all__ = ["run_demo", "render_results", "FAMILY_DEMOS", "DemoFailed"]

#: Every task family; each has ``taskapp.<family>.demo.run() -> list[tuple[str, str]]``.
FAMILY_DEMOS = ["email", "images", "cleanup", "reports"]
DEADLINE = 115  # seconds; the demo promises to finish in under 2 minutes


class DemoFailed(Exception):
    """A demo step failed; the message says which and why."""


def _ping() -> list[tuple[str, str]]:
    from taskapp.tasks import ping

    started = time.monotonic()
    answer = ping.delay().get(timeout=60, interval=0.05)
    return [("taskapp.ping", f"{answer} in {time.monotonic() - started:.2f}s")]


def _steps() -> list[tuple[str, Callable[[], list[tuple[str, str]]]]]:
    """Ping, then each family's demo; a family whose demo does not import fails the demo.

    Skipping it instead (as before) let ``taskapp demo`` succeed, and its test pass, with a
    family left out.
    """
    steps: list[tuple[str, Callable[[], list[tuple[str, str]]]]] = [("ping", _ping)]
    for family in FAMILY_DEMOS:
        try:
            module = importlib.import_module(f"taskapp.{family}.demo")
        except ImportError as exc:
            raise DemoFailed(f"{family}: its demo does not import ({exc})") from exc
        steps.append((family, module.run))
    return steps


#: Longer values leave the table for a line of their own.
COPYABLE_OVER = 40


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise DemoFailed(f"the demo did not finish within {DEADLINE}s")


def run_demo(var_dir: Path, console: Console | None = None) -> int:
    """Run the demo; return the process exit status (0 on success)."""
    console = console or Console()
    try:
        steps = _steps()  # before anything starts: a missing demo fails at once
    except DemoFailed as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    stack = Stack(var_dir, flower=False, sample=True)  # the demo's own tables and rules
    results: list[tuple[str, str, str]] = []
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(DEADLINE)
    try:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            step = progress.add_task("starting moto, SMTP sink, worker and beat", total=None)
            stack.start()
            progress.update(step, completed=1, total=1)
            for family, run in steps:
                step = progress.add_task(f"{family}: running", total=None)
                try:
                    lines = run()
                except Exception as exc:  # a demo step's failure becomes the demo's reason
                    dead = ", ".join(r.name for r in stack.dead_roles())
                    hint = f" (exited: {dead}; see {stack.var_dir / 'log'})" if dead else ""
                    raise DemoFailed(f"{family}: {type(exc).__name__}: {exc}{hint}") from exc
                results += [(family, label, value) for label, value in lines]
                progress.update(step, description=f"{family}: done", completed=1, total=1)
    except DemoFailed as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        stack.stop()
    render_results(results, console)
    console.print("[green]demo succeeded[/green]")
    return 0


def _copyable(value: str) -> bool:
    return "://" in value or len(value) > COPYABLE_OVER


def render_results(results: list[tuple[str, str, str]], console: Console) -> None:
    """The demo's results: a table of the short ones, then each key or URL on a line of its own.

    A table folds a long value across lines (80 columns without a tty), and a folded presigned
    URL cannot be copied; printed alone, unwrapped and
    with no markup or `:emoji:` codes read into it, it can.
    """
    table = Table("family", "what", "result", title="taskapp demo")
    for family, label, value in results:
        table.add_row(Text(family), Text(label), Text("(below)" if _copyable(value) else value))
    console.print(table)
    for family, label, value in results:
        if _copyable(value):
            console.print(f"{family} {label}:", markup=False, highlight=False, emoji=False)
            console.print(value, markup=False, highlight=False, emoji=False, soft_wrap=True)
