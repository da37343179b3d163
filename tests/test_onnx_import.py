"""A user's ONNX model imported into the spec (dlbench.onnx_import): torch modules built by hand
and exported with ``torch.onnx.export`` run on every installed framework with parity against ONNX
Runtime on the original file; a suite names the file as the vision task's model; bad files, bad
shapes, unsupported nodes and paths outside the suite's reach are one line each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from dlbench import spec_numpy  # noqa: E402
from dlbench.errors import DlbenchError, SuiteError  # noqa: E402
from dlbench.framework import BuildOptions, TrainConfig  # noqa: E402
from dlbench.measure.parity import (  # noqa: E402
    example_inputs,
    layer_specs,
    relative_error,
    with_running_statistics,
)
from dlbench.onnx_import import ImportedSpec, import_onnx, run_original  # noqa: E402
from dlbench.plugins import get_plugins  # noqa: E402
from tests.test_parity_layers import FRAMEWORKS, SWEEP_VARIANT  # noqa: E402

IMAGE = {"image": ((8, 8, 1), "float32")}
TOL = 1e-4


class TorchNet(nn.Module):
    """conv, batch norm, strided conv, tanh, linear: the issue's hand-built module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.down = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: Any) -> Any:
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(torch.tanh(self.down(x)), 1))


class WideNet(nn.Module):
    """The other image ops: erf GELU, max/avg pools, a 1x1 branch joined by Concat, a residual
    Add, global average pooling, a Reshape to 2-D, sigmoid, and a trailing Softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 4, 3, padding=1)
        self.b = nn.Conv2d(1, 4, 1, bias=False)
        self.c = nn.Conv2d(8, 8, 3, padding="same", groups=2)
        self.fc1 = nn.Linear(8, 12)
        self.fc2 = nn.Linear(12, 10)

    def forward(self, x: Any) -> Any:
        y = torch.cat([nn.functional.gelu(self.a(x)), self.b(x)], 1)
        y = nn.functional.max_pool2d(y, 2) + nn.functional.avg_pool2d(y, 2)
        y = y + torch.sigmoid(self.c(y))
        y = nn.functional.adaptive_avg_pool2d(y, 1).reshape(-1, 8)
        return torch.softmax(self.fc2(torch.tanh(self.fc1(y))), -1)


class StemNet(nn.Module):
    """torchvision's ResNet stem pool: an overlapping, padded nn.MaxPool2d(3, 2, 1) after a conv
    (no ReLU, so negative border windows show whether the padding is -inf)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x: Any) -> Any:
        return self.fc(torch.flatten(self.pool(self.conv(x)), 1))


