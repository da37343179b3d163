"""Run Keras plugin checks for one backend in this (fresh) process and print them as JSON.

Keras fixes its backend when it is imported, so ``tests/test_keras_framework.py`` runs this
script once per backend: ``python tests/keras_worker.py BACKEND CHECK[,CHECK...] [SPEC,...]``.
The last stdout line is ``KERAS_WORKER_JSON {...}``: one entry per check, numbers only; the tests
make the assertions.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlbench import spec_numpy  # noqa: E402
from dlbench.errors import DlbenchError, UnsupportedError  # noqa: E402
from dlbench.framework import BuildOptions, TrainConfig  # noqa: E402
from dlbench.measure import parity

MARKER = "KERAS_WORKER_JSON"
SPECS = parity.layer_specs()
PARITY_SPECS = ("conv2d_same_stride2", "attention_masked", "layer_norm", "position_embedding",
                "dot_two_towers", "batch_norm_conv", "residual_block", "conv2d_grouped",
                "conv2d_depthwise", "conv1d_subsample", "ffn_gelu", "attention_causal_masked",
                "embedding_bag", "dot_interaction", "maxpool2d_overlap_pad", "maxpool1d_overlap_pad")
BATCH_NORM_SPECS = ("batch_norm_conv", "batch_norm_dense", "residual_block")


def options(name: str, optimizer: str = "sgd", lr: float = 0.1, backend: str = "",
            **kw: Any) -> BuildOptions:
    extra = {"backend": backend} if backend else {}
    return BuildOptions(train=TrainConfig(parity.loss_for(SPECS[name]), optimizer, lr),
                        extra=extra, **kw)


def check_forward(ctx: dict[str, Any]) -> dict[str, float]:
    """Relative error of the eager fp32 forward pass against NumPy, per layer spec."""
    out = {}
    for name in ctx["specs"]:
        spec = SPECS[name]
        weights = parity.with_running_statistics(spec, spec.init_weights(1), 2)
        inputs, _ = parity.example_inputs(spec, n=3, seed=2)
        model = ctx["keras"].build(spec, weights, options(name, backend=ctx["backend"]))
        out[name] = parity.relative_error(model.predict(inputs), spec_numpy.forward(spec, weights, inputs))
    return out


def check_parity(ctx: dict[str, Any]) -> dict[str, dict[str, float]]:
    """measure_parity rows (SGD) against the torch plugin: {spec: {check: rel_error}}."""
    out = {}
    for name in PARITY_SPECS:
        spec = SPECS[name].without_dropout()
        weights = parity.with_running_statistics(spec, spec.init_weights(3), 4)
        inputs, targets = parity.example_inputs(spec, n=4, seed=4)
        ref = ctx["torch"].build(spec, weights, options(name))
        cand = ctx["keras"].build(spec, weights, options(name, backend=ctx["backend"]))
        out[name] = {r.check: r.rel_error for r in parity.measure_parity(ref, cand, inputs, targets)}
    return out


def check_batch_norm(ctx: dict[str, Any]) -> dict[str, dict[str, float]]:
    """After one SGD step: running statistics against NumPy, and inference reading them."""
    out = {}
    for name in BATCH_NORM_SPECS:
        spec = SPECS[name].without_dropout()
        weights = parity.with_running_statistics(spec, spec.init_weights(3), 4)
        inputs, targets = parity.example_inputs(spec, n=4, seed=4)
        model = ctx["keras"].build(spec, weights, options(name, backend=ctx["backend"]))
        expected = spec_numpy.batch_norm_state(spec, weights, inputs)
        model.train_step(model.to_device(inputs), model.to_device(targets))
        after = model.get_weights()
        out[name] = {k: parity.relative_error(after[k], v) for k, v in expected.items()}
        out[name]["outputs_after_step"] = parity.relative_error(
            model.predict(inputs), spec_numpy.forward(spec, after, inputs))
    return out


def updates(fw: Any, optimizer: str, **kw: Any) -> list[np.ndarray]:
    """Weight updates (after minus initial, all tensors) after one and after three steps."""
    name = "conv2d_same_stride2"
    spec = SPECS[name].without_dropout()
    weights = spec.init_weights(5)
    inputs, targets = parity.example_inputs(spec, n=4, seed=6)
    model = fw.build(spec, weights, options(name, optimizer, 0.05, **kw))
    x, y = model.to_device(inputs), model.to_device(targets)
    out = []
    for step in range(3):
        model.train_step(x, y)
        if step in (0, 2):
            model.synchronize()
            after = model.get_weights()
            out.append(np.concatenate([(after[k] - weights[k]).ravel() for k in sorted(weights)]))
    return out


def check_optimizers(ctx: dict[str, Any]) -> dict[str, float]:
    """Momentum and Adam updates after 1 and 3 steps against the torch plugin."""
    out = {}
    for opt in ("momentum", "adam"):
        ref = updates(ctx["torch"], opt)
        got = updates(ctx["keras"], opt, backend=ctx["backend"])
        for steps, a, b in zip((1, 3), got, ref, strict=True):
            out[f"{opt}_{steps}"] = parity.relative_error(a, b)
    return out


def check_weights(ctx: dict[str, Any]) -> dict[str, Any]:
    """Round trip of canonical weights; set_weights resets the optimizer state."""
    name = "attention_masked"
    spec = SPECS[name]
    w0, w1 = spec.init_weights(0), spec.init_weights(1)
    model = ctx["keras"].build(spec, w0, options(name, "adam", 0.01, backend=ctx["backend"]))
    got = model.get_weights()
    res: dict[str, Any] = {"keys_match": sorted(got) == sorted(w0),
                           "initial_equal": all(np.array_equal(got[k], w0[k]) for k in w0),
                           "dtypes": sorted({str(v.dtype) for v in got.values()})}
    model.set_weights(w1)
    res["set_equal"] = all(np.array_equal(model.get_weights()[k], w1[k]) for k in w1)
    inputs, targets = parity.example_inputs(spec)
    x, y = model.to_device(inputs), model.to_device(targets)
    model.train_step(x, y)
    first = model.get_weights()
    model.set_weights(w1)
    model.train_step(x, y)
    res["reset_repeatable"] = all(np.allclose(model.get_weights()[k], first[k], rtol=0, atol=1e-7)
                                  for k in first)
    res["changed"] = any(not np.array_equal(first[k], w1[k]) for k in w1)
    try:
        model.set_weights({k: v for k, v in w1.items() if not k.endswith("bias")})
        res["bad_weights_error"] = ""
    except DlbenchError as exc:
        res["bad_weights_error"] = str(exc)
    return res


def check_bf16(ctx: dict[str, Any]) -> dict[str, Any]:
    """Mixed bf16: output error against NumPy, a finite step, float32 master weights, gradients."""
    name = "attention_masked"
    spec = SPECS[name]
    weights = spec.init_weights(0)
    inputs, targets = parity.example_inputs(spec)
    model = ctx["keras"].build(spec, weights, options(name, precision="bf16", backend=ctx["backend"]))
    out = model.predict(inputs)
    loss = float(model.to_numpy(model.train_step(model.to_device(inputs), model.to_device(targets))))
    _, grads = model.loss_and_input_gradient(inputs, targets)
    return {"output_dtype": str(out.dtype),
            "rel_error": parity.relative_error(out, spec_numpy.forward(spec, weights, inputs)),
            "loss": loss, "weight_dtypes": sorted({str(v.dtype) for v in model.get_weights().values()}),
            "grad_finite": bool(np.isfinite(grads["x"]).all()),
            "grad_shape_ok": grads["x"].shape == inputs["x"].shape}


def check_compiled(ctx: dict[str, Any]) -> dict[str, Any]:
    """The compiled variant on one small model: NumPy forward and torch parity (SGD)."""
    name = "conv2d_same_stride2"
    spec = SPECS[name]
    weights = spec.init_weights(7)
    inputs, targets = parity.example_inputs(spec, n=4, seed=8)
    model = ctx["keras"].build(spec, weights, options(name, variant="compiled", backend=ctx["backend"]))
    ref = ctx["torch"].build(spec, weights, options(name))
    rows = {r.check: r.rel_error for r in parity.measure_parity(ref, model, inputs, targets)}
    rows["numpy_outputs"] = parity.relative_error(model.predict(inputs),
                                                  spec_numpy.forward(spec, weights, inputs))
    return rows


def check_misc(ctx: dict[str, Any]) -> dict[str, Any]:
    """Embeddings, devices, the graph variant's availability and switching backends."""
    from dlbench.builtin.frameworks.keras import select_backend

    fw, backend = ctx["keras"], ctx["backend"]
    spec = SPECS["position_embedding"]
    weights = spec.init_weights(0)
    inputs, _ = parity.example_inputs(spec)
    emb = fw.build(spec, weights, options("position_embedding", backend=backend)).embed(inputs)
    node = next(n.name for n in spec.nodes if n.op == "Embedding")
    res: dict[str, Any] = {
        "embed_error": parity.relative_error(emb[node], weights[f"{node}.embeddings"][inputs["ids"]]),
        "devices": fw.devices()}
    try:
        fw.build(SPECS["dense"], SPECS["dense"].init_weights(0), options("dense", variant="graph", backend=backend))
        res["graph"] = "ok"
    except UnsupportedError as exc:
        res["graph"] = str(exc)
    other = "jax" if backend != "jax" else "torch"
    for label, call in (("switch_error", lambda: select_backend(other)),
                        ("build_other_error", lambda: fw.build(SPECS["dense"], SPECS["dense"].init_weights(0),
                                                               options("dense", backend=other)))):
        try:
            call()
            res[label] = ""
        except DlbenchError as exc:
            res[label] = str(exc)
    return res


