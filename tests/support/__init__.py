"""Helpers shared by the test packages (no fixtures here: those live in the conftest files)."""
