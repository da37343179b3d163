"""``repeats: k``: validation, interleaved fresh processes, one stored row per process, exact
``--resume``, and the merge of process repeats (dlbench.measure.replicates) on synthetic Results."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from dlbench.cell import Cell
from dlbench.errors import SuiteError
from dlbench.measure.replicates import combine_repeats, combine_results
from dlbench.plugins import PluginConfig, get_plugins
from dlbench.result import Measurement, Result
from dlbench.run import suite as suites
from dlbench.run.launch.base import Job, LaunchConfig, Launcher
from dlbench.run.session import RunOptions, Session, describe
from dlbench.store.database import Store

PLUGINS = Path(__file__).resolve().parent / "fixtures" / "gate_plugins"
BUDGET = "{max_time: 0.4, warmup_time: 0.02, min_samples: 6, max_samples: 12, min_window: 0.02}"
SUITE = f"""
name: reps
repeats: 2
matrix:
  - scenario: speed
    tasks: [labelled]
    frameworks: [steadyfw]
    params: {{batch_size: [8, 16]}}
    budget: {BUDGET}
  - scenario: accuracy
    tasks: [labelled]
    frameworks: [steadyfw]
    repeats: 3
"""
K_BS8 = "speed/labelled/steadyfw[cpu,eager,fp32,bs=8]"
K_BS16 = "speed/labelled/steadyfw[cpu,eager,fp32,bs=16]"
K_ACC = "accuracy/labelled/steadyfw[cpu,eager,fp32]"


@pytest.fixture
def plugins():
    return get_plugins(PluginConfig(plugins_dirs=(str(PLUGINS),)))


@pytest.fixture
def suite(tmp_path, plugins):
    path = tmp_path / "reps.yaml"
    path.write_text(SUITE)
    return suites.load(str(path), plugins)


# -- validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0", "-2", "2.5", "three", "101", "true"])
@pytest.mark.parametrize("where", ["top", "block"])
def test_bad_repeats_is_one_line_naming_file_field_and_range(tmp_path, plugins, value, where):
    text = SUITE.replace("repeats: 2", f"repeats: {value}") if where == "top" else \
        SUITE.replace("repeats: 3", f"repeats: {value}")
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError) as exc:
        suites.load(str(path), plugins)
    msg = str(exc.value)
    field = "field repeats:" if where == "top" else "field matrix.1.repeats:"
    assert msg.startswith(f"{path}: {field}"), msg
    assert "an integer from 1 to 100" in msg and "\n" not in msg


def test_block_repeats_override_the_suite(suite, plugins):
    assert suite.repeats(plugins) == {K_BS8: 2, K_BS16: 2, K_ACC: 3}
    assert suites.parse({"name": "x", "matrix": [{"scenario": "speed", "tasks": ["labelled"],
                                                   "frameworks": ["steadyfw"]}]}, plugins).model.repeats == 1


# -- sessions with a recording launcher ----------------------------------------------------------


class Recording(Launcher):
    """Launches nothing: records each job and returns a synthetic ok Result (speed: throughput
    samples whose level depends on the repeat; accuracy: a metric)."""

    name = "recording"

    def __init__(self, config: LaunchConfig, log: list[tuple[str, int]], fail: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset(),
                 stop_after: int | None = None) -> None:
        super().__init__(config)
        self.log, self.fail, self.stop_after = log, fail, stop_after

    def execute(self, job: Job) -> Result:
        if self.stop_after is not None and len(self.log) >= self.stop_after:
            raise KeyboardInterrupt
        self.log.append((job.cell.key, job.repeat))
        if (job.cell.key, job.repeat) in self.fail:
            return Result(job.cell, status="crashed", error="killed")
        rng = np.random.default_rng(job.repeat)
        if job.cell.scenario == "speed":
            x = 1000.0 * (1 + 0.01 * job.repeat) * np.exp(rng.normal(0, 0.01, 20))
            return Result(job.cell, measurements=[Measurement("throughput", "samples/s", x.tolist())],
                          started_at=float(len(self.log)))
        return Result(job.cell, metrics={"accuracy": 0.9 + 0.01 * job.repeat}, started_at=float(len(self.log)))


def _session(suite, plugins, store, monkeypatch, log, resume=None, **kw):
    opts = RunOptions(store.folder, reporters=(), quiet=True, canary=False, resume=resume)
    s = Session(suite, plugins, opts, store)
    monkeypatch.setattr(s, "make_launcher", lambda: Recording(s.launch_config(), log, **kw))
    return s


def test_repeats_are_interleaved_round_by_round_and_stored_as_rows(tmp_path, suite, plugins, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    log: list[tuple[str, int]] = []
    s = _session(suite, plugins, store, monkeypatch, log).run()
    assert log == [(K_BS8, 0), (K_BS16, 0), (K_ACC, 0), (K_BS8, 1), (K_BS16, 1), (K_ACC, 1), (K_ACC, 2)]
    rows = store.results(s.run_id, combine=False)
    assert len(rows) == 7
    assert sorted((r.cell.key, r.details["repeat"], r.details["repeats"]) for r in rows) == sorted(
        [(K_BS8, 0, 2), (K_BS8, 1, 2), (K_BS16, 0, 2), (K_BS16, 1, 2), (K_ACC, 0, 3), (K_ACC, 1, 3), (K_ACC, 2, 3)])
    merged = {r.cell.key: r for r in store.results(s.run_id)}
    assert set(merged) == {K_BS8, K_BS16, K_ACC}
    thr = merged[K_BS8].measurement("throughput")
    assert thr is not None and len(thr.samples) == 40 and thr.meta["repeats"] == 2
    assert len(thr.meta["process_medians"]) == 2
    assert merged[K_ACC].metrics["accuracy"] == pytest.approx(0.91)
    assert merged[K_ACC].details["repeat_metrics"]["accuracy"] == pytest.approx([0.90, 0.91, 0.92])
    import dlbench.results

    df = dlbench.results.load(store, runs=s.run_id)
    assert len(df[df.metric == "throughput"]) == 2  # one row per cell in the pandas frame, not per process
    points = store.history(measurement="throughput")  # history: one point per cell and run
    assert sorted(p["key"] for p in points) == [K_BS16, K_BS8]
    assert points[0]["median"] == pytest.approx(
        {K_BS8: thr, K_BS16: merged[K_BS16].measurement("throughput")}[points[0]["key"]].stats.median)


def test_resume_runs_exactly_the_missing_repeats(tmp_path, suite, plugins, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    log: list[tuple[str, int]] = []
    first = _session(suite, plugins, store, monkeypatch, log, fail={(K_BS16, 0)}, stop_after=4)
    with pytest.raises(KeyboardInterrupt):
        first.run()
    assert log == [(K_BS8, 0), (K_BS16, 0), (K_ACC, 0), (K_BS8, 1)]
    assert store.run_info(first.run_id).status == "interrupted"
    again: list[tuple[str, int]] = []
    _session(suite, plugins, store, monkeypatch, again, resume=first.run_id).run()
    # the crashed repeat 0 of bs=16 and every repeat not yet run; nothing finished is redone
    assert again == [(K_BS16, 0), (K_BS16, 1), (K_ACC, 1), (K_ACC, 2)]
    rows = store.results(first.run_id, combine=False)
    got = sorted((r.cell.key, r.details["repeat"], r.status) for r in rows)
    assert got == sorted([(K_BS8, 0, "ok"), (K_BS8, 1, "ok"), (K_BS16, 0, "ok"), (K_BS16, 1, "ok"),
                          (K_ACC, 0, "ok"), (K_ACC, 1, "ok"), (K_ACC, 2, "ok")])
    nothing: list[tuple[str, int]] = []
    _session(suite, plugins, store, monkeypatch, nothing, resume=first.run_id).run()
    assert nothing == [] and len(store.results(first.run_id, combine=False)) == 7


def test_repeats_option_overrides_the_suite(tmp_path, suite, plugins, monkeypatch):
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    log: list[tuple[str, int]] = []
    opts = RunOptions(tmp_path, reporters=(), quiet=True, canary=False, repeats=1,
                      select="speed/*")
    s = Session(suite, plugins, opts, store)
    monkeypatch.setattr(s, "make_launcher", lambda: Recording(s.launch_config(), log))
    s.run()
    assert log == [(K_BS8, 0), (K_BS16, 0)]
    assert "repeat" not in store.results(s.run_id, combine=False)[0].details


def test_live_log_says_which_repeat():
    r = Result(Cell("speed", "t", "f"), details={"repeat": 1, "repeats": 3})
    assert "repeat 2/3" in describe(r)
    assert "repeat" not in describe(Result(Cell("speed", "t", "f")))
    assert Job(Cell("speed", "t", "f"), 1, 3).label == "repeat 2/3"


def test_real_processes_one_row_and_log_each(tmp_path, plugins):
    """Fresh subprocesses: rows in launch order (started_at), a log file per repeat."""
    path = tmp_path / "one.yaml"
    path.write_text(f"""
