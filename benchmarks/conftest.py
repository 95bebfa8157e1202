"""pytest-benchmark suite (`make bench`); benchmarks arrive with the firmware tick."""
