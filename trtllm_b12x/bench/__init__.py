"""Benchmark harness: timing, the MoE decode sweep, reports."""
