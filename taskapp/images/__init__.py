"""Image processing: thumbnails and variants from S3 or a URL, analysis, and the upload fan-out.

Tasks (``taskapp.images.tasks``): ``images.thumbnails``, ``images.analyze``,
``images.process_upload`` and its chord callbacks ``images.record_upload`` /
``images.record_upload_failure``. Logic lives in ``service`` (orchestration), ``pipeline``
(decode once, resize, encode), ``analyze``, ``fetch`` (pycurl with an SSRF guard), ``storage``
(S3) and ``records`` (the ``image_uploads`` table).

- Sources: JPEG, PNG, WebP, GIF and (if Pillow has it) AVIF; anything else is refused unparsed.
- Outputs: ``thumbnails/<source sha256[:16]>/<box>-<hash of source + parameters>.<ext>`` in
  ``TASKAPP_BUCKET``, immutable (``Cache-Control: public, max-age=31536000, immutable``), with
  width/height in the object metadata so a repeated job can rebuild its manifest from HEADs.
- Animations: the first frame only (see ``pipeline``).
- Limits: ``TASKAPP_IMAGE_MAX_BYTES`` (download), ``TASKAPP_MAX_IMAGE_PIXELS`` (decode),
  ``TASKAPP_FETCH_ALLOWLIST`` (private hosts a URL may reach; empty in production).
"""
