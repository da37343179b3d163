"""dlbench: plugin-based benchmarking and robustness suite for deep learning."""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("dlbench")
"""Decorator for plugin hook implementations: ``@dlbench.hookimpl``."""

__all__ = ["hookimpl", "__version__"]
