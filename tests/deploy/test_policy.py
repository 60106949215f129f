"""``taskapp aws policy``: least privilege for the configured queues, topics and bucket."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from config.settings import Settings
from taskapp.cli import main
from taskapp.queues import dlq_name, queue_names
from taskapp.sqs.policy import build_policy, topic_names

ACCOUNT = "210987654321"


def _by_sid(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy["Statement"]}


def test_each_role_gets_exactly_the_configured_queues(settings: Settings) -> None:
    # given the configured prefix and region
    arn = f"arn:aws:sqs:{settings.region}:{ACCOUNT}:{settings.queue_prefix}"
    expected = {arn + q for q in queue_names()} | {arn + dlq_name(q) for q in queue_names()}
    # when the policy is built for both roles
    statements = _by_sid(build_policy(settings, ACCOUNT))
    # then workers may use, and only the release role may create, exactly those queues
    assert set(statements["WorkerQueues"]["Resource"]) == expected
    assert set(statements["ReleaseProvisionQueues"]["Resource"]) == expected
    worker_actions = {
        a for sid, s in statements.items() if sid.startswith("Worker") for a in s["Action"]
    }
    assert "sqs:CreateQueue" not in statements["WorkerQueues"]["Action"]
    assert "sqs:CreateQueue" in statements["ReleaseProvisionQueues"]["Action"]
    assert not {"sqs:DeleteQueue", "sqs:PurgeQueue", "sqs:*", "s3:*"} & (
        worker_actions - set(statements["WorkerMonitoringQueues"]["Action"])
    )
    # and wildcards are limited to ListQueues and the per-process monitoring queues
    wild = {sid for sid, s in statements.items() for r in s["Resource"] if "*" in r}
    assert wild == {"WorkerListQueues", "WorkerMonitoringQueues", "WorkerBucketObjects"}
    assert statements["WorkerMonitoringQueues"]["Resource"] == [arn + "mon-*"]
    topics = {f"arn:aws:sns:{settings.region}:{ACCOUNT}:{t}" for t in topic_names(settings)}
    assert set(statements["WorkerMonitoringTopics"]["Resource"]) == topics
    assert statements["WorkerBucketObjects"]["Resource"] == [f"arn:aws:s3:::{settings.bucket}/*"]


def test_ses_kms_and_sts_statements_appear_only_when_configured(settings: Settings) -> None:
    plain = _by_sid(build_policy(settings, ACCOUNT, ("worker",)))
    assert not {"WorkerSendEmail", "WorkerQueueKey", "WorkerAssumeQueueRole"} & set(plain)
    assert not any(sid.startswith("Release") for sid in plain)
    # given SES email, a customer-managed queue key and an assumed queue role
    key = "1234abcd-12ab-34cd-56ef-1234567890ab"
    role = f"arn:aws:iam::{ACCOUNT}:role/queues"
    configured = settings.model_copy(
        update={
            "email_backend": "ses",
            "mail_from": "Shop <noreply@shop.example>",
            "sqs_kms_key": key,
            "sts_role_arn": role,
        }
    )
    statements = _by_sid(build_policy(configured, ACCOUNT, ("worker",)))
    identity = f"arn:aws:ses:{settings.region}:{ACCOUNT}:identity/"
    assert statements["WorkerSendEmail"]["Resource"] == [
        identity + "shop.example",
        identity + "noreply@shop.example",
    ]
    assert statements["WorkerQueueKey"]["Resource"] == [
        f"arn:aws:kms:{settings.region}:{ACCOUNT}:key/{key}"
    ]
    assert statements["WorkerAssumeQueueRole"]["Resource"] == [role]


def test_cli_takes_the_account_from_sts(provisioned: list[Any], settings: Settings) -> None:
    # given credentials for the local AWS (moto answers account 123456789012)
    # when the policy is printed for the release role
    result = CliRunner().invoke(main, ["aws", "policy", "--role", "release"])
    # then it is a JSON policy document in the caller's account
    assert result.exit_code == 0, result.output
    policy = json.loads(result.output)
    assert policy["Version"] == "2012-10-17"
    (statement,) = policy["Statement"]
    assert all(":123456789012:" in arn for arn in statement["Resource"])
