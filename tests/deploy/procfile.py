"""Reading the Procfile and checking its commands against the celery and taskapp CLIs."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import click
from celery.bin.base import CLIContext
from celery.bin.celery import celery

from taskapp.app import app
from taskapp.cli import main

ROOT = Path(__file__).resolve().parents[2]
PROCFILE = ROOT / "Procfile"


def roles(text: str | None = None) -> dict[str, str]:
    """Procfile role -> command line."""
    text = PROCFILE.read_text() if text is None else text
    result = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            role, command = line.split(":", 1)
            result[role.strip()] = command.strip()
    return result


def steps(command: str) -> list[list[str]]:
    """The argv of each ``&&``-separated step of a command line."""
    return [shlex.split(step) for step in command.split("&&")]


@dataclass(frozen=True)
class CeleryCall:
    """A parsed ``celery -A taskapp <subcommand> ...`` step."""

    subcommand: str
    params: dict[str, object]


def parse_celery(argv: list[str]) -> CeleryCall:
    """Parse ``argv`` with Celery's own click commands; raise click.UsageError if invalid."""
    assert argv[0] == "celery", argv
    args = argv[1:]
    ctx = celery.make_context("celery", list(args))
    ctx.obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    names = celery.list_commands(ctx)
    index = next(i for i, token in enumerate(args) if token in names)
    command = celery.get_command(ctx, args[index])
    assert command is not None
    sub = command.make_context(args[index], args[index + 1 :], parent=ctx)
    return CeleryCall(args[index], dict(sub.params))


def parse_taskapp(argv: list[str]) -> click.Command:
    """Resolve ``taskapp <group> <command>`` in the click group; return the leaf command."""
    assert argv[0] == "taskapp", argv
    command: click.Command = main
    ctx = click.Context(main)
    for token in argv[1:]:
        if token.startswith("-"):
            break
        assert isinstance(command, click.Group), f"{command.name} takes no subcommand {token}"
        found = command.get_command(ctx, token)
        assert found is not None, f"taskapp has no command {' '.join(argv[1:])}"
        command = found
    return command
