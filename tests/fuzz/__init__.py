"""Hostile input for the intake (issue #9): generated variants of the corpus, mutation fuzzing with
hypothesis, and the guarded worker processes that run both with a time and memory bound.

Shared by tests/unit/test_hostile_*.py (a fixed, derandomised sample that runs in the suite),
tests/integration/test_hostile_uploads.py (a subset over HTTP) and ``make fuzz``
(``python -m tests.fuzz.campaign``: every variant of every corpus file, then a long hypothesis run).
Nothing here is collected by pytest (no ``test_`` modules).
"""
