"""The embedded local stack: moto as AWS, an SMTP sink, and the processes of ``taskapp dev``.

Its third-party parts (moto, aiosmtpd, honcho) are the ``local`` dependency group, installed by
default in a clone (``tool.uv.default-groups``) and never in the production image. Where they
are missing, ``taskapp demo`` / ``taskapp dev`` say in one line how to get them (exit 2).
"""

from __future__ import annotations

import click

__all__ = ["LocalGroupMissing", "INSTALL_HINT"]

INSTALL_HINT = "uv sync --group local"


class LocalGroupMissing(click.ClickException, ModuleNotFoundError):
    """The ``local`` dependency group is not installed; click prints one line and exits 2.

    A ``ModuleNotFoundError`` too, so code that probes for the stack with ``except ImportError``
    still works.
    """

    exit_code = 2  # a usage problem, like a bad setting, not a failure of the demo

    def __init__(self, module: str | None) -> None:
        click.ClickException.__init__(
            self,
            f"the local stack needs the 'local' dependency group ({module or 'a module'} is not"
            f" installed): run `{INSTALL_HINT}`",
        )
        self.name = module