class SeqNet(nn.Module):
    """Token ids through Gather (an embedding), LayerNorm, MatMul + Add on a sequence, GELU."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(20, 6)
        self.norm = nn.LayerNorm(6)
        self.ff = nn.Linear(6, 5)
        self.out = nn.Linear(4 * 5, 3)

    def forward(self, ids: Any) -> Any:
        h = nn.functional.gelu(self.ff(self.norm(self.emb(ids))))
        return self.out(torch.flatten(h, 1))


def make(cls: type[nn.Module], seed: int = 0) -> nn.Module:
    """The module with seeded weights and non-trivial batch-norm statistics, in eval mode."""
    torch.manual_seed(seed)
    module = cls()
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):  # non-trivial running statistics and affine
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return module.eval()


def export(cls: type[nn.Module], example: Any, path: Path, name: str = "input", dynamic: bool = True,
           opset: int = 17, **kw: Any) -> Path:
    """``torch.onnx.export`` (the TorchScript exporter: the dynamo one needs onnxscript)."""
    axes = {name: {0: "batch"}} if dynamic else None
    torch.onnx.export(make(cls), example, str(path), opset_version=opset, dynamo=False,
                      input_names=[name], output_names=["out"], dynamic_axes=axes,
                      do_constant_folding=False, **kw)
    return path


def _ops(path: Path) -> set[str]:
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def _images(n: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    return {"image": np.random.default_rng(seed).random((n, 8, 8, 1)).astype(np.float32)}


@pytest.fixture(scope="module")
def torch_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(TorchNet, torch.zeros(2, 1, 8, 8), tmp_path_factory.mktemp("onnx") / "torchnet.onnx")


# -- the conversion ----------------------------------------------------------------------------


def test_torch_module_imports_with_canonical_weights_and_matches_onnx_runtime(torch_net: Path) -> None:
    assert {"Conv", "BatchNormalization", "Tanh", "Gemm", "Flatten"} <= _ops(torch_net)
    spec = import_onnx(torch_net, IMAGE)
    assert isinstance(spec, ImportedSpec)
    assert [n.op for n in spec.nodes] == ["Input", "Conv2D", "BatchNorm", "Activation", "Conv2D",
                                          "Activation", "Flatten", "Dense"]
    down = next(n for n in spec.nodes if n.op == "Conv2D" and n.attrs["strides"] == 2)
    assert down.attrs["padding"] == 1 and down.attrs["kernel_size"] == 3
    weights = spec.init_weights(0)
    assert all(np.array_equal(w, spec.init_weights(7)[k]) for k, w in weights.items())  # the file's
    proto = onnx.load(str(torch_net))
    raw = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    conv_key = next(k for k in weights if k.endswith(".kernel") and weights[k].ndim == 4)
    np.testing.assert_array_equal(weights[conv_key], raw["conv.weight"].transpose(2, 3, 1, 0))
    dense_key = next(k for k in weights if weights[k].ndim == 2)
    assert not np.array_equal(weights[dense_key], raw["fc.weight"].T)  # rows permuted: NCHW -> NHWC
    assert_reference_matches_the_file_and_the_module(spec, TorchNet, _images())


def assert_reference_matches_the_file_and_the_module(spec: ImportedSpec, net: type[nn.Module],
                                                     xs: dict[str, np.ndarray]) -> None:
    """The imported spec's NumPy reference agrees with ONNX Runtime on the original file, and
    ONNX Runtime ran what the torch module that wrote the file computes."""
    expected = run_original(spec, xs)
    assert relative_error(spec_numpy.forward(spec, spec.init_weights(0), xs), expected) <= TOL
    with torch.no_grad():
        ref = make(net)(torch.from_numpy(np.transpose(xs["image"], (0, 3, 1, 2)))).numpy()
    assert relative_error(expected, ref) <= TOL


@pytest.mark.parametrize("fw_name", FRAMEWORKS)
def test_every_framework_runs_the_imported_model_with_parity(fw_name: str, torch_net: Path) -> None:
    spec = import_onnx(torch_net, IMAGE)
    fw = get_plugins().frameworks.get(fw_name)
    variant = SWEEP_VARIANT.get(fw_name, fw.variants[0])
    model = fw.build(spec, spec.init_weights(0), BuildOptions(train=TrainConfig("cross_entropy", "sgd", 0.1),
                                                               variant=variant))
    xs = _images()
    err = relative_error(model.predict(xs), run_original(spec, xs))
    assert err <= TOL, f"{fw_name}: {err:.2e} from ONNX Runtime on the original file"


KERAS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    from dlbench.framework import BuildOptions, TrainConfig
    from dlbench.onnx_import import import_onnx
    from dlbench.plugins import get_plugins
    path, backend, x_file, out_file = sys.argv[1:]
    spec = import_onnx(path, {"image": ((8, 8, 1), "float32")})
    fw = get_plugins().frameworks.get("keras")
    model = fw.build(spec, spec.init_weights(0), BuildOptions(
        train=TrainConfig("cross_entropy", "sgd", 0.1), extra={"backend": backend}))
    np.save(out_file, model.predict({"image": np.load(x_file)}))
""")


@pytest.mark.parametrize("backend", [pytest.param("torch"), pytest.param("tensorflow", marks=pytest.mark.slow),
                                     pytest.param("jax", marks=pytest.mark.slow)])
