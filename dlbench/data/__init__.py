"""Datasets: the registry of declared datasets and verified atomic downloads."""
