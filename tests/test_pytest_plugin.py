"""The pytest plugin's fixture times a user's function and exports pytest-benchmark JSON."""

from __future__ import annotations

import json
import subprocess
import sys

pytest_plugins = ["pytester"]


def test_fixture_times_and_exports(pytester):
    pytester.makepyfile("""
        import numpy as np

        calls = {"sync": 0}

        def sync():
            calls["sync"] += 1

        def test_dot(dlbench_benchmark):
            a = np.ones((64, 64))
            m = dlbench_benchmark(lambda: a @ a, sync=sync, max_time=0.3)
            assert m.unit == "s" and m.stats.n >= 3 and m.stats.median > 0
            assert calls["sync"] >= m.stats.n  # every window ended with a synchronisation
    """)
    out = pytester.path / "bench.json"
    db = pytester.path / "r.db"
    res = pytester.runpytest_subprocess(f"--dlbench-json={out}",
                             f"--dlbench-store=sqlite:///{db}")
    res.assert_outcomes(passed=1)
    doc = json.loads(out.read_text())
    (bench,) = doc["benchmarks"]
    assert bench["name"] and bench["stats"]["rounds"] >= 3 and bench["stats"]["data"]
    # pytest-benchmark's own CLI reads the file
    cmp = subprocess.run([sys.executable, "-m", "pytest_benchmark.cli", "compare", str(out)],
                         capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stderr
    from dlbench.store.database import Store

    st = Store(f"sqlite:///{db}")
    (r,) = st.results(st.latest_run_id("pytest"))
    assert r.measurement("time").stats.n == bench["stats"]["rounds"]
