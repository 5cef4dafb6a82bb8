"""Benchmarks: runnable scripts that print figures and PASS/FAIL per target (see run_all.py)."""
