"""``taskapp settings``: validate the environment's settings, or write the README's table."""

from __future__ import annotations

from pathlib import Path

import click

from config.settings import load_settings, settings_table

__all__ = ["README_MARKERS", "show_settings"]

README_MARKERS = ("<!-- settings:start -->\n", "<!-- settings:end -->")


@click.command("settings")
@click.option("--markdown", is_flag=True, help="Print the README's settings table.")
@click.option(
    "--readme",
    type=click.Path(exists=True, path_type=Path),
    help="Rewrite the settings table between the markers of this README.",
)
def show_settings(markdown: bool, readme: Path | None) -> None:
    """Validate the environment's settings and print them (secrets masked)."""
    if markdown:
        click.echo(settings_table())
        return
    if readme:
        start, end = README_MARKERS
        text = readme.read_text()
        head, rest = text.split(start, 1)
        readme.write_text(head + start + settings_table() + "\n" + end + rest.split(end, 1)[1])
        return
    for name, value in load_settings():  # secrets, the database password too, print masked
        click.echo(f"{name} = {value!r}")
