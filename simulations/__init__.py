"""Simulations, attack suites and benchmarks run from the repository root (not installed)."""
