"""Configuration: typed settings from the environment and what is built from them.

The Celery config (``celery``), the beat schedule, retention rules and Flower defaults.
"""
