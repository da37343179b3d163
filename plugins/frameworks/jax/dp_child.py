"""The data-parallel child process: ``python -m dlbench.builtin.frameworks.jax.dp_child FOLDER``.

:func:`.dp.data_parallel_throughput` starts it; it measures with the plugin's own framework,
which :mod:`.dp` receives as an argument (so ``dp`` never imports the plugin that imports it).
Importing the plugin imports no JAX: :func:`.dp.measure` configures the host devices first.
"""

from __future__ import annotations

import sys
from functools import partial

from .._dp_child import child_main
from . import JaxFramework
from .dp import measure

if __name__ == "__main__":
    sys.exit(child_main(partial(measure, JaxFramework())))
