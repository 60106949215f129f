"""The SQS layer for any Celery app: ``taskapp.sqs.install(app)`` plus ``broker_url="sqs://"``.

Everything that knows kombu's SQS internals lives in this package, and it imports nothing else
of taskapp's: it is its own distribution (``packages/taskapp-sqs``), which taskapp depends on.
What ``install`` does, and how the application hands it what is the application's (its error
classes, its database, its idempotency records), is in :mod:`taskapp.sqs.extension`; the
transport options it reads are the README's table "The SQS extension".
"""

from taskapp.sqs.extension import install

__all__ = ["install"]
