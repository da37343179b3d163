"""Family parity on Keras with one backend, in this (fresh) process; the rows as JSON on stdout.

``python tests/family_parity_worker.py BACKEND TASK PARAMS_JSON`` prints
``FAMILY_PARITY_JSON {check: relative error}`` (:func:`tests.family_parity.family_rows` of the
task's spec on Keras, torch the reference). ``tests/family_parity.py`` starts it; the tests
make the assertions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.family_parity import MARKER, family_rows, task_spec  # noqa: E402


def main(backend: str, task_name: str, params: str) -> int:
    from dlbench.builtin.frameworks.keras import KerasFramework
    from dlbench.builtin.frameworks.torch import TorchFramework

    keras_fw, torch_fw = KerasFramework(), TorchFramework()
    keras_fw.setup(1, 0, {"backend": backend})
    torch_fw.setup(1, 0, {})
    rows = family_rows(keras_fw, task_spec(task_name, json.loads(params)), torch_fw, backend=backend)
    print(MARKER, json.dumps(rows, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
