"""Comparing runs: rows, effects, thresholds, the CI gate, history, environment diffs."""
