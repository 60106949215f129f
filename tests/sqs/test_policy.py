"""``taskapp aws policy``: least privilege for the configured queues, topics and bucket."""

from __future__ import annotations

import json
import re
import uuid
from fnmatch import fnmatchcase
from typing import Any

import pytest
from click.testing import CliRunner

from config.settings import Settings
from taskapp.cli import main
from taskapp.policy import ROLES, build_policy, topic_names
from taskapp.queues import dlq_name, queue_names

ACCOUNT = "210987654321"
#: Condition operators and keys this project's policies may use (IAM grammar, SNS/KMS keys).
OPERATORS = {"StringEquals", "StringLike", "ArnLike", "ForAnyValue:StringEquals"}
CONDITION_KEYS = {"sns:Protocol", "sns:Endpoint", "kms:ResourceAliases"}
#: IAM's limit on a managed policy document, whitespace not counted.
MANAGED_POLICY_MAX_CHARS = 6144


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
    # and wildcards are limited to ListQueues, the per-process monitoring queues and objects
    wild = {sid for sid, s in statements.items() for r in s["Resource"] if "*" in r}
    assert wild == {
        "WorkerListQueues",
        "WorkerMonitoringQueues",
        "WorkerBucketObjects",
        "FlowerListQueues",
        "FlowerMonitoringQueues",
        "ProducerClaimChecks",
    }
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


def _configured(settings: Settings) -> Settings:
    """Settings with every optional statement switched on: SES, a KMS key, an STS role."""
    return settings.model_copy(
        update={
            "email_backend": "ses",
            "mail_from": "noreply@shop.example",
            "sqs_kms_key": "alias/queues",
            "sts_role_arn": f"arn:aws:iam::{ACCOUNT}:role/queues",
        }
    )


def _allows_subscribe(policy: dict[str, Any], topic: str, protocol: str, endpoint: str) -> bool:
    """Whether ``policy`` lets its holder subscribe ``endpoint`` over ``protocol`` to ``topic``."""
    values = {"sns:Protocol": protocol, "sns:Endpoint": endpoint}
    compare = {"StringEquals": str.__eq__, "StringLike": fnmatchcase, "ArnLike": fnmatchcase}
    for statement in policy["Statement"]:
        if not any(fnmatchcase("sns:Subscribe", a) for a in statement["Action"]):
            continue
        if not any(fnmatchcase(topic, r) for r in statement["Resource"]):
            continue
        conditions = statement.get("Condition", {})
        if all(
            compare[op](values[key], wanted)
            for op, tests in conditions.items()
            for key, wanted in tests.items()
        ):
            return True
    return False


def test_subscribe_is_only_for_the_prefixs_monitoring_queues_over_sqs(settings: Settings) -> None:
    # given every role's policy
    policy = build_policy(_configured(settings), ACCOUNT)
    queue = f"arn:aws:sqs:{settings.region}:{ACCOUNT}:"
    events = f"arn:aws:sns:{settings.region}:{ACCOUNT}:{topic_names(settings)[0]}"
    own = queue + settings.queue_prefix + "mon-ev-0123abcd"
    # then a monitoring queue of this environment may be subscribed to the event topic
    assert _allows_subscribe(policy, events, "sqs", own)
    # and nothing else: another protocol, another prefix, a work queue, another account
    for protocol, endpoint in [
        ("https", "https://collector.example/events"),
        ("email", "someone@example.com"),
        ("sqs", own.replace(f":{ACCOUNT}:", ":123456789012:")),
        ("sqs", queue + "other-mon-ev-0123abcd"),
        ("sqs", queue + settings.queue_prefix + "email"),
        ("lambda", f"arn:aws:lambda:{settings.region}:{ACCOUNT}:function:x"),
    ]:
        assert not _allows_subscribe(policy, events, protocol, endpoint), (protocol, endpoint)
    # and every statement that grants sns:Subscribe carries the condition
    for statement in policy["Statement"]:
        if "sns:Subscribe" in statement["Action"]:
            assert statement["Action"] == ["sns:Subscribe"]
            assert statement["Condition"]["StringEquals"] == {"sns:Protocol": "sqs"}


