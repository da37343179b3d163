"""ONNX export of the neutral spec: every layer type exports, passes onnx.checker, and ONNX
Runtime's outputs on it agree with the float64 NumPy reference (dlbench.spec_numpy)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from dlbench import spec_numpy
from dlbench.measure.parity import (
    example_inputs,
    layer_specs,
    relative_error,
    with_running_statistics,
)
from dlbench.spec import OPS

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from dlbench.onnx_export import OPSET, to_onnx, to_onnx_bytes  # noqa: E402

SPECS = layer_specs()


def test_layer_specs_cover_every_op() -> None:
    covered = {op for spec in SPECS.values() for op in spec.ops()}
    assert covered == set(OPS), f"ops without a layer spec: {sorted(set(OPS) - covered)}"


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_export_checks_and_matches_numpy(spec_name: str) -> None:
    spec = SPECS[spec_name].without_dropout()
    weights = with_running_statistics(spec, spec.init_weights(1), 2)
    model = to_onnx(spec, weights)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == OPSET
    assert [i.name for i in model.graph.input] == list(spec.inputs)
    assert [o.name for o in model.graph.output] == [spec.output]
    x, _ = example_inputs(spec, 5, 3)
    session = ort.InferenceSession(to_onnx_bytes(spec, weights), providers=["CPUExecutionProvider"])
    got = session.run(None, x)[0]
    expected = spec_numpy.forward(spec, weights, x)
    assert got.shape == expected.shape
    err = relative_error(got, expected)
    assert err <= 1e-4, f"{spec_name}: ONNX Runtime differs from NumPy by {err:.2e}"


def test_export_follows_the_weights() -> None:
    """Different weights give a different model (the initializers are the canonical weights)."""
    spec = SPECS["conv2d_same_stride2"]
    x, _ = example_inputs(spec, 3, 0)
    outs = []
    for seed in (1, 2):
        w = spec.init_weights(seed)
        s = ort.InferenceSession(to_onnx_bytes(spec, w), providers=["CPUExecutionProvider"])
        outs.append(s.run(None, x)[0])
        assert relative_error(outs[-1], spec_numpy.forward(spec, w, x)) <= 1e-4
    assert not np.allclose(outs[0], outs[1])


def test_wrong_weights_are_one_line() -> None:
    from dlbench.errors import DlbenchError

    spec = SPECS["dense"]
    w = spec.init_weights(0)
    w.pop("dense_0.bias")
    with pytest.raises(DlbenchError, match="missing"):
        to_onnx(spec, w)


def test_importing_the_exporter_imports_no_onnx() -> None:
    code = "import sys, dlbench.onnx_export; print('onnx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
