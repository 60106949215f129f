"""Jinja2 email templates: ``templates/<name>/`` holds ``subject.txt``, ``body.txt``, ``body.html``.

HTML is autoescaped (a customer's name cannot inject markup); text parts and the subject are not.
Undefined variables raise instead of rendering as empty, so a missing context value fails the
task with the variable's name rather than sending a broken email.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import (
    Environment,
    PackageLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    select_autoescape,
)

from taskapp.email.errors import MissingTemplateVariable, TemplateError, UnknownTemplate

__all__ = ["Rendered", "render", "template_names"]

PARTS = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class Rendered:
    """The parts a template produced; a part the template does not have is ``None``."""

    subject: str | None
    text: str | None
    html: str | None


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("taskapp.email", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def template_names() -> list[str]:
    """Every template in the package."""
    return sorted({name.split("/", 1)[0] for name in _environment().list_templates()})


def render(name: str, context: Mapping[str, Any]) -> Rendered:
    """Render every part of template ``name`` with ``context``."""
    if not _NAME.match(name):
        raise UnknownTemplate.at("template", f"{name!r} is not a template name")
    parts = {part: _render_part(name, filename, context) for part, filename in PARTS.items()}
    if parts["text"] is None and parts["html"] is None:
        raise UnknownTemplate.at("template", f"unknown template {name!r}")
    subject = parts["subject"]
    if subject is not None:
        subject = " ".join(subject.split())  # a subject is one line, whatever the file holds
    return Rendered(subject, parts["text"], parts["html"])


def _render_part(name: str, filename: str, context: Mapping[str, Any]) -> str | None:
    env = _environment()
    try:
        template = env.get_template(f"{name}/{filename}")
    except TemplateNotFound:
        return None
    except TemplateSyntaxError as exc:
        raise TemplateError.at("template", f"{name}/{filename} line {exc.lineno}: {exc}") from None
    try:
        return template.render(context)
    except UndefinedError as exc:
        # StrictUndefined says "'user' is undefined" or "'dict object' has no attribute 'x'".
        raise MissingTemplateVariable.at(
            "context", f"template {name}/{filename} needs a variable: {exc.message}"
        ) from None
