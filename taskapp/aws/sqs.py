"""The SQS extension's plumbing (:mod:`taskapp.sqs.plumbing`), under taskapp's AWS names."""

from taskapp.sqs.plumbing import *  # noqa: F403 - the same names, one definition
from taskapp.sqs.plumbing import __all__ as __all__
