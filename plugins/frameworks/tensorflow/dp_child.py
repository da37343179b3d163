"""The data-parallel child process: ``python -m dlbench.builtin.frameworks.tensorflow.dp_child FOLDER``.

:func:`.dp.data_parallel_throughput` starts it; it measures with the plugin's own framework,
which :mod:`.dp` receives as an argument (so ``dp`` never imports the plugin that imports it).
Importing the plugin starts no TensorFlow runtime: :func:`.dp.measure` configures the devices first.
"""

from __future__ import annotations

import sys
from functools import partial

from .._dp_child import child_main
from . import TensorFlowFramework
from .dp import measure

if __name__ == "__main__":
    sys.exit(child_main(partial(measure, TensorFlowFramework())))
