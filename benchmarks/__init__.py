"""Table reproduction and speed benchmarks (run as modules: python -m benchmarks.NAME)."""
