"""The SQS extension's S3 plumbing (:mod:`taskapp.sqs.s3`), under taskapp's AWS names."""

from taskapp.sqs.s3 import *  # noqa: F403 - the same names, one definition
from taskapp.sqs.s3 import __all__ as __all__
