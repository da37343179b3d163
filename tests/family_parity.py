"""Parity of a whole task-built model (a reference family at a reduced size) on one framework.

Not a test module: the machinery of ``tests/test_parity_layers.py`` applied to one spec a task
builds. :func:`family_rows` gives ``{check: relative error}``: ``outputs`` against the NumPy
float64 reference; for a framework that trains, against the torch plugin, ``loss``,
``input_gradient`` (float non-mask inputs), ``weights_after_step`` of one SGD step
(:func:`dlbench.measure.parity.measure_parity`) and ``outputs_torch``; for a spec with BatchNorm,
``running_statistics`` after one step against :func:`dlbench.spec_numpy.batch_norm_state`. The
family tests parametrise over :func:`framework_ids` and call :func:`assert_family_parity`, which
asserts the checks are there and every error <= 1e-4.

Keras fixes its backend at import, so :func:`keras_rows` runs ``tests/family_parity_worker.py``
in a process of its own per backend; :func:`start_keras` starts it without waiting, so the
backends' workers can overlap (:func:`finish_keras` reads the rows).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlbench import spec_numpy
from dlbench.framework import BuildOptions, Framework, Model, TrainConfig
from dlbench.measure.parity import (
    example_inputs,
    gradient_inputs,
    loss_for,
    measure_parity,
    numpy_output_row,
    relative_error,
    with_running_statistics,
)
from dlbench.plugins import get_plugins
from dlbench.spec import ModelSpec

WORKER = Path(__file__).resolve().parent / "family_parity_worker.py"
KERAS_BACKENDS = ("tensorflow", "jax", "torch")
MARKER = "FAMILY_PARITY_JSON"
VARIANT = {"jax": "compiled"}
"""JAX's eager mode compiles every primitive on its first call; the jitted variant runs the same
Flax code (as in tests/test_parity_layers.py)."""


def task_spec(task_name: str, params: Mapping[str, Any]) -> ModelSpec:
    """The spec the task builds for ``params``, without dropout (deterministic training)."""
    return get_plugins().tasks.get(task_name).model_spec(dict(params)).without_dropout()


def trains(fw: Framework) -> bool:
    """Whether the framework has train steps and gradients (inference runtimes do not)."""
    return bool(getattr(fw, "trains", True))


def keras_backends() -> list[str]:
    """Keras backends installed beside keras and torch (the gradient reference)."""
    if importlib.util.find_spec("keras") is None or importlib.util.find_spec("torch") is None:
        return []
    return [b for b in KERAS_BACKENDS if importlib.util.find_spec(b) is not None]


def neural_frameworks() -> list[str]:
    """Installed neural frameworks, Keras left out (it runs per backend: :func:`keras_rows`)."""
    return [fw.name for fw in get_plugins().frameworks
            if fw.kind == "neural" and fw.name != "keras" and fw.availability().installed]


def framework_ids() -> list[str]:
    """The ids a family test runs on: :func:`neural_frameworks` and ``keras-<backend>`` per
    :func:`keras_backends`."""
    return neural_frameworks() + [f"keras-{b}" for b in keras_backends()]


def _case(spec: ModelSpec) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    weights = with_running_statistics(spec, spec.init_weights(1), 2)
    x, y = example_inputs(spec, 4, 0)
    return weights, x, y


def _options(spec: ModelSpec, **opts: Any) -> BuildOptions:
    return BuildOptions(train=TrainConfig(loss_for(spec), "sgd", 0.1), **opts)


def family_rows(fw: Framework, spec: ModelSpec, reference: Framework | None = None,
                **extra: Any) -> dict[str, float]:
    """``{check: relative error}`` of ``spec`` on ``fw`` (see the module's docstring).

    ``reference`` is the torch plugin by default (when installed); ``extra`` goes to
    :class:`BuildOptions` ``extra`` (Keras's ``backend``)."""
    weights, x, y = _case(spec)
    default = "eager" if "eager" in fw.variants else fw.variants[0]  # runtimes: their first
    opts = {"variant": VARIANT.get(fw.name, default)} if not extra else {"extra": extra}

    def build() -> Model:
        return fw.build(spec, weights, _options(spec, **opts))

    model = build()
    rows = {"outputs": numpy_output_row(spec, weights, model, x).rel_error}
    if not trains(fw):
        return rows
    if reference is None and fw.name != "torch":
        plugins = get_plugins().frameworks
        if "torch" in plugins and plugins.get("torch").availability().installed:
            reference = plugins.get("torch")
    if reference is not None:
        ref_model = reference.build(spec, weights, _options(spec, variant="eager"))
        for r in measure_parity(ref_model, model, x, y):
            rows["outputs_torch" if r.check == "outputs" else r.check] = r.rel_error
    if spec.state_keys():
        expected = spec_numpy.batch_norm_state(spec, weights, x)
        stepped = build()
        stepped.train_step(stepped.to_device(x), stepped.to_device(y))
        stepped.synchronize()
        after = stepped.get_weights()
        rows["running_statistics"] = max(relative_error(after[k], v) for k, v in expected.items())
    return rows


def start_keras(backend: str, task_name: str, params: Mapping[str, Any]) -> subprocess.Popen[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, str(WORKER), backend, task_name, json.dumps(dict(params))],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish_keras(proc: subprocess.Popen[str], timeout: float = 900) -> dict[str, float]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    for line in reversed(out.splitlines()):
        if line.startswith(MARKER + " "):
            rows: dict[str, float] = json.loads(line.split(" ", 1)[1])
            return rows
    raise AssertionError(f"keras family worker failed (rc={proc.returncode}):\n{err[-4000:]}")


def keras_rows(backend: str, task_name: str, params: Mapping[str, Any]) -> dict[str, float]:
    """:func:`family_rows` of the task's spec on Keras with ``backend``, in a fresh process."""
    return finish_keras(start_keras(backend, task_name, params))


def expected_checks(spec: ModelSpec, fw_name: str, learns: bool) -> set[str]:
    """The checks :func:`family_rows` must give for ``spec`` on ``fw_name``: ``outputs`` always;
    for a framework that trains, ``loss`` and ``weights_after_step`` against torch (not on torch
    itself), ``input_gradient`` when the spec has float non-mask inputs, and
    ``running_statistics`` when it has BatchNorm state."""
    checks = {"outputs"}
    if not learns:
        return checks
    if fw_name != "torch":
        checks |= {"loss", "weights_after_step"}
        if gradient_inputs(spec):
            checks.add("input_gradient")
    if spec.state_keys():
        checks.add("running_statistics")
    return checks


def assert_family_parity(fw_name: str, task_name: str, params: Mapping[str, Any]) -> None:
    """The task's spec for ``params`` on ``fw_name`` (an id of :func:`framework_ids`): the
    :func:`expected_checks` are there and every relative error <= 1e-4."""
    from tests.jax_quick import quick_jax

    spec = task_spec(task_name, params)
    if fw_name.startswith("keras-"):
        rows, learns = keras_rows(fw_name.split("-", 1)[1], task_name, params), True
    else:
        fw = get_plugins().frameworks.get(fw_name)
        with quick_jax():
            rows, learns = family_rows(fw, spec), trains(fw)
    assert expected_checks(spec, fw_name, learns) <= set(rows), rows
    bad = {k: v for k, v in rows.items() if not v <= 1e-4}
    assert not bad, f"{fw_name} {task_name}: {bad}"