def test_keras_runs_the_imported_model_with_parity(backend: str, torch_net: Path, tmp_path: Path) -> None:
    if "keras" not in {f.name for f in get_plugins().frameworks if f.availability().installed}:
        pytest.skip("keras is not installed")
    xs = _images()
    np.save(tmp_path / "x.npy", xs["image"])
    env = {**os.environ, "KERAS_BACKEND": backend}
    proc = subprocess.run([sys.executable, "-c", KERAS_SCRIPT, str(torch_net), backend, str(tmp_path / "x.npy"),
                           str(tmp_path / "out.npy")], env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spec = import_onnx(torch_net, IMAGE)
    assert relative_error(np.load(tmp_path / "out.npy"), run_original(spec, xs)) <= TOL


def test_the_other_image_ops_and_a_trailing_softmax(tmp_path: Path) -> None:
    path = export(WideNet, torch.zeros(2, 1, 8, 8), tmp_path / "wide.onnx")
    assert {"Erf", "MaxPool", "AveragePool", "GlobalAveragePool", "Reshape", "Concat", "Add",
            "Sigmoid", "Softmax", "Gemm"} <= _ops(path)
    spec = import_onnx(path, IMAGE)
    assert {"Concat", "MaxPool", "AvgPool", "GlobalAvgPool", "Add", "Dense"} <= spec.ops()
    fns = {n.attrs["fn"] for n in spec.nodes if n.op == "Activation"}
    assert fns == {"gelu", "sigmoid", "tanh"}
    assert any("Softmax was dropped" in note for note in spec.notes)
    xs = _images()
    logits = run_original(spec, xs)
    assert relative_error(spec_numpy.forward(spec, spec.init_weights(0), xs), logits) <= TOL
    probs = onnx_runtime(path, {"input": np.transpose(xs["image"], (0, 3, 1, 2))})
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), atol=1e-5)


@pytest.fixture(scope="module")
def stem_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export(StemNet, torch.zeros(2, 1, 8, 8), tmp_path_factory.mktemp("onnx") / "stem.onnx")


def test_an_overlapping_padded_max_pool_imports_and_matches(stem_net: Path) -> None:
    pools = [n for n in onnx.load(str(stem_net)).graph.node if n.op_type == "MaxPool"]
    assert len(pools) == 1
    spec = import_onnx(stem_net, IMAGE)
    pool = next(n for n in spec.nodes if n.op == "MaxPool")
    assert dict(pool.attrs) == {"pool_size": 3, "strides": 2, "padding": 1}
    assert spec.shapes()[pool.name] == (4, 4, 4)
    xs = {"image": np.random.default_rng(2).normal(size=(5, 8, 8, 1)).astype(np.float32)}
    assert_reference_matches_the_file_and_the_module(spec, StemNet, xs)


@pytest.mark.parametrize("fw_name", FRAMEWORKS)
def test_every_framework_runs_the_imported_padded_max_pool(fw_name: str, stem_net: Path) -> None:
    spec = import_onnx(stem_net, IMAGE)
    fw = get_plugins().frameworks.get(fw_name)
    model = fw.build(spec, spec.init_weights(0), BuildOptions(train=TrainConfig("cross_entropy", "sgd", 0.1),
                                                               variant=SWEEP_VARIANT.get(fw_name, fw.variants[0])))
    xs = {"image": np.random.default_rng(3).normal(size=(5, 8, 8, 1)).astype(np.float32)}
    err = relative_error(model.predict(xs), run_original(spec, xs))
    assert err <= TOL, f"{fw_name}: {err:.2e} from ONNX Runtime on the original file"


