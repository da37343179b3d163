from __future__ import annotations

import math

from dlbench.cell import Cell
from dlbench.result import Measurement, ModelInfo, Result


def test_key_is_readable_and_ordered():
    c = Cell("speed", "vision", "torch", "cpu",
             {"variant": "compiled", "precision": "fp32", "batch_size": 256, "mode": "train", "seed": 0},
             shown=("batch_size", "mode"))
    assert c.key == "speed/vision/torch[cpu,compiled,fp32,bs=256,train]"
    assert c.with_params(batch_size=8).key == "speed/vision/torch[cpu,compiled,fp32,bs=8,train]"
    assert len(c.id) == 12 and c.id != c.with_params(batch_size=8).id


def test_result_json_round_trip_keeps_samples_and_nan():
    c = Cell("accuracy", "vision", "torch", params={"epochs": 2})
    r = Result(c, "ok", [Measurement("throughput", "samples/s", [1.0, 2.0, 3.0])],
               {"accuracy": 0.9, "time_to_target_s": float("nan")},
               {"learning_curve": [{"epoch": 1, "accuracy": 0.5}]}, {"parity": []},
               ModelInfo("abc", 10, 20, "d0", "d1", "weights/x.npz"), {"python": "3.11"})
    back = Result.from_json(r.to_json())
    assert back.cell == c and back.measurements[0].samples == [1.0, 2.0, 3.0]
    assert back.measurements[0].stats.median == 2.0
    assert math.isnan(back.metrics["time_to_target_s"]) and back.model == r.model
    assert back.series == r.series
