"""Message signing (optional setting): signed tasks run; forged or tampered ones are dead letters.

The signing worker and the signing producer run as subprocesses: Celery's signing serializer is
registered process-wide, and the session worker in this process stays on plain JSON.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from config.settings import Settings
from taskapp.sqs.deadletter import read_reason
from taskapp.sqs.provision import app_specs, provision
from tests.conftest import drain, prefixed_app
from tests.integration.processes import ROOT, worker_process
from tests.tasks import effect_times

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _key_and_cert(directory: Path) -> tuple[Path, Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "taskapp-signing")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    store = directory / "store"
    store.mkdir()
    key_path, cert_path = directory / "key.pem", store / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path, store


@pytest.fixture(scope="module")
def signing(
    app: Any, sqs: Any, settings: Settings, provisioned: Any, tmp_path_factory: Any
) -> dict[str, Any]:
    prefix = settings.queue_prefix + "sig-"
    provision(sqs, settings.model_copy(update={"queue_prefix": prefix}), app_specs(app))
    key, cert, store = _key_and_cert(tmp_path_factory.mktemp("signing"))
    env = {
        **os.environ,
        "TASKAPP_QUEUE_PREFIX": prefix,
        "TASKAPP_SIGNING_KEY": str(key),
        "TASKAPP_SIGNING_CERT": str(cert),
        "TASKAPP_SIGNING_CERT_STORE": str(store / "*.pem"),
    }
    url = sqs.get_queue_url(QueueName=prefix + "default")["QueueUrl"]
    return {"env": env, "prefix": prefix, "url": url}


def _send_signed(env: dict[str, str], *args: str, queue: str = "default") -> None:
    # Not `celery call`: it forces --serializer json.
    script = (
        "import sys, json; from taskapp import app; "
        "app.send_task('tests.record', args=json.loads(sys.argv[1]), queue=sys.argv[2])"
    )
    subprocess.run(
        [sys.executable, "-c", script, json.dumps(list(args)), queue],
        env=env, cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def test_signed_tasks_run_and_forged_or_tampered_ones_are_dead_lettered(
    signing: dict[str, Any], app: Any, sqs: Any, settings: Settings, tmp_path: Path
) -> None:
    env, url = signing["env"], signing["url"]
    tag = uuid.uuid4().hex
    # given a tampered message: signed by the real key, then its arguments changed
    probe = signing["prefix"] + "images"  # a queue no worker of this test consumes
    _send_signed(env, f"{tag}-signed-then-changed", queue="images")
    probe_url = sqs.get_queue_url(QueueName=probe)["QueueUrl"]
    (signed,) = drain(sqs, probe_url, wait=2)
    sqs.delete_message(QueueUrl=probe_url, ReceiptHandle=signed["ReceiptHandle"])
    envelope = json.loads(base64.b64decode(signed["Body"]))
    # kombu's base64 body holds the signing serializer's base64 of signer|signature|...|JSON
    fields = base64.b64decode(base64.b64decode(envelope["body"]))
    changed = fields.replace(b"signed-then-changed", b"forged-args-now")
    assert changed != fields
    envelope["body"] = base64.b64encode(base64.b64encode(changed)).decode()
    # and a forged one: a plain JSON task from a producer without the key
    forged = prefixed_app(app, signing["prefix"]).send_task("tests.record", args=[f"{tag}-forged"])
    with worker_process(env, "sig", tmp_path / "sig.log"):
        sqs.send_message(
            QueueUrl=url, MessageBody=base64.b64encode(json.dumps(envelope).encode()).decode()
        )
        # when a properly signed task is also sent
        _send_signed(env, f"{tag}-good")
        deadline = time.monotonic() + 30
        while not effect_times(f"{tag}-good") and time.monotonic() < deadline:
            time.sleep(0.2)
        letters: list[dict[str, Any]] = []
        while len(letters) < 2 and time.monotonic() < deadline:
            letters += drain(
                sqs,
                sqs.get_queue_url(QueueName=signing["prefix"] + "default-dlq")["QueueUrl"],
                wait=1,
            )
    # then the signed task ran, and both others are in the DLQ with the reason "signature"
    assert len(effect_times(f"{tag}-good")) == 1
    assert effect_times(f"{tag}-forged") == [] and effect_times(f"{tag}-forged-args-now") == []
    reasons = [read_reason(m.get("MessageAttributes", {})) for m in letters]
    assert [r.reason for r in reasons if r] == ["signature", "signature"]
    assert {r.task_id for r in reasons if r and r.task_id} >= {forged.id}