def test_an_asymmetrically_padded_max_pool_is_one_line(stem_net: Path, tmp_path: Path) -> None:
    model = onnx.load(str(stem_net))
    pool = next(n for n in model.graph.node if n.op_type == "MaxPool")
    pads = next(a for a in pool.attribute if a.name == "pads")
    del pads.ints[:]
    pads.ints.extend([0, 0, 1, 1])  # after only: the same output size, not the spec's padding
    bad = tmp_path / "asym.onnx"
    bad.write_bytes(model.SerializeToString())
    with pytest.raises(DlbenchError) as exc:
        import_onnx(bad, IMAGE)
    _one_line(exc, "1 ONNX node(s)", "MaxPool (", "pads=[0, 0, 1, 1]", "the same padding on every side")


def test_sequence_ops_gather_layer_norm_matmul_add(tmp_path: Path) -> None:
    path = export(SeqNet, torch.zeros(2, 4, dtype=torch.int64), tmp_path / "seq.onnx", name="ids")
    assert {"Gather", "LayerNormalization", "MatMul", "Add", "Erf"} <= _ops(path)
    spec = import_onnx(path, {"ids": ((4,), "int32")})
    assert [n.op for n in spec.nodes] == ["Input", "Embedding", "LayerNorm", "Dense", "Activation",
                                          "Flatten", "Dense"]
    ids = {"ids": np.random.default_rng(1).integers(0, 20, (6, 4)).astype(np.int32)}
    assert relative_error(spec_numpy.forward(spec, spec.init_weights(0), ids), run_original(spec, ids)) <= TOL


def test_a_dlbench_export_imports_back_to_the_same_model(tmp_path: Path) -> None:
    """The exporter's channels-last graph (Transpose around the convolutions, MatMul + Add)."""
    from dlbench.onnx_export import to_onnx_bytes

    task = get_plugins().tasks.get("vision")
    spec = task.model_spec({"model": "cnn", "dataset": "digits"})
    weights = spec.init_weights(3)
    path = tmp_path / "cnn.onnx"
    path.write_bytes(to_onnx_bytes(spec, weights))
    back = import_onnx(path, IMAGE)
    # the same layers; fused activations come back as Activation nodes, the Dropout is gone
    assert [n.op for n in back.nodes if n.op != "Activation"] == [n.op for n in spec.nodes if n.op != "Dropout"]
    assert sum(n.op == "Activation" for n in back.nodes) == sum(bool(n.attrs.get("activation"))
                                                                for n in spec.nodes)
    xs = _images()
    expected = spec_numpy.forward(spec, weights, xs)
    assert relative_error(spec_numpy.forward(back, back.init_weights(0), xs), expected) <= TOL
    assert relative_error(run_original(back, xs), expected) <= TOL


IMPORTABLE = {"Input", "Dense", "Conv1D", "Conv2D", "MaxPool", "AvgPool", "GlobalAvgPool", "Flatten",
              "Dropout", "Embedding", "PositionEmbedding", "LayerNorm", "Activation", "Add", "Concat",
              "BatchNorm"}
"""Spec ops whose ONNX export (dlbench.onnx_export) imports back; attention, Dot, DotInteraction,
EmbeddingBag and masked pooling do not (their exports use ops the import leaves out)."""


@pytest.mark.parametrize("name", sorted(layer_specs()))
def test_every_layer_spec_export_imports_back_or_is_refused_in_one_line(name: str, tmp_path: Path) -> None:
    from dlbench.onnx_export import to_onnx_bytes

    spec = layer_specs()[name].without_dropout()
    weights = with_running_statistics(spec, spec.init_weights(1), 2)
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(to_onnx_bytes(spec, weights))
    inputs = {k: (tuple(n.attrs["shape"]), n.attrs["dtype"]) for k, n in spec.inputs.items()}
    masked = any(n.op == "GlobalAvgPool" and len(n.inputs) > 1 for n in spec.nodes)
    if not spec.ops() <= IMPORTABLE or masked:
        with pytest.raises(DlbenchError) as exc:
            import_onnx(path, inputs)
        _one_line(exc, "dlbench cannot import", "export the model without the others")
        return
    back = import_onnx(path, inputs)
    x, _ = example_inputs(spec, 4, 0)
    expected = spec_numpy.forward(spec, weights, x)
    assert relative_error(spec_numpy.forward(back, back.init_weights(0), x), expected) <= TOL
    assert relative_error(run_original(back, x), expected) <= TOL


