"""``taskapp email``: list and preview templates, or send one email through the workers."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from taskapp.errors import PermanentError

__all__ = ["email"]


@click.group()
def email() -> None:
    """Email templates and test sends."""


@email.command("templates")
def email_templates() -> None:
    """List the templates in taskapp/email/templates."""
    from taskapp.email.templates import template_names

    for name in template_names():
        click.echo(name)


@email.command("preview")
@click.argument("template")
@click.option("--context", "context_json", default="{}", help="Template context as JSON.")
@click.option("--to", default="preview@example.com", show_default=True)
def email_preview(template: str, context_json: str, to: str) -> None:
    """Render TEMPLATE and print the complete MIME message (nothing is sent)."""
    from config.settings import load_settings
    from taskapp.email.compose import compose, sender_address
    from taskapp.email.request import EmailRequest
    from taskapp.email.templates import render

    try:
        context = _json_object(context_json)
        request = EmailRequest.build(to, template=template, context=context)
        composed = compose(
            request,
            render(template, context),
            [],
            sender=sender_address(load_settings().mail_from),
            idempotency_key="preview",
        )
    except PermanentError as exc:
        _fail(exc)
    click.echo(composed.data.decode("utf-8", "replace").replace("\r\n", "\n"), nl=False)


@email.command("send")
@click.option("--to", "to", multiple=True, required=True, help="Recipient (repeatable).")
@click.option("--subject")
@click.option("--body", help="Plain-text body (instead of --template).")
@click.option("--template")
@click.option("--context", "context_json", default="{}", help="Template context as JSON.")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the result.")
def email_send(
    to: tuple[str, ...],
    subject: str | None,
    body: str | None,
    template: str | None,
    context_json: str,
    timeout: float,
) -> None:
    """Enqueue email.send, wait for a worker to deliver it, print the result as JSON."""
    from taskapp.email.tasks import send_email

    try:
        context = _json_object(context_json)
        result = send_email.delay(
            list(to), subject, body=body, template=template, context=context or None
        ).get(timeout=timeout)
    except PermanentError as exc:
        _fail(exc)
    click.echo(json.dumps(result, indent=2))


def _json_object(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--context") from None
    if not isinstance(value, dict):
        raise click.BadParameter("expected a JSON object", param_hint="--context")
    return value


def _fail(exc: PermanentError) -> NoReturn:
    click.echo(f"taskapp email: {exc}", err=True)
    sys.exit(2)
