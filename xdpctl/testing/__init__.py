"""Helpers shared by the test suites, the demo and the benchmarks."""
