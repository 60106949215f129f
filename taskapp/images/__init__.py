"""Image processing: thumbnails and variants from S3 or a URL, analysis, and the upload fan-out.

Tasks (``taskapp.images.tasks``): ``images.thumbnails``, ``images.analyze``,
``images.process_upload`` and its chord callbacks ``images.record_upload`` /
``images.record_upload_failure``. Logic lives in ``service`` (orchestration), ``pipeline``
(decode once, resize, encode), ``analyze``, ``fetch`` (pycurl with an SSRF guard), ``storage``
(S3) and ``records`` (the ``image_uploads`` table).
"""
