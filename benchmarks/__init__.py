"""Speed and memory of the explicit ops against torch's own; run each as ``python -m
benchmarks.<name>`` from the repository root (see benchmarks/README.md)."""
