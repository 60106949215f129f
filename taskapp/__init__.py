"""taskapp: Celery task families on Amazon SQS. ``celery -A taskapp worker`` finds ``app`` here."""

from taskapp.app import app

__all__ = ["app"]