def check_gpu(ctx: dict[str, Any]) -> dict[str, Any]:
    """On the first GPU: parity with the torch plugin on CPU, a bf16 step and peak memory."""
    fw = ctx["keras"]
    if "cuda" not in fw.devices():
        return {"skip": f"keras backend {ctx['backend']} sees no GPU"}
    res: dict[str, Any] = {"fp32": {}}
    for name in ("attention_masked", "conv2d_same_stride2"):
        spec = SPECS[name].without_dropout()
        weights = spec.init_weights(3)
        inputs, targets = parity.example_inputs(spec, n=4, seed=4)
        ref = ctx["torch"].build(spec, weights, options(name))
        model = fw.build(spec, weights, options(name, device="cuda", backend=ctx["backend"]))
        model.reset_peak_memory()
        for r in parity.measure_parity(ref, model, inputs, targets):
            res["fp32"][f"{name}.{r.check}"] = r.rel_error
        res["peak_memory"] = model.peak_memory_bytes()
    name = "attention_masked"
    spec = SPECS[name]
    weights = spec.init_weights(0)
    inputs, targets = parity.example_inputs(spec)
    model = fw.build(spec, weights, options(name, device="cuda", precision="bf16", backend=ctx["backend"]))
    res["bf16_rel_error"] = parity.relative_error(model.predict(inputs),
                                                  spec_numpy.forward(spec, weights, inputs))
    res["bf16_loss"] = float(model.to_numpy(model.train_step(model.to_device(inputs),
                                                             model.to_device(targets))))
    return res


