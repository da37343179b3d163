"""Every op, every installed neural framework: same weights and inputs give the same numbers.

The framework list comes from the plugin registry, so a new framework plugin joins these tests
by being installed. Forward passes are checked against the NumPy reference
(:mod:`dlbench.spec_numpy`); loss, input gradients and the weight update of one SGD step are
checked against PyTorch, whose gradients ``tests/test_torch_framework.py`` checks against finite
differences of the NumPy reference.

BatchNorm specs start from seeded running statistics (:func:`with_running_statistics`), so
inference mode is tested on non-trivial ones; after one training step the running statistics of
every framework are checked against the NumPy reference (:func:`spec_numpy.batch_norm_state`).

Keras is left out here: its backend must be chosen before Keras is imported, so each backend
needs a process of its own; ``tests/test_keras_framework.py`` runs these checks per backend.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from dlbench import spec_numpy
from dlbench.framework import BuildOptions, Framework, Model, TrainConfig
from dlbench.measure.parity import (
    example_inputs,
    gradient_inputs,
    layer_specs,
    loss_for,
    measure_parity,
    numpy_output_row,
    relative_error,
    with_running_statistics,
)
from dlbench.plugins import get_plugins

SPECS = layer_specs()
SEPARATE_PROCESS = {"keras"}
SWEEP_VARIANT = {"jax": "compiled"}
"""The variant each framework's sweep uses. JAX's eager mode compiles every primitive on its first
call, which costs far more than one jit of the whole model; both run the same Flax code, and
tests/test_jax_framework.py covers eager."""


def _neural_frameworks() -> list[str]:
    names = []
    for fw in get_plugins().frameworks:
        if fw.kind != "neural" or fw.name in SEPARATE_PROCESS:
            continue
        if fw.availability().installed:
            names.append(fw.name)
    return names


FRAMEWORKS = _neural_frameworks()
TRAINING = [n for n in FRAMEWORKS if get_plugins().frameworks.get(n).trains]
"""The frameworks with train steps and gradients (inference runtimes run only the forward
checks here; tests/test_inference_runtimes.py covers the rest)."""


def _framework(name: str) -> Framework:
    return get_plugins().frameworks.get(name)


@pytest.fixture(scope="module", autouse=True)
def _quick_jax() -> Iterator[None]:
    from tests.jax_quick import quick_jax

    with quick_jax():
        yield


def _build(fw_name: str, spec_name: str, **opts: object) -> tuple[Model, dict, dict, np.ndarray]:
    spec = SPECS[spec_name].without_dropout()
    weights = with_running_statistics(spec, spec.init_weights(1), 2)
    x, y = example_inputs(spec, 4, 0)
    train = TrainConfig(loss_for(spec), "sgd", 0.1)
    opts.setdefault("variant", SWEEP_VARIANT.get(fw_name, _framework(fw_name).variants[0]))
    model = _framework(fw_name).build(spec, weights, BuildOptions(train=train, **opts))
    return model, weights, x, y


def _torch_reference(spec_name: str) -> Model | None:
    if "torch" not in FRAMEWORKS:
        return None
    return _build("torch", spec_name, variant="eager")[0]


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("fw_name", FRAMEWORKS)
def test_forward_matches_numpy_and_weights_round_trip(fw_name: str, spec_name: str) -> None:
    model, weights, x, _ = _build(fw_name, spec_name)
    got = model.get_weights()  # canonical round trip, bit for bit
    assert sorted(got) == sorted(weights)
    for k, w in weights.items():
        assert got[k].dtype == np.float32 and got[k].shape == w.shape, k
        np.testing.assert_array_equal(got[k], w, err_msg=k)
    row = numpy_output_row(model.spec, weights, model, x)
    assert row.passed, f"{fw_name} {spec_name}: outputs differ from NumPy by {row.rel_error:.2e}"


QUICK_GRADIENT_SPECS = {"conv2d_same_stride2", "concat_conv", "layer_norm", "attention_masked",
                        "position_embedding", "batch_norm_conv", "residual_block", "conv2d_grouped",
                        "conv2d_depthwise", "conv1d_subsample", "attention_causal_masked",
                        "embedding_bag", "dot_interaction", "maxpool2d_overlap_pad",
                        "maxpool1d_overlap_pad"}
"""Specs whose gradients run in the quick suite (the risky layouts, paddings and masks); the
others are marked slow: each costs a compilation or two in JAX and TensorFlow."""


@pytest.mark.parametrize("spec_name", [
    pytest.param(n, marks=() if n in QUICK_GRADIENT_SPECS else pytest.mark.slow) for n in sorted(SPECS)])
@pytest.mark.parametrize("fw_name", [n for n in TRAINING if n != "torch"])
def test_gradients_and_step_match_torch(fw_name: str, spec_name: str) -> None:
    reference = _torch_reference(spec_name)
    if reference is None:
        pytest.skip("torch (the gradient reference) is not installed")
    model, weights, x, y = _build(fw_name, spec_name)
    rows = measure_parity(reference, model, x, y)
    checks = {r.check for r in rows}
    assert {"outputs", "loss", "weights_after_step"} <= checks
    assert ("input_gradient" in checks) == bool(gradient_inputs(model.spec))
    bad = [f"{r.check}={r.rel_error:.2e}" for r in rows if not r.passed]
    assert not bad, f"{fw_name} {spec_name} differs from torch: {', '.join(bad)}"
    for k, w in model.get_weights().items():  # measure_parity restores the weights
        np.testing.assert_array_equal(w, weights[k], err_msg=k)


BATCH_NORM_SPECS = sorted(n for n, s in SPECS.items() if "BatchNorm" in s.ops())


def test_batch_norm_specs_have_running_statistics() -> None:
    assert {"batch_norm_conv", "batch_norm_dense", "residual_block"} <= set(BATCH_NORM_SPECS)
    spec = SPECS["residual_block"]
    assert len(spec.state_keys()) == 2 * 3 and all(".moving_" in k for k in spec.state_keys())
    assert spec.parameter_count() == sum(int(np.prod(s)) for k, s in spec.param_shapes().items()
                                         if k not in spec.state_keys())


@pytest.mark.parametrize("spec_name", BATCH_NORM_SPECS)
@pytest.mark.parametrize("fw_name", TRAINING)
def test_batch_norm_running_statistics_after_a_step_match_numpy(fw_name: str, spec_name: str) -> None:
    """One SGD step: running statistics = (1 - momentum) * old + momentum * biased batch moments,
    and the next inference uses them."""
    model, weights, x, y = _build(fw_name, spec_name)
    expected = spec_numpy.batch_norm_state(model.spec, weights, x)
    assert sorted(expected) == model.spec.state_keys()
    model.train_step(model.to_device(x), model.to_device(y))
    model.synchronize()
    after = model.get_weights()
    errors = {k: relative_error(after[k], v) for k, v in expected.items()}
    assert all(e <= 1e-4 for e in errors.values()), f"{fw_name} {spec_name}: {errors}"
    moved = [k for k in expected if not np.array_equal(after[k], weights[k])]
    assert moved == sorted(expected)  # a step that left them alone would fail above, but say so
    assert numpy_output_row(model.spec, after, model, x).passed  # inference reads the new ones


@pytest.mark.parametrize("spec_name", ["conv2d_same_stride2", "residual_block"])
@pytest.mark.parametrize("fw_name", FRAMEWORKS)
def test_bf16_is_close(fw_name: str, spec_name: str) -> None:
    if "bf16" not in _framework(fw_name).precisions:
        pytest.skip(f"{fw_name} has no bf16")
    model, weights, x, y = _build(fw_name, spec_name, precision="bf16")
    out = model.predict(x)
    assert relative_error(out, spec_numpy.forward(model.spec, weights, x)) < 5e-2
    reference = _torch_reference(spec_name)
    if reference is not None:
        rows = measure_parity(reference, model, x, y)
        assert all(r.tolerance is None and r.passed is None for r in rows)  # reported, not judged
        assert all(r.rel_error < 0.1 for r in rows), rows
    loss = model.train_step(model.to_device(x), model.to_device(y))
    assert np.isfinite(float(model.to_numpy(loss)))


@pytest.mark.slow
@pytest.mark.parametrize("spec_name", ["conv2d_same_stride2", "attention_masked", "residual_block",
                                       "embedding_bag"])
@pytest.mark.parametrize("fw_name", FRAMEWORKS)
def test_compiled_variant_parity(fw_name: str, spec_name: str) -> None:
    if "compiled" not in _framework(fw_name).variants:
        pytest.skip(f"{fw_name} has no compiled variant")
    model, weights, x, y = _build(fw_name, spec_name, variant="compiled")
    assert numpy_output_row(model.spec, weights, model, x).passed
    reference = _torch_reference(spec_name)
    if reference is not None:
        rows = measure_parity(reference, model, x, y)
        assert all(r.passed for r in rows), rows


def test_update_error_forgives_only_float32_rounding_of_the_weights():
    from dlbench.measure.parity import update_error

    w = np.array([0.1, 0.5, -0.3], dtype=np.float32)
    step = np.array([2e-6, -1e-6, 3e-6], dtype=np.float32)
    ref_after = (w - step).astype(np.float32)
    one_ulp = ref_after + np.spacing(ref_after)  # the same update, rounded one ULP apart
    assert update_error(w, one_ulp, w, ref_after) == 0.0
    wrong = (w - 1.01 * step).astype(np.float32)  # a 1% different update is still caught
    assert update_error(w, wrong, w, ref_after) > 1e-4
