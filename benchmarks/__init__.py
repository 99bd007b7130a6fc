"""Benchmarks of mfpde (run with ``python -m benchmarks`` or ``mfpde bench``).

Each module exposes ``run(quick: bool) -> dict`` returning measured times (medians of repeated runs
after a JIT warm-up) and the ratios to the peers measured in the same run.
"""
