"""Reports: named, parameterised queries rendered to CSV, XLSX or HTML and delivered through S3.

Call ``reports.generate`` (``taskapp.reports.tasks.generate_report``) with a report name,
parameters, a format and optional recipients; it returns the S3 key, a presigned URL and the row
count. Definitions live in ``definitions``, the built-in reports in ``builtins``.
"""
