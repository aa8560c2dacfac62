"""Rerunnable benchmarks; figures in the docs come from these, never from timed tests."""
