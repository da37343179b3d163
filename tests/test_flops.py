"""FLOP-based efficiency of speed figures (dlbench.measure.flops): the peak table, the training
convention, MFU against a GPU's datasheet peak and the ratio to this machine's measured matmul on
a CPU, with planted throughputs and peaks (no timing is asserted)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from dlbench.cell import Cell
from dlbench.measure import flops
from dlbench.result import Measurement, Result
from dlbench.scenarios import speed
from dlbench.scenarios.speed import SpeedScenario, record_efficiency


@pytest.mark.parametrize(("name", "precision", "tflops"), [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
    ("NVIDIA H100 PCIe", "bf16", 756.0),
    ("NVIDIA H100 NVL", "fp32", 60.0),
    ("NVIDIA H200", "bf16", 989.4),
    ("NVIDIA A100-SXM4-80GB", "fp32", 19.5),
    ("NVIDIA L40S", "bf16", 362.05),
    ("NVIDIA L4", "bf16", 121.0),
])
def test_gpu_peaks_by_device_name_and_precision(name, precision, tflops):
    peak, source = flops.gpu_peak(name, precision)
    assert peak == pytest.approx(tflops * 1e12) and "datasheet" in source


def test_unknown_devices_and_precisions_have_no_peak():
    assert flops.gpu_peak("Some Future GPU", "fp32") is None
    assert flops.gpu_peak("NVIDIA T4", "bf16") is None  # the table holds no bf16 for a T4


def test_a_training_step_counts_three_forward_passes():
    assert flops.step_flops(1e6, "infer") == 1e6 and flops.step_flops(1e6, "train") == 3e6


def test_matmul_peak_is_a_positive_flop_rate():
    assert flops.matmul_peak(1, n=64, max_time=0.01) > 0


def _ctx(device: str, samples_per_s: float, precision: str = "fp32") -> types.SimpleNamespace:
    cell = Cell("speed", "vision", "torch", device, {"batch_size": 8, "precision": precision})
    r = Result(cell, "ok", [Measurement("throughput", "samples/s", list(np.full(40, samples_per_s)))])
    return types.SimpleNamespace(result=r, cell=cell, params=cell.params, run_cache=None,
                                 once_per_run=lambda what, compute: (compute(), None),
                                 framework=types.SimpleNamespace(name="torch", params={}, version=lambda: "1"))


def test_a_runs_later_cells_reuse_its_first_cells_probes(monkeypatch, tmp_path):
    from dlbench.run.context import CellContext

    calls: list[int] = []
    monkeypatch.setattr(speed, "matmul_peak", lambda t: calls.append(t) or 50e9)
    monkeypatch.setattr(speed, "resolve_threads", lambda requested: 2)
    own: list[str] = []
    model = types.SimpleNamespace(matmul_flops=lambda: own.append("gemm") or 80e9)
    fw = types.SimpleNamespace(name="torch", params={}, version=lambda: "1")
    sources = []
    for bs in (1, 64):  # two speed cells of one run: one cache
        cell = Cell("speed", "vision", "torch", "cpu", {"batch_size": bs})
        r = Result(cell, "ok", [Measurement("throughput", "samples/s", list(np.full(40, 100.0)))])
        ctx = CellContext(cell, None, fw, None, tmp_path / "art", r, run_cache=tmp_path / "cache")  # type: ignore[arg-type]
        record_efficiency(ctx, 1e8, "infer", model)
        assert r.metrics["peak_flops"] == 80e9
        sources.append(r.details["efficiency"]["source"])
    assert calls == [2, 1] and own == ["gemm"]  # measured by the first cell only
    assert "once per run" not in sources[0] and f"first by {Cell('speed', 'vision', 'torch', 'cpu', {'batch_size': 1}).key}" in sources[1]
    ctx = CellContext(cell, None, fw, None, tmp_path / "art", r, run_cache=None)  # type: ignore[arg-type]
    record_efficiency(ctx, 1e8, "infer", model)  # no run cache: measured again
    assert calls == [2, 1, 2, 1] and own == ["gemm", "gemm"]


def test_mfu_against_the_gpus_datasheet_peak(monkeypatch):
    monkeypatch.setattr(speed, "gpus", lambda: [{"name": "NVIDIA H100 80GB HBM3"}])
    ctx = _ctx("cuda", 1000.0, "bf16")
    record_efficiency(ctx, 2e9, "train")  # 1000 samples/s x 6 GFLOP = 6 TFLOP/s
    m = ctx.result.metrics
    assert m["achieved_flops"] == pytest.approx(6e12)
    assert m["flops_efficiency"] == pytest.approx(6e12 / 989.4e12)
    assert ctx.result.details["efficiency"]["basis"] == "mfu"
    text = SpeedScenario().columns([ctx.result])
    shown = {c.title: c.figure(ctx.result) for c in text}
    assert shown["Efficiency"].display == "0.6% MFU" and shown["GFLOP/s"].value == pytest.approx(6000.0)


def test_an_unknown_gpu_says_mfu_was_not_computed(monkeypatch):
    monkeypatch.setattr(speed, "gpus", lambda: [{"name": "Mystery GPU"}])
    ctx = _ctx("cuda", 1000.0)
    record_efficiency(ctx, 1e9, "infer")
    assert "flops_efficiency" not in ctx.result.metrics and ctx.result.metrics["achieved_flops"] == 1e12
    assert "MFU not computed" in ctx.result.details["efficiency_note"]


def test_cpu_efficiency_is_the_share_of_the_machines_own_matmul(monkeypatch):
    measured = {1: 50e9, 2: 80e9}
    monkeypatch.setattr(speed, "matmul_peak", lambda t: measured[t])
    monkeypatch.setattr(speed, "resolve_threads", lambda requested: 2)  # the cell's two threads
    ctx = _ctx("cpu", 200.0)
    record_efficiency(ctx, 1e8, "infer")  # 200 x 0.1 GFLOP = 20 GFLOP/s of 80
    assert ctx.result.metrics["flops_efficiency"] == pytest.approx(0.25)
    assert ctx.result.metrics["peak_flops"] == 80e9
    measured[2] = 10e9  # a loaded machine: two threads slower than one; one thread bounds it
    ctx = _ctx("cpu", 200.0)
    record_efficiency(ctx, 1e8, "infer")
    assert ctx.result.metrics["peak_flops"] == 50e9 and "2 threads 10 GFLOP/s" in ctx.result.details["efficiency"]["source"]


def test_the_frameworks_own_gemm_at_the_cells_precision_joins_the_roofline(monkeypatch):
    monkeypatch.setattr(speed, "matmul_peak", lambda t: 50e9)
    monkeypatch.setattr(speed, "resolve_threads", lambda requested: 2)
    model = types.SimpleNamespace(matmul_flops=lambda: 400e9)  # a bf16 oneDNN GEMM, say
    ctx = _ctx("cpu", 1000.0, "bf16")
    record_efficiency(ctx, 1e8, "infer", model)  # 100 GFLOP/s: 200% of NumPy's, 25% of bf16's
    assert ctx.result.metrics["peak_flops"] == 400e9
    assert ctx.result.metrics["flops_efficiency"] == pytest.approx(0.25)
    assert "torch bf16 GEMM" in ctx.result.details["efficiency"]["source"]


def test_no_efficiency_above_every_probe(monkeypatch):
    monkeypatch.setattr(speed, "matmul_peak", lambda t: 50e9)
    monkeypatch.setattr(speed, "resolve_threads", lambda requested: 2)
    ctx = _ctx("cpu", 1000.0)
    record_efficiency(ctx, 1e8, "infer", types.SimpleNamespace(matmul_flops=lambda: None))
    assert "flops_efficiency" not in ctx.result.metrics  # 100 GFLOP/s > every 50 GFLOP/s probe
    assert ctx.result.metrics["achieved_flops"] == pytest.approx(100e9)
    assert "exceeds every matmul probe" in ctx.result.details["efficiency_note"]


def test_gemm_rate_is_a_positive_flop_rate():
    a = np.ones((32, 32), np.float32)
    assert flops.gemm_rate(lambda: a @ a, 32, max_time=0.01) > 0


@pytest.mark.parametrize("fw_name", ["torch", "tensorflow", "jax", "onnxruntime"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_each_framework_measures_its_own_gemm_at_its_precision(fw_name, precision):
    from dlbench.framework import BuildOptions
    from dlbench.plugins import get_plugins

    fw = get_plugins().frameworks.get(fw_name)
    if not fw.availability().installed:
        pytest.skip(f"{fw_name} is not installed")
    if precision not in fw.precisions:
        pytest.skip(f"{fw_name} has no {precision}")
    spec = get_plugins().tasks.get("vision").model_spec({"dataset": "digits", "model": "mlp"})
    model = fw.build(spec, spec.init_weights(0), BuildOptions(variant=fw.variants[0], precision=precision))
    rate = model.matmul_flops(n=64)
    if fw_name == "onnxruntime":
        assert rate is None  # runtimes offer none: NumPy's GEMM is their roofline
    else:
        assert rate is not None and rate > 0