def test_flower_and_producers_get_policies_of_their_own_without_deletes(
    settings: Settings,
) -> None:
    arn = f"arn:aws:sqs:{settings.region}:{ACCOUNT}:{settings.queue_prefix}"
    work = {arn + q for q in queue_names()}
    dlqs = {arn + dlq_name(q) for q in queue_names()}
    # when the Flower and producer policies are built on their own
    flower = build_policy(_configured(settings), ACCOUNT, ("flower",))
    producer = build_policy(_configured(settings), ACCOUNT, ("producer",))
    # then each has statements of its own, and neither may delete an object
    for role, policy in (("Flower", flower), ("Producer", producer)):
        assert policy["Statement"]
        assert all(s["Sid"].startswith(role) for s in policy["Statement"])
        assert "s3:DeleteObject" not in {a for s in policy["Statement"] for a in s["Action"]}
    # and Flower reads every queue's depth, but may not take, send or delete tasks, nor touch S3
    statements = _by_sid(flower)
    assert set(statements["FlowerQueueDepths"]["Resource"]) == work | dlqs
    on_task_queues = {
        a for s in flower["Statement"] if set(s["Resource"]) & (work | dlqs) for a in s["Action"]
    }
    assert on_task_queues == {"sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    assert not any(a.startswith("s3:") for s in flower["Statement"] for a in s["Action"])
    # and a producer may only send: tasks to the work queues, payloads under the claim-check prefix
    statements = _by_sid(producer)
    actions = {a: set() for s in producer["Statement"] for a in s["Action"]}
    for s in producer["Statement"]:
        for a in s["Action"]:
            actions[a] |= set(s["Resource"])
    assert actions.pop("sqs:SendMessage") == work
    assert actions.pop("sqs:GetQueueUrl") == work | dlqs  # predefined queues resolve both
    assert actions.pop("s3:PutObject") == {f"arn:aws:s3:::{settings.bucket}/claim-check/*"}
    events = {f"arn:aws:sns:{settings.region}:{ACCOUNT}:{topic_names(settings)[0]}"}
    for publish in ("sns:CreateTopic", "sns:Publish", "sns:TagResource"):  # task-sent events
        assert actions.pop(publish) == events
    assert set(actions) == {"kms:Decrypt", "kms:GenerateDataKey", "sts:AssumeRole"}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_policy_is_valid_iam_and_fits_a_managed_policy(
    settings: Settings, role: str
) -> None:
    from taskapp.aws import client

    # given one role's policy, with every optional statement
    policy = build_policy(_configured(settings), ACCOUNT, (role,))
    # then its grammar is IAM's: unique alphanumeric Sids, service:Action, ARNs, known conditions
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"]
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(sids) == len(set(sids))
    assert all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    for statement in policy["Statement"]:
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        assert statement["Effect"] == "Allow"
        assert all(re.fullmatch(r"[a-z0-9-]+:[A-Za-z]+", a) for a in statement["Action"])
        assert all(r == "*" or r.startswith("arn:aws:") for r in statement["Resource"])
        for operator, tests in statement.get("Condition", {}).items():
            assert operator in OPERATORS
            assert set(tests) <= CONDITION_KEYS
    # and it fits IAM's size limit for a managed policy
    assert len(json.dumps(policy, separators=(",", ":"))) <= MANAGED_POLICY_MAX_CHARS
    # and IAM (moto's validator) accepts it as a managed policy
    iam = client("iam", settings)
    name = f"taskapp-{role}-{uuid.uuid4().hex[:8]}"
    created = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(policy))
    iam.delete_policy(PolicyArn=created["Policy"]["Arn"])


def test_cli_prints_one_policy_per_role_by_default(settings: Settings) -> None:
    # when the policy is printed without --role
    result = CliRunner().invoke(main, ["aws", "policy", "--account", ACCOUNT])
    # then there is one complete policy document per role, named by role
    assert result.exit_code == 0, result.output
    documents = json.loads(result.output)
    assert list(documents) == list(ROLES)
    for role, document in documents.items():
        assert document == build_policy(settings, ACCOUNT, (role,))
