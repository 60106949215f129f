"""Email: ``email.send`` and ``email.send_bulk`` over SMTP, Amazon SES or ``.eml`` files.

Modules: ``request`` (validation), ``templates`` (Jinja2), ``attachments``, ``compose`` (MIME),
``smtp``/``ses``/``backends`` (delivery), ``service`` (the steps in order, sending once per key
through ``taskapp.idempotency``), ``bulk`` (fan-out plan) and ``tasks`` (the Celery edge).
"""
