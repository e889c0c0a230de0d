"""Benchmarks: scripts run from the repository root as modules, e.g. ``python -m benchmarks.train_speed``."""

import cli

# Python imports this package before the benchmark it runs: the one place that quiets
# TensorFlow before any benchmark imports it (cli.quiet_tensorflow says why).
cli.quiet_tensorflow()
