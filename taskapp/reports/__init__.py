"""Reports: named, parameterised queries rendered to CSV, XLSX or HTML and delivered through S3.

Call ``reports.generate`` (``taskapp.reports.tasks.generate_report``) with a report name,
parameters, a format and optional recipients; it returns the S3 key, a presigned URL and the row
count. What a report is lives in ``definitions``; the built-in reports in ``catalogue``, which
builds the name lookup (``registry``) once; output formats and their writers in ``formats``.
"""
