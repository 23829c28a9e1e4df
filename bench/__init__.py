"""Benchmarks: each script prints its figures beside the baseline they are read against."""
