"""``taskapp aws``: what a deployment on real AWS needs besides the queues."""

from __future__ import annotations

import json

import click

from config.settings import load_settings

__all__ = ["aws"]


@click.group()
def aws() -> None:
    """IAM policy and bucket for this deployment."""


@aws.command("policy")
@click.option(
    "--account",
    help="AWS account id of the ARNs; default: the caller's, from STS GetCallerIdentity.",
)
@click.option(
    "--role",
    "role",
    type=click.Choice(["worker", "release", "all"]),
    default="all",
    show_default=True,
    help="Statements of the worker role, the release (provisioning) role, or both.",
)
def policy(account: str | None, role: str) -> None:
    """Print a least-privilege IAM policy for the configured queues, topics and bucket."""
    from taskapp.sqs.policy import ROLES, build_policy

    settings = load_settings()
    if account is None:
        from taskapp.aws import client

        account = str(client("sts", settings).get_caller_identity()["Account"])
    roles = ROLES if role == "all" else (role,)
    click.echo(json.dumps(build_policy(settings, account, roles), indent=2))


@aws.command("bucket")
def bucket() -> None:
    """Create TASKAPP_BUCKET unless it exists (local stacks; on AWS, infrastructure owns it)."""
    from taskapp.aws import client
    from taskapp.sqs.provision import ensure_bucket

    settings = load_settings()
    created = ensure_bucket(client("s3", settings), settings.bucket)
    click.echo(f"bucket {settings.bucket}: {'created' if created else 'exists'}")
