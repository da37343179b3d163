"""pytest plugin: time a function with dlbench's device-synchronised adaptive sampler.

```python
def test_matmul(dlbench_benchmark):
    x = torch.randn(512, 512, device="cuda")
    m = dlbench_benchmark(lambda: x @ x, sync=torch.cuda.synchronize)
    assert m.stats.n >= 5
```

The fixture times the first call apart, warms up, then samples windows of iterations closed by
``sync()`` until the 95% CI of the median is within ``target_ci`` (see
:mod:`dlbench.measure.sampler`). Options: ``--dlbench-store URL`` stores every timed test as a
cell of a run (suite ``pytest``), ``--dlbench-json FILE`` writes the run in pytest-benchmark's
JSON format (so ``pytest-benchmark compare`` reads it), ``--dlbench-max-time S`` caps sampling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from dlbench.cell import Cell
from dlbench.measure.sampler import Budget, sample
from dlbench.result import Measurement, Result

_RESULTS_KEY = pytest.StashKey[list[Result]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dlbench", "dlbench benchmarking")
    group.addoption("--dlbench-store", default=None, help="store timed tests in this dlbench store URL")
    group.addoption("--dlbench-json", default=None, help="write timed tests as pytest-benchmark JSON")
    group.addoption("--dlbench-max-time", type=float, default=2.0, help="seconds of sampling per test")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS_KEY] = []


class Benchmark:
    """The fixture's callable: ``benchmark(fn, *args, sync=..., **kwargs) -> Measurement``."""

    def __init__(self, node: pytest.Item, max_time: float, sink: list[Result]) -> None:
        self.node = node
        self.max_time = max_time
        self.sink = sink
        self.measurement: Measurement | None = None

    def __call__(self, fn: Callable[..., Any], *args: Any, sync: Callable[[], None] | None = None,
                 target_ci: float = 0.02, max_time: float | None = None, **kwargs: Any) -> Measurement:
        budget = Budget(max_time=max_time or self.max_time, target_ci=target_ci, warmup_time=0.2,
                        min_window=0.01)
        started = time.time()
        sampling = sample(lambda: fn(*args, **kwargs), sync or (lambda: None), budget)
        m = sampling.measurement("time", "s", sampling.samples, False, first_call_s=sampling.first_call)
        self.measurement = m
        name = self.node.name
        cell = Cell("speed", "pytest", "python", "cpu", {"test": self.node.nodeid}, shown=("test",))
        self.sink.append(Result(cell, "ok", [m], metrics={"first_call_s": sampling.first_call},
                                details={"name": name, "fullname": self.node.nodeid},
                                started_at=started, duration=time.time() - started))
        return m


@pytest.fixture
def dlbench_benchmark(request: pytest.FixtureRequest) -> Benchmark:
    """Time a callable with dlbench's sampler (first call apart, synchronised windows)."""
    cfg = request.config
    return Benchmark(request.node, cfg.getoption("--dlbench-max-time"), cfg.stash[_RESULTS_KEY])


def pytest_sessionfinish(session: pytest.Session) -> None:
    cfg = session.config
    results = cfg.stash.get(_RESULTS_KEY, [])
    if not results:
        return
    # pytest loads this plugin in every session of every project: the store, the environment and
    # the exports load only when a dlbench_benchmark test has run
    from dlbench.measure.environment import fingerprint, git_commit

    env = fingerprint()
    for r in results:
        r.environment = env
    url = cfg.getoption("--dlbench-store")
    if url:
        from dlbench.store.database import Store

        st = Store(url)
        rid = st.start_run("pytest", env, git_commit(), {"source": "pytest plugin"})
        for r in results:
            st.add_result(rid, r)
        st.finish_run(rid)
    path = cfg.getoption("--dlbench-json")
    if path:
        import json

        from dlbench.report.base import RunInfo
        from dlbench.store.pytest_benchmark import export_pytest_benchmark

        info = RunInfo(0, "pytest", results[0].started_at or time.time(), time.time(), git_commit(), env)
        with open(path, "w") as fh:
            json.dump(export_pytest_benchmark(info, results), fh, indent=1)
