"""Data cleanup: retention rules for tables and S3, and platform hygiene, run by ``cleanup.run``.

Rules are declared in ``config/retention.py`` (overridable with ``TASKAPP_RETENTION_RULES``),
parsed and checked by ``rules``, applied in short batches by ``purge`` (tables), ``storage``
(S3) and ``hygiene`` (task results, idempotency records, sweepers), and orchestrated and
recorded in ``cleanup_runs`` by ``service``.
"""

__all__: list[str] = []
