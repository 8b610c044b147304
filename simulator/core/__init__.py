"""The replay spine: the data contract, price sheets, scenarios, predicates, the engine, the metrics
registry, saved results, statistics (Wilson, bootstrap), errors and atomic outputs.

Add a policy kind in scenario.py (its YAML shape) and engine.py (its vectorised replay), and the same
construct in tests/reference.py; a metric in metrics.py's registry. Nothing here imports another wing.
"""
