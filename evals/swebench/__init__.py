"""SWE-bench: instance files, a MASAI-style pipeline, local grading by running the tests, and the swe_mini suite."""

from __future__ import annotations