name: one
repeats: 2
matrix:
  - scenario: speed
    tasks: [labelled]
    frameworks: [steadyfw]
    params: {{batch_size: [8, 16]}}
    budget: {BUDGET}
""")
    s = suites.load(str(path), plugins)
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    session = Session(s, plugins, RunOptions(tmp_path, reporters=(), quiet=True, canary=False), store).run()
    rows = sorted(store.results(session.run_id, combine=False), key=lambda r: r.started_at or 0)
    assert [(r.cell.key, r.details["repeat"]) for r in rows] == [(K_BS8, 0), (K_BS16, 0), (K_BS8, 1), (K_BS16, 1)]
    assert all(r.status == "ok" for r in rows), [(r.status, r.error, r.log_tail) for r in rows]
    logs = {r.details["log_file"] for r in rows}
    assert len(logs) == 4 and all(Path(p).exists() for p in logs)


# -- combine_repeats on synthetic Results --------------------------------------------------------


CELL = Cell("speed", "vision", "torch", "cpu", {"batch_size": 32})


def process(level: float, seed: int, n: int = 60, noise: float = 0.01, repeat: int = 0, k: int = 1,
            **meta) -> Result:
    x = level * np.exp(np.random.default_rng(seed).normal(0, noise, n))
    m = Measurement("throughput", "samples/s", x.tolist(), meta=dict(meta))
    details = {"repeat": repeat, "repeats": k} if k > 1 else {}
    return Result(CELL, measurements=[m], details=details, started_at=float(repeat), duration=1.0)


def merged(levels: Iterable[float], seed: int = 0, **kw) -> Measurement:
    lv = list(levels)
    rs = [process(v, seed + i, repeat=i, k=len(lv), **kw) for i, v in enumerate(lv)]
    m = combine_repeats(rs).measurement("throughput")
    assert m is not None
    return m


def test_identical_processes_do_not_disagree():
    rs = [process(1000, 7, repeat=i, k=3) for i in range(3)]  # the very same samples three times
    m = combine_repeats(rs).measurement("throughput")
    assert m is not None and "repeats_disagree" not in m.flags
    assert m.meta["process_medians"] == pytest.approx([m.meta["process_medians"][0]] * 3)
    m = merged([1000, 1000, 1000])  # independent noise, same level
    assert "repeats_disagree" not in m.flags


def test_one_process_30_percent_slower_disagrees():
    m = merged([1000, 1000, 700])
    assert "repeats_disagree" in m.flags and m.meta["repeats_p"] < 0.01
    assert m.meta["repeats_spread"] > 0.2


def test_small_spread_is_not_a_disagreement_even_when_significant():
    m = merged([1000, 1000, 1015], noise=0.001)  # significant, but within 2% of the median
    assert m.meta["repeats_p"] < 0.01 and "repeats_disagree" not in m.flags


def test_ci_widens_with_between_process_spread():
    def width(levels):
        m = merged(levels)
        assert m.stats is not None
        return (m.stats.ci_high - m.stats.ci_low) / m.stats.median

    tight, loose, looser = width([1000, 1000, 1000]), width([980, 1000, 1020]), width([900, 1000, 1100])
    assert tight < loose < looser
    # the 180 windows taken as independent would claim far less than the between-process CI
    m = merged([900, 1000, 1100])
    from dlbench.stats import median_ci

    lo, hi = median_ci(np.random.default_rng(0).permutation(m.samples))
    assert m.stats is not None and (hi - lo) < (m.stats.ci_high - m.stats.ci_low) / 3
    assert m.stats.ci_low < 1000 < m.stats.ci_high


def test_combine_of_one_result_is_the_identity():
    r = process(1000, 1)
    assert combine_repeats([r]) is r
    assert combine_results([r]) == [r]


def test_failed_repeats_are_counted_and_ok_repeats_merged():
    rs = [process(1000, 0, repeat=0, k=3), Result(CELL, "crashed", error="OOM", details={"repeat": 1, "repeats": 3}),
          process(1000, 2, repeat=2, k=3)]
    r = combine_repeats(rs)
    assert r.status == "ok" and r.details["repeats_ok"] == 2 and r.details["repeats_failed"] == 1
    assert "repeat 1: crashed: OOM" in r.details["repeat_errors"]
    assert "repeat" not in r.details
    m = r.measurement("throughput")
    assert m is not None and len(m.samples) == 120 and m.meta["repeats"] == 2
    bad = combine_repeats([Result(CELL, "timeout", details={"repeat": i, "repeats": 2}) for i in range(2)])
    assert bad.status == "timeout" and bad.details["repeats_ok"] == 0


def test_flags_union_contention_max_and_metrics_mean():
    a = process(1000, 0, repeat=0, k=2, contention=0.1, flags=["not_converged"])
    b = process(1000, 1, repeat=1, k=2, contention=0.3, flags=["contended"])
    a.metrics, b.metrics = {"first_call_s": 1.0}, {"first_call_s": 3.0}
    r = combine_repeats([b, a])  # order of rows does not matter
    m = r.measurement("throughput")
    assert m is not None and m.flags[:2] == ["not_converged", "contended"]
    assert m.meta["contention"] == pytest.approx(0.3)
    assert r.metrics["first_call_s"] == pytest.approx(2.0)
    assert r.details["repeat_metrics"]["first_call_s"] == [1.0, 3.0]


def test_per_example_measurements_are_not_concatenated():
    rs = []
    for i in range(3):
        r = process(1000, i, repeat=i, k=3)
        r.measurements.append(Measurement("test_correct", "fraction", [1.0, 0.0, 1.0, 1.0]))
        rs.append(r)
    m = combine_repeats(rs).measurement("test_correct")
    assert m is not None and m.samples == [1.0, 0.0, 1.0, 1.0]


def test_combine_results_groups_by_key_in_first_appearance_order():
    other = Result(Cell("speed", "nlp", "torch"), measurements=[Measurement("throughput", "samples/s", [1.0] * 8)])
    rows = [process(1000, 0, repeat=0, k=2), other, process(1000, 1, repeat=1, k=2)]
    out = combine_results(rows)
    assert [r.cell.key for r in out] == [CELL.key, other.cell.key]
    assert out[1] is other


# -- properties (hypothesis) ---------------------------------------------------------------------

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

levels_st = hs.lists(hs.floats(min_value=10.0, max_value=1e5), min_size=2, max_size=6)


@settings(max_examples=60, deadline=None)
@given(levels=levels_st, seed=hs.integers(0, 2**16), n=hs.integers(6, 40))
def test_merge_keeps_every_sample_and_a_ci_around_the_process_medians(levels, seed, n):
    rs = [process(v, seed + i, n=n, repeat=i, k=len(levels)) for i, v in enumerate(levels)]
    r = combine_repeats(rs)
    m = r.measurement("throughput")
    assert m is not None and m.stats is not None
    assert len(m.samples) == n * len(levels) and m.stats.n == n * len(levels)
    assert m.meta["repeats"] == len(levels) and len(m.meta["process_medians"]) == len(levels)
    assert m.stats.ci_low <= m.stats.ci_high
    geo = math.exp(float(np.mean(np.log(m.meta["process_medians"]))))
    assert m.stats.ci_low <= geo * (1 + 1e-9) and geo <= m.stats.ci_high * (1 + 1e-9)
    assert m.stats.min <= m.stats.median <= m.stats.max
    # the merge does not depend on the order rows come back from the store
    again = combine_repeats(list(reversed(rs))).measurement("throughput")
    assert again is not None and again.stats == m.stats and again.flags == m.flags


@settings(max_examples=40, deadline=None)
@given(level=hs.floats(min_value=10.0, max_value=1e5), k=hs.integers(2, 6), seed=hs.integers(0, 2**16))
def test_copies_of_one_process_never_disagree(level, k, seed):
    base = process(level, seed)
    rs = [Result(CELL, measurements=[Measurement("throughput", "samples/s", list(base.measurements[0].samples))],
                 details={"repeat": i, "repeats": k}) for i in range(k)]
    m = combine_repeats(rs).measurement("throughput")
    assert m is not None and "repeats_disagree" not in m.flags
