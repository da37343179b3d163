"""The inference board (dlbench/report/inference.py): one row per framework or runtime
configuration of the same model, batch-1 latency and throughput side by side, ranked by the
largest batch, with the parity and accuracy each configuration got; only where a runtime ran."""

from __future__ import annotations

import numpy as np
import pytest

from dlbench.cell import Cell
from dlbench.report.base import RunData, RunInfo
from dlbench.report.common import DASH, installed_scenarios
from dlbench.report.inference import boards, inference_boards
from dlbench.report.markdown import MarkdownReporter
from dlbench.result import Measurement, ModelInfo, Result

SCENARIOS = installed_scenarios()


def _speed(fw: str, variant: str, bs: int, tput: float, trains: bool = True, model: str = "cnn",
           precision: str = "fp32", status: str = "ok") -> Result:
    cell = Cell("speed", "vision", fw, "cpu", {"mode": "infer", "batch_size": bs, "variant": variant,
                                               "precision": precision, "model": model, "seed": 0})
    info = ModelInfo(f"digest-{model}", 10, 100, "init")
    if status != "ok":
        return Result(cell, status, error="no int8 kernel for Conv", model=info)
    rng = np.random.default_rng(bs)
    ms = [Measurement("throughput", "samples/s", list(rng.normal(tput, tput * 0.01, 30)))]
    if bs == 1:
        ms.append(Measurement("latency", "ms", list(rng.normal(1e3 / tput, 1e1 / tput, 50)),
                              higher_is_better=False))
    return Result(cell, "ok", ms, model=info,
                  environment={"framework_trains": trains, "framework_kind": "neural"})


def _parity(fw: str, variant: str, err: float) -> Result:
    rows = [{"check": "outputs", "rel_error": err, "tolerance": 1e-4, "passed": err <= 1e-4,
             "reference": "numpy"}]
    cell = Cell("parity", "vision", fw, "cpu", {"variant": variant, "precision": "fp32",
                                                "model": "cnn", "seed": 0, "batch_size": 8})
    return Result(cell, "ok", details={"parity": rows}, metrics={"rel_error_outputs": err})


def _accuracy(fw: str, variant: str, acc: float) -> Result:
    cell = Cell("accuracy", "vision", fw, "cpu", {"variant": variant, "precision": "fp32",
                                                  "model": "cnn", "seed": 0, "epochs": 5,
                                                  "batch_size": 32})
    return Result(cell, "ok", metrics={"accuracy": acc, "macro_f1": acc})


def _results() -> list[Result]:
    out = []
    for fw, variant, tput, trains in (("torch", "eager", 1000.0, True), ("torch", "compiled", 2000.0, True),
                                      ("onnxruntime", "all", 5000.0, False),
                                      ("openvino", "latency", 3000.0, False)):
        out += [_speed(fw, variant, 1, tput / 10, trains), _speed(fw, variant, 64, tput, trains)]
    out.append(_speed("onnxruntime", "all", 64, 0.0, False, precision="int8", status="skipped"))
    out += [_parity("onnxruntime", "all", 3e-7), _parity("openvino", "latency", 2e-5),
            _accuracy("torch", "eager", 0.97), _accuracy("onnxruntime", "all", 0.97)]
    return out


def test_one_row_per_configuration_ranked_by_the_largest_batch() -> None:
    (table,) = inference_boards("vision", _results(), SCENARIOS)
    frameworks = [r[1].text for r in table.rows]
    assert frameworks[:4] == ["onnxruntime[all,fp32]", "openvino[latency,fp32]",
                              "torch[compiled,fp32]", "torch[eager,fp32]"]
    assert [r[0].text for r in table.rows[:4]] == ["1", "2", "3", "4"]
    assert table.rows[4][-1].text == "skipped" and table.rows[4][0].text == ""
    tput = table.column("Throughput (samples/s) [95% CI], batch 64")
    assert float(tput[0].text.split()[0].replace(",", "")) == pytest.approx(5000, rel=0.02)
    assert "best" in tput[0].cls and "best" not in tput[1].cls
    assert table.column("vs best")[3].text == "0.20×"
    latency = table.column("Latency p50 / p99 (ms), batch 1")
    assert latency[0].text.count("/") == 1  # p50 / p99
    assert float(latency[0].text.split("/")[0]) == pytest.approx(2.0, rel=0.05)  # 1000 / 500 samples/s


def test_other_scenarios_of_the_same_configuration_sit_beside_it() -> None:
    (table,) = inference_boards("vision", _results(), SCENARIOS)
    assert "Parity" in table.columns and "Accuracy" in table.columns
    by_fw = {r[1].text: r for r in table.rows}
    parity, accuracy = table.columns.index("Parity"), table.columns.index("Accuracy")
    assert float(by_fw["onnxruntime[all,fp32]"][parity].text) == pytest.approx(3e-7)
    assert by_fw["onnxruntime[all,fp32]"][parity].cls == "pass"
    assert by_fw["openvino[latency,fp32]"][parity].cls == "pass"
    assert by_fw["torch[eager,fp32]"][parity].text == DASH  # no parity cell ran torch here
    assert by_fw["torch[eager,fp32]"][accuracy].text.startswith("0.97")
    assert by_fw["torch[compiled,fp32]"][accuracy].text == DASH  # compiled was never trained


def test_no_board_without_a_runtime_and_one_per_model() -> None:
    trained_only = [r for r in _results() if r.environment.get("framework_trains") is not False]
    assert inference_boards("vision", trained_only, SCENARIOS) == []
    two = _results() + [_speed("onnxruntime", "all", 64, 900.0, False, model="resnet"),
                        _speed("torch", "eager", 64, 300.0, model="resnet")]
    tables = inference_boards("vision", two, SCENARIOS)
    assert [t.title for t in tables] == ["Inference — vision — model=cnn", "Inference — vision — model=resnet"]
    assert len(tables[1].rows) == 2 and "Latency p50 / p99 (ms), batch 1" not in tables[1].columns


def test_the_board_leads_the_task_in_the_reports() -> None:
    results = _results()
    assert next(iter(boards(results, SCENARIOS)["vision"])).title == "Inference — vision"
    text = MarkdownReporter().render(RunData(RunInfo(1, "inference", 0.0), results, scenarios=SCENARIOS))
    assert text.index("Inference — vision") < text.index("Speed — vision")