def onnx_runtime(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


# -- bad input: one line each ------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo[BaseException], *words: str) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and "Traceback" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_a_corrupt_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "noise.onnx"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(DlbenchError) as exc:
        import_onnx(bad, IMAGE)
    _one_line(exc, str(bad), "export it again")


def test_a_truncated_file_is_one_line(torch_net: Path, tmp_path: Path) -> None:
    data = torch_net.read_bytes()
    for cut in (len(data) // 2, len(data) - 7, 40):
        bad = tmp_path / f"cut{cut}.onnx"
        bad.write_bytes(data[:cut])
        with pytest.raises(DlbenchError) as exc:
            import_onnx(bad, IMAGE)
        _one_line(exc, str(bad), "export it again")


def test_an_empty_or_missing_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(DlbenchError) as exc:
        import_onnx(tmp_path / "empty.onnx", IMAGE)
    _one_line(exc, "no graph nodes")
    with pytest.raises(DlbenchError) as exc:
        import_onnx(tmp_path / "absent.onnx", IMAGE)
    _one_line(exc, "cannot read")


def test_an_opset_too_new_is_one_line(torch_net: Path, tmp_path: Path) -> None:
    model = onnx.load(str(torch_net))
    newest = onnx.defs.onnx_opset_version()
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = newest + 5
    bad = tmp_path / "future.onnx"
    bad.write_bytes(model.SerializeToString())
    with pytest.raises(DlbenchError) as exc:
        import_onnx(bad, IMAGE)
    _one_line(exc, f"opset {newest + 5} is newer", f"up to {newest}", "opset_version")


def test_shapes_that_do_not_match_the_task_are_one_line(tmp_path: Path) -> None:
    big = export(TorchNet, torch.zeros(1, 1, 8, 8), tmp_path / "fixed.onnx", dynamic=False)
    with pytest.raises(DlbenchError) as exc:  # a fixed batch axis
        import_onnx(big, IMAGE)
    _one_line(exc, "fixed batch of 1", "dynamic_axes")
    with pytest.raises(DlbenchError) as exc:  # 8x8 grey images for a task feeding 3 channels
        import_onnx(export(TorchNet, torch.zeros(2, 1, 8, 8), tmp_path / "m.onnx"),
                    {"image": ((8, 8, 3), "float32")})
    _one_line(exc, "(N, 3, 8, 8)", "channels")
    dyn = tmp_path / "dyn.onnx"
    torch.onnx.export(make(WideNet), torch.zeros(2, 1, 8, 8), str(dyn), opset_version=17, dynamo=False,
                      input_names=["input"], dynamic_axes={"input": {0: "batch", 2: "side", 3: "side"}})
    spec = import_onnx(dyn, IMAGE)  # a dynamic grid takes the task's size, with a note
    assert any("dynamic axis 'side'" in n and "8" in n for n in spec.notes)
    with pytest.raises(DlbenchError) as exc:  # ... but one symbol cannot be two sizes
        import_onnx(dyn, {"image": ((8, 10, 1), "float32")})
    _one_line(exc, "dynamic axis 'side' would be 8 and 10")
    with pytest.raises(DlbenchError) as exc:  # ids where the task feeds images
        import_onnx(export(SeqNet, torch.zeros(2, 4, dtype=torch.int64), tmp_path / "s.onnx", name="ids"),
                    IMAGE)
    _one_line(exc, "int64", "float32")


def test_unsupported_ops_are_listed_with_their_nodes_in_one_line(tmp_path: Path) -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1, dilation=1)
            self.fc = nn.Linear(4 * 64, 10)

        def forward(self, x: Any) -> Any:
            y = nn.functional.leaky_relu(self.conv(x))
            return self.fc(torch.flatten(nn.functional.softplus(y), 1))

    path = export(Odd, torch.zeros(2, 1, 8, 8), tmp_path / "odd.onnx")
    with pytest.raises(DlbenchError) as exc:
        import_onnx(path, IMAGE)
    msg = _one_line(exc, "2 ONNX node(s) dlbench cannot import", "LeakyRelu (", "Softplus (", "Gemm")
    names = [n.name for n in onnx.load(str(path)).graph.node if n.op_type in ("LeakyRelu", "Softplus")]
    assert all(name in msg for name in names), msg


def test_an_unsupported_form_of_a_supported_op_says_why(tmp_path: Path) -> None:
    class Dilated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=2, dilation=2)
            self.fc = nn.Linear(4 * 64, 10)

        def forward(self, x: Any) -> Any:
            return self.fc(torch.flatten(self.conv(x), 1))

    with pytest.raises(DlbenchError) as exc:
        import_onnx(export(Dilated, torch.zeros(2, 1, 8, 8), tmp_path / "d.onnx"), IMAGE)
    _one_line(exc, "1 ONNX node(s)", "Conv (", "dilated convolutions")


