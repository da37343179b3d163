"""Running a suite: suite files, sessions, the cell worker, launchers, A/B."""
