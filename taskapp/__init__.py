"""taskapp: Celery task families on Amazon SQS. ``celery -A taskapp worker`` finds ``app`` here."""

from taskapp.app import app
from taskapp.sqs.batch import enqueue_many

__all__ = ["app", "enqueue_many"]