# -- a suite names the file ------------------------------------------------------------------------


def _suite(folder: Path, model_path: str, scenario: str = "parity", frameworks: str = "[torch]") -> Path:
    path = folder / "mine.yaml"
    path.write_text(textwrap.dedent(f"""
        name: mine
        matrix:
          - scenario: {scenario}
            frameworks: {frameworks}
            tasks: {{vision: {{dataset: digits, model: {{onnx: {json.dumps(model_path)}}}}}}}
    """))
    return path


def test_a_suite_names_the_onnx_file_relative_to_itself(torch_net: Path, tmp_path: Path) -> None:
    from dlbench.run.suite import load

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "net.onnx").write_bytes(torch_net.read_bytes())
    suite = load(str(_suite(tmp_path, "models/net.onnx")), get_plugins())
    (cell,) = suite.cells(get_plugins())
    assert cell.params["model"] == {"onnx": str((tmp_path / "models" / "net.onnx").resolve())}


@pytest.mark.parametrize("fw_name", ["torch", "onnxruntime"])
def test_a_parity_cell_compares_with_onnx_runtime_on_the_original_file(fw_name: str, torch_net: Path,
                                                                       tmp_path: Path) -> None:
    if fw_name not in {f.name for f in get_plugins().frameworks if f.availability().installed}:
        pytest.skip(f"{fw_name} is not installed")
    from tests.robustness_helpers import run_cell

    r = run_cell("vision", fw_name, {"model": {"onnx": str(torch_net)}, "reference": "numpy"}, tmp_path,
                 scenario="parity")
    assert r.status == "ok", r.error
    rows = {row["check"]: row for row in r.details["parity"]}
    assert rows["onnx_file"]["passed"] and rows["onnx_file"]["reference"] == f"onnxruntime:{torch_net}"
    assert rows["outputs"]["passed"]


def test_a_file_outside_what_the_suite_may_read_is_one_line(torch_net: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from dlbench.run.suite import load

    monkeypatch.setenv("DLBENCH_DATA_DIR", str(tmp_path / "data"))
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    outside = tmp_path / "elsewhere.onnx"
    outside.write_bytes(torch_net.read_bytes())
    (suite_dir / "link.onnx").symlink_to(outside)  # a link out counts as outside
    for given in ("../elsewhere.onnx", str(outside), "link.onnx"):
        with pytest.raises(SuiteError) as exc:
            load(str(_suite(suite_dir, given)), get_plugins())
        _one_line(exc, "outside what the suite may read", "move the file there")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "net.onnx").write_bytes(torch_net.read_bytes())  # the data dir is allowed
    assert load(str(_suite(suite_dir, str(tmp_path / "data" / "net.onnx"))), get_plugins()).cells(get_plugins())
    with pytest.raises(SuiteError) as exc:
        load(str(_suite(suite_dir, "missing.onnx")), get_plugins())
    _one_line(exc, "does not exist")


