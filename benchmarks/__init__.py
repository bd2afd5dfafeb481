"""Benchmarks for syncd: edit-to-visible latency and a many-file burst, syncd vs. the
baselines a user would otherwise script (`docker cp` / the archive API per changed file).

Run with `python -m benchmarks` (see `--help`).
"""
