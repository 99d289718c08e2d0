"""Benchmarks: each one a command whose output goes into docs/benchmarks.md."""
