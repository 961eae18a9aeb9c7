"""Measurements: `python -m benchmarks.NAME` (each module says what it measures)."""
