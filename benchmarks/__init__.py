"""Benchmarks that run outside the test suite (``python benchmarks/<name>.py``)."""
