"""The ready suites, installed as package data (``dlbench.suites``)."""
