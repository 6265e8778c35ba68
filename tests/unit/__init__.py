"""Unit tests: pure functions and in-memory objects; no services, no subprocesses."""
