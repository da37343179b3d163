"""A store of two runs of N synthetic speed cells each (default 2 x 2,000), to time ``dlbench
compare`` and ``dlbench report`` at scale (issue 15):

    python scripts/scale_store.py /tmp/scale.db --cells 2000
    time dlbench compare 1 2 --store sqlite:////tmp/scale.db --markdown /tmp/cmp.md
    time dlbench report 2 --store sqlite:////tmp/scale.db --output-dir /tmp/scale-reports

Each cell holds 60 raw samples; the head run is 3% slower on every tenth cell (a planted change).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from dlbench.cell import Cell
from dlbench.result import Measurement, Result
from dlbench.store.database import Store


def results(n: int, seed: int, slower: float) -> list[Result]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        cell = Cell("speed", "vision", f"fw{i % 5}", "cpu", {"batch_size": 1 + i // 5, "mode": "infer"},
                    shown=("batch_size",))
        scale = 1.0 + (slower if i % 10 == 0 else 0.0)
        step = rng.normal(1e-3 * scale, 2e-5, 60).clip(1e-4)
        out.append(Result(cell, "ok", [Measurement("throughput", "samples/s", list(cell.params["batch_size"] / step)),
                                       Measurement("latency", "s", list(step))]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("db", type=Path)
    ap.add_argument("--cells", type=int, default=2000)
    a = ap.parse_args()
    st = Store(f"sqlite:///{a.db}")
    for run, slower in ((0, 0.0), (1, 0.03)):
        rid = st.start_run("scale", {}, None, {})
        for r in results(a.cells, run, slower):
            st.add_result(rid, r)
        st.finish_run(rid)
        print(f"run {rid}: {a.cells} cells")


if __name__ == "__main__":
    main()
