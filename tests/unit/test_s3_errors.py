"""One reading of S3 errors (taskapp.aws.s3.classify), and the families that rely on it."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st

from taskapp.aws.s3 import MISSING_CODES, RETRYABLE_CODES, classify
from taskapp.cleanup.rules import RuleError, StorageRule
from taskapp.cleanup.storage import _s3_errors
from taskapp.errors import PermanentError, RetryableError
from taskapp.reports.delivery import s3_errors

KNOWN = MISSING_CODES | RETRYABLE_CODES | {"NoSuchBucket"}


def _error(code: str, status: int = 400) -> ClientError:
    response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "GetObject")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", sorted(RETRYABLE_CODES))
def test_transient_codes_are_retryable(code: str) -> None:
    assert classify(_error(code)) == "retryable"


@pytest.mark.parametrize("code", sorted(MISSING_CODES))
def test_missing_object_codes_are_missing(code: str) -> None:
    assert classify(_error(code, 404)) == "missing"


REFUSALS = [
    "NoSuchBucket",
    "AccessDenied",
    "InvalidBucketName",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidArgument",
]


@pytest.mark.parametrize("code", REFUSALS)
def test_refusals_are_permanent(code: str) -> None:
    status = 404 if code == "NoSuchBucket" else 403
    assert classify(_error(code, status)) == "permanent"


@given(
    st.text(alphabet=st.characters(categories=["L", "N"]), min_size=1, max_size=30),
    st.integers(min_value=400, max_value=599),
)
def test_an_unknown_code_is_permanent_unless_s3_itself_failed(code: str, status: int) -> None:
    if code in KNOWN or status == 404:
        return
    expected = "retryable" if status >= 500 else "permanent"
    assert classify(_error(code, status)) == expected


def test_network_errors_are_retryable() -> None:
    assert classify(EndpointConnectionError(endpoint_url="http://127.0.0.1:1")) == "retryable"
    assert classify(ConnectionResetError()) == "retryable"


def test_cleanup_does_not_retry_a_refusal_it_does_not_know() -> None:
    # given a storage rule, when S3 refuses with a code no list names (a bad access key)
    rule = StorageRule(name="old-uploads", prefix="uploads/", max_age=None, orphaned_by="x")
    with pytest.raises(RuleError), _s3_errors(rule):
        raise _error("InvalidAccessKeyId", 403)
    # and throttling is still retried
    with pytest.raises(RetryableError), _s3_errors(rule):
        raise _error("SlowDown", 503)


def test_reports_and_cleanup_agree_on_throttling_and_refusal() -> None:
    with pytest.raises(RetryableError), s3_errors("put"):
        raise _error("RequestTimeTooSkewed", 403)
    with pytest.raises(PermanentError), s3_errors("put"):
        raise _error("InvalidAccessKeyId", 403)
