"""Email: ``email.send`` and ``email.send_bulk`` over SMTP, Amazon SES or ``.eml`` files.

Modules: ``request`` (validation), ``templates`` (Jinja2), ``attachments``, ``compose`` (MIME),
``smtp``/``ses``/``backends`` (delivery), ``ledger`` (exactly-once), ``service`` (the steps in
order), ``bulk`` (fan-out plan) and ``tasks`` (the Celery edge).
"""
