"""``taskapp email``: template listing and preview (rendering only, nothing sent)."""

from __future__ import annotations

import json
from email import message_from_string, policy

from click.testing import CliRunner

from taskapp.cli import main

CONTEXT = json.dumps({"name": "Zoë", "steps": ["Verify"], "account_url": "https://x.example"})


def test_templates_are_listed() -> None:
    result = CliRunner().invoke(main, ["email", "templates"])
    assert result.exit_code == 0
    assert "welcome" in result.output.split()


def test_preview_prints_the_rendered_mime_message() -> None:
    result = CliRunner().invoke(main, ["email", "preview", "welcome", "--context", CONTEXT])
    assert result.exit_code == 0, result.output
    msg = message_from_string(result.output, policy=policy.default)
    assert msg["Subject"] == "Welcome to taskapp, Zoë"
    assert msg.get_content_type() == "multipart/alternative"


def test_preview_with_a_missing_variable_exits_2_naming_it() -> None:
    result = CliRunner().invoke(main, ["email", "preview", "welcome"])
    assert result.exit_code == 2
    assert "context: " in result.output
    assert "'name' is undefined" in result.output
