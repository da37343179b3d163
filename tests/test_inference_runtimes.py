"""Inference runtimes (onnxruntime, openvino): the spec exported to ONNX runs through the same
scenarios as the training frameworks. Parity and speed on the digits CNN and MLP, int8 dynamic
quantisation, training cells skipped with their reason, accuracy and robustness from the weights
another framework trained and stored, gradient attacks skipped and named by the audit."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dlbench import spec_numpy
from dlbench.cell import Cell
from dlbench.errors import UnsupportedError
from dlbench.framework import BuildOptions
from dlbench.measure.parity import example_inputs, layer_specs, relative_error
from dlbench.plugins import get_plugins
from dlbench.scenarios.speed import SpeedScenario
from tests.robustness_helpers import run_cell

RUNTIMES = [pytest.param(n, marks=pytest.mark.skipif(importlib.util.find_spec(n) is None,
                                                     reason=f"{n} is not installed"))
            for n in ("onnxruntime", "openvino")]
HAS_TORCH = importlib.util.find_spec("torch") is not None
FAST = {"max_time": 0.5, "warmup_time": 0.05, "min_samples": 5, "latency_samples": 100}


@pytest.mark.parametrize("name", RUNTIMES)
def test_declares_an_inference_runtime(name: str) -> None:
    fw = get_plugins().frameworks.get(name)
    assert fw.kind == "neural" and fw.trains is False
    assert fw.unsupported("cpu", {"variant": "eager"}) is not None  # its own variants only
    assert fw.unsupported("cpu", {"variant": fw.variants[0]}) is None
    task = get_plugins().tasks.get("vision")
    reason = SpeedScenario().skip_reason(Cell("speed", "vision", name, params={"mode": "train"}), task, fw)
    assert reason is not None and "inference runtime" in reason
    assert SpeedScenario().skip_reason(Cell("speed", "vision", name, params={"mode": "infer"}), task, fw) is None


@pytest.mark.parametrize("name", RUNTIMES)
def test_no_train_step_and_no_gradients(name: str) -> None:
    fw = get_plugins().frameworks.get(name)
    spec = layer_specs()["conv2d_same"]
    w = spec.init_weights(0)
    model = fw.build(spec, w, BuildOptions(variant=fw.variants[0]))
    x, y = example_inputs(spec, 3, 0)
    with pytest.raises(UnsupportedError, match="no train step"):
        model.train_step(model.to_device(x), model.to_device(y))
    with pytest.raises(UnsupportedError, match="without input gradients"):
        model.loss_and_input_gradient(x, y)
    w2 = spec.init_weights(5)  # set_weights compiles the new weights
    model.set_weights(w2)
    assert relative_error(model.predict(x), spec_numpy.forward(spec, w2, x)) <= 1e-4
    for k, v in model.get_weights().items():
        np.testing.assert_array_equal(v, w2[k])


@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("name", RUNTIMES)
def test_parity_on_the_digits_models(name: str, model: str, tmp_path: Path) -> None:
    reference = "torch" if HAS_TORCH else "numpy"
    r = run_cell("vision", name, {"model": model, "reference": reference}, tmp_path, scenario="parity")
    assert r.status == "ok", r.error
    checks = {row["check"]: row for row in r.details["parity"]}
    assert set(checks) == {"outputs", "loss"}
    assert all(row["passed"] and row["rel_error"] <= 1e-4 for row in checks.values()), checks
    assert r.metrics["parity_passed"] == 1.0


@pytest.mark.parametrize("model", ["cnn", "mlp"])
@pytest.mark.parametrize("name", RUNTIMES)
def test_speed_latency_and_throughput(name: str, model: str, tmp_path: Path) -> None:
    for bs in (1, 16):
        cell_params = {"model": model, "batch_size": bs, "mode": "infer"}
        r = _speed(name, cell_params, tmp_path)
        assert r.status == "ok", r.error
        tp = r.measurement("throughput")
        assert tp is not None and tp.stats is not None and tp.stats.median > 0
        assert (r.measurement("latency") is not None) == (bs == 1)


def _speed(name: str, params: dict, tmp_path: Path):  # type: ignore[no-untyped-def]
    from dlbench.run.worker import execute
    from tests.robustness_helpers import COMMON_PARAMS  # noqa: F401  (the helper's defaults)

    plugins = get_plugins()
    declared = {**COMMON_PARAMS, **SpeedScenario.params, **plugins.tasks.get("vision").params,
                **plugins.frameworks.get(name).params}
    full = {k: p.default for k, p in declared.items()}
    full.update(params)
    cell = Cell("speed", "vision", name, "cpu", full, budget=FAST)
    return execute({"cell": cell.to_dict(), "plugins": {}, "artifacts_dir": str(tmp_path)})


@pytest.mark.parametrize("name", RUNTIMES)
def test_training_cells_skip_with_the_reason(name: str, tmp_path: Path) -> None:
    r = _speed(name, {"model": "mlp", "batch_size": 4, "mode": "train"}, tmp_path)
    assert r.status == "skipped" and "no train step" in (r.error or "")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="onnxruntime is not installed")
def test_int8_dynamic_quantisation_runs_close_to_fp32(tmp_path: Path) -> None:
    fw = get_plugins().frameworks.get("onnxruntime")
    spec = layer_specs()["ffn_gelu"]
    w = spec.init_weights(0)
    x, _ = example_inputs(spec, 8, 0)
    int8 = fw.build(spec, w, BuildOptions(variant="all", precision="int8")).predict(x)
    fp32 = fw.build(spec, w, BuildOptions(variant="all")).predict(x)
    expected = spec_numpy.forward(spec, w, x)
    assert relative_error(fp32, expected) <= 1e-4
    err = relative_error(int8, expected)
    assert 0 < err < 0.1, err  # quantised: not bit-equal, still close
    r = _speed("onnxruntime", {"model": "mlp", "batch_size": 8, "precision": "int8"}, tmp_path)
    assert r.status == "ok", r.error


@pytest.mark.skipif(not HAS_TORCH, reason="the trainer (torch) is not installed")
@pytest.mark.parametrize("name", RUNTIMES)
def test_accuracy_runs_the_weights_torch_trained(name: str, tmp_path: Path) -> None:
    params = {"model": "mlp", "epochs": 1, "trained_by": "torch"}
    trained = run_cell("vision", "torch", {"model": "mlp", "epochs": 1, "reuse": True}, tmp_path,
                       scenario="accuracy")
    assert trained.status == "ok", trained.error
    r = run_cell("vision", name, params, tmp_path, scenario="accuracy")
    assert r.status == "ok", r.error
    assert r.details["reused_trained_weights"] is True  # not trained again: reloaded from the store
    assert r.model is not None and trained.model is not None
    assert r.model.artifact == trained.model.artifact
    assert r.model.trained_digest == trained.model.trained_digest
    assert abs(r.metrics["accuracy"] - trained.metrics["accuracy"]) <= 2 / r.metrics.get("n_test", 300)


@pytest.mark.skipif(not HAS_TORCH, reason="the trainer (torch) is not installed")
def test_accuracy_with_a_trainer_that_cannot_train_is_skipped(tmp_path: Path) -> None:
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed")
    r = run_cell("vision", "onnxruntime", {"model": "mlp", "epochs": 1, "trained_by": "openvino"},
                 tmp_path, scenario="accuracy")
    assert r.status == "skipped" and "trained_by" in (r.error or "")


@pytest.mark.skipif(not HAS_TORCH, reason="the trainer (torch) is not installed")
@pytest.mark.parametrize("name", RUNTIMES)
def test_robustness_runs_the_black_box_attacks_and_skips_gradient_ones(name: str, tmp_path: Path) -> None:
    params = {"model": "mlp", "epochs": 1, "attacks": ["noise", "fgsm"], "epsilons": [8.0],
              "eval_size": 40, "blackbox_size": 20}
    r = run_cell("vision", name, params, tmp_path)
    assert r.status == "ok", r.error
    attacks = {p["attack"] for p in r.series.get("robustness_curve", [])}
    assert "noise" in attacks and "fgsm" not in attacks
    assert "inference runtime" in str(r.details)  # the reason fgsm and the gradient checks skip
    assert r.details.get("audit_verdict") != "passed"


def test_inference_suite_puts_the_runtimes_beside_the_compiled_modes() -> None:
    from dlbench.run.suite import load

    plugins = get_plugins()
    cells = load("inference", plugins).cells(plugins)
    speed = {(c.framework, c.params["variant"], c.params["precision"]) for c in cells
             if c.scenario == "speed"}
    assert {("torch", "eager", "fp32"), ("torch", "compiled", "fp32"), ("tensorflow", "graph", "fp32"),
            ("tensorflow", "compiled", "fp32"), ("jax", "compiled", "fp32"),
            ("onnxruntime", "all", "fp32"), ("onnxruntime", "all", "int8"),
            ("openvino", "latency", "fp32")} == speed
    timed = [c for c in cells if c.scenario == "speed"]
    assert all(c.params["mode"] == "infer" for c in timed)
    # every model at batch 1 (latency) and one throughput batch, on all eight configurations
    models = {(c.task, c.params.get("model"), c.params.get("size")) for c in timed}
    assert {("vision", "cnn"), ("nlp", "bag"), ("vision", "resnet"), ("nlp", "bert"),
            ("speech", "encoder"), ("recsys", "dlrm")} == {m[:2] for m in models}
    for m in models:
        mine = [c for c in timed if (c.task, c.params.get("model"), c.params.get("size")) == m]
        assert len({c.params["batch_size"] for c in mine}) == 2 and min(c.params["batch_size"] for c in mine) == 1
        assert len(mine) == 2 * 8, m
    # the runtimes' parity on every model, and the accuracy of the weights torch trained
    parity = {(c.task, c.params.get("model")) for c in cells if c.scenario == "parity"}
    assert {m[:2] for m in models} == parity
    runtimes = [c for c in cells if c.scenario == "accuracy" and c.framework in ("onnxruntime", "openvino")]
    assert len(runtimes) == 4 and all(c.params["trained_by"] == "torch" for c in runtimes)


def test_a_wildcard_asking_for_eager_keeps_the_runtime_cells_to_skip(tmp_path: Path) -> None:
    """``frameworks: installed`` with ``variant: eager`` loads (no SuiteError): the runtimes' cells
    are kept and their framework says why they cannot run; a block naming them is refused."""
    from dlbench.errors import SuiteError
    from dlbench.run import suite as suites

    plugins = get_plugins()
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n"
                    "    frameworks: installed\n    params: {variant: eager}\n")
    cells = suites.load(str(path), plugins).cells(plugins)
    for name in ("onnxruntime", "openvino"):
        if not plugins.frameworks.get(name).availability().installed:
            continue
        cell = next(c for c in cells if c.framework == name)
        reason = plugins.frameworks.get(name).unsupported(cell.device, cell.params)
        assert reason is not None and f"{name} has no variant 'eager'" in reason
    path.write_text("name: s\nmatrix:\n  - scenario: speed\n    tasks: [vision]\n"
                    "    frameworks: [onnxruntime]\n    params: {variant: eager}\n")
    with pytest.raises(SuiteError, match="onnxruntime has no variant 'eager'"):
        suites.load(str(path), plugins).cells(plugins)


@pytest.mark.parametrize("name", RUNTIMES)
def test_every_variant_agrees_with_numpy(name: str) -> None:
    """Each graph optimisation level (ONNX Runtime) or performance hint (OpenVINO) computes the
    same outputs: the optimisations fuse, they do not change the numbers beyond fp32 rounding."""
    fw = get_plugins().frameworks.get(name)
    for spec_name in ("residual_block", "attention_causal_masked", "maxpool2d_overlap_pad"):
        spec = layer_specs()[spec_name]
        w = spec.init_weights(3)
        x, _ = example_inputs(spec, 4, 1)
        expected = spec_numpy.forward(spec, w, x)
        for variant in fw.variants:
            got = fw.build(spec, w, BuildOptions(variant=variant)).predict(x)
            assert relative_error(got, expected) <= 1e-4, (spec_name, variant)
