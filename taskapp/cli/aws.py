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
    # taskapp.policy.ROLES, spelled out so `taskapp --help` need not import kombu
    type=click.Choice(["worker", "flower", "producer", "release", "all"]),
    default="all",
    show_default=True,
    help="The policy of one role, or every role's (attach each to its own IAM role).",
)
def policy(account: str | None, role: str) -> None:
    """Print least-privilege IAM policies for the configured queues, topics and bucket.

    Roles: worker (celery workers), flower, producer (web apps, beat: send tasks only) and
    release (`taskapp queues provision`). With `--role all`, one policy document per role, by
    role name: each fits IAM's 6,144-character limit for a managed policy, their union may not.
    """
    from taskapp.policy import build_policy, policies

    settings = load_settings()
    if account is None:
        from taskapp.aws import client

        account = str(client("sts", settings).get_caller_identity()["Account"])
    document = (
        policies(settings, account) if role == "all" else build_policy(settings, account, (role,))
    )
    click.echo(json.dumps(document, indent=2))


@aws.command("bucket")
def bucket() -> None:
    """Create TASKAPP_BUCKET unless it exists (local stacks; on AWS, infrastructure owns it)."""
    from taskapp.aws import client
    from taskapp.aws.s3 import ensure_bucket

    settings = load_settings()
    created = ensure_bucket(client("s3", settings), settings.bucket)
    click.echo(f"bucket {settings.bucket}: {'created' if created else 'exists'}")