def test_a_suite_with_a_bad_model_file_fails_at_load_in_one_line(tmp_path: Path) -> None:
    from dlbench.run.suite import load

    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(SuiteError) as exc:
        load(str(_suite(tmp_path, "bad.onnx")), get_plugins())
    _one_line(exc, "tasks.vision", "bad.onnx")
    for bad_value in ("{onnx: 3}", "{tflite: m.tflite}", "{onnx: a.onnx, other: 1}"):
        path = tmp_path / "v.yaml"
        path.write_text(f"name: v\nmatrix:\n  - scenario: parity\n    frameworks: [torch]\n"
                        f"    tasks: {{vision: {{model: {bad_value}}}}}\n")
        with pytest.raises(SuiteError) as exc:
            load(str(path), get_plugins())
        _one_line(exc, "{onnx: path/to/model.onnx}")


def test_the_cli_shows_a_bad_model_file_as_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "dlbench", "run", str(_suite(tmp_path, "../x/../../bad.onnx")),
                           "--dry-run"], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 2, out
    assert "Traceback" not in out and "outside what the suite may read" in out


def test_without_the_onnx_package_the_import_is_one_line(torch_net: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(DlbenchError) as exc:
        import_onnx(torch_net, {"image": ((8, 8, 2), "float32")})
    _one_line(exc, "needs the onnx package", "pip install")


def test_the_onnx_file_check_fails_when_the_framework_differs_from_the_file(
        torch_net: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dlbench.scenarios import parity as parity_scenario
    from tests.robustness_helpers import run_cell

    def shifted(spec: ImportedSpec, xs: dict[str, np.ndarray]) -> np.ndarray:
        return run_original(spec, xs) * 1.01  # a file that computes 1% more than the import

    monkeypatch.setattr(parity_scenario, "run_original", shifted)
    r = run_cell("vision", "torch", {"model": {"onnx": str(torch_net)}, "reference": "numpy"}, tmp_path,
                 scenario="parity")
    assert r.status == "failed"
    rows = {row["check"]: row for row in r.details["parity"]}
    assert rows["onnx_file"]["passed"] is False and rows["outputs"]["passed"]
    assert r.error and "onnx_file rel. error" in r.error and f"(against onnxruntime:{torch_net})" in r.error


@pytest.mark.parametrize("opset", [13, 18, 20])
def test_other_opsets_import_with_parity(opset: int, tmp_path: Path) -> None:
    """Opset 18 gives ReduceMean its axes as an input, 20 writes torch's GELU as one Gelu node."""
    wide = export(WideNet, torch.zeros(2, 1, 8, 8), tmp_path / "wide.onnx", opset=opset)
    assert ("Gelu" in _ops(wide)) == (opset >= 20)
    spec = import_onnx(wide, IMAGE)
    xs = _images()
    assert relative_error(spec_numpy.forward(spec, spec.init_weights(0), xs), run_original(spec, xs)) <= TOL
    seq = export(SeqNet, torch.zeros(2, 4, dtype=torch.int64), tmp_path / "seq.onnx", name="ids", opset=opset)
    if opset < 17:  # no LayerNormalization before 17: torch writes its arithmetic, which is refused
        with pytest.raises(DlbenchError) as exc:
            import_onnx(seq, {"ids": ((4,), "int32")})
        msg = _one_line(exc, "ReduceMean (", "Sqrt (", "Pow (")
        assert "Flatten (" not in msg and "Gemm (" not in msg, msg  # nodes after them are not blamed
        return
    spec = import_onnx(seq, {"ids": ((4,), "int32")})
    ids = {"ids": np.random.default_rng(0).integers(0, 20, (3, 4)).astype(np.int32)}
    assert relative_error(spec_numpy.forward(spec, spec.init_weights(0), ids), run_original(spec, ids)) <= TOL