CHECKS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "forward": check_forward, "parity": check_parity, "batch_norm": check_batch_norm,
    "optimizers": check_optimizers,
    "weights": check_weights, "bf16": check_bf16, "compiled": check_compiled, "misc": check_misc,
    "gpu": check_gpu}


def main(argv: list[str]) -> int:
    backend, checks = argv[0], argv[1].split(",")
    specs = argv[2].split(",") if len(argv) > 2 and argv[2] != "all" else sorted(SPECS)
    from dlbench.builtin.frameworks.keras import KerasFramework
    from dlbench.builtin.frameworks.torch import TorchFramework

    keras_fw = KerasFramework()
    keras_fw.setup(1, 0, {"backend": backend})
    torch_fw = TorchFramework()
    torch_fw.setup(1, 0, {})
    import keras

    ctx = {"backend": backend, "keras": keras_fw, "torch": torch_fw, "specs": specs}
    result: dict[str, Any] = {"backend": keras.backend.backend(), "cpu_seconds": {}}
    for name in checks:
        start = time.process_time()
        try:
            result[name] = CHECKS[name](ctx)
        except Exception:  # noqa: BLE001 - reported to the test, which fails with the traceback
            result[name] = {"error": traceback.format_exc()}
        result["cpu_seconds"][name] = round(time.process_time() - start, 2)
    print(MARKER, json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
