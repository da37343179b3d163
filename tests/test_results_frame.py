"""dlbench.results.load: one tidy row per figure across runs (issue 15), typed parameter columns,
CIs on accuracy rows, and a robustness figure's epsilon as a column, never inside its name."""

from __future__ import annotations

import pandas as pd
import pytest

from dlbench.cell import Cell
from dlbench.result import Measurement, Result
from dlbench.results import load
from dlbench.scenarios.figures import attack_metric, parse_attack_metric
from dlbench.store.database import Store


def _speed(bs: int | None, tput: float) -> Result:
    params = {"variant": "eager", "compiled": False, "lr": 0.5}
    if bs is not None:
        params["batch_size"] = bs
    return Result(Cell("speed", "vision", "torch", "cpu", params),
                  measurements=[Measurement("throughput", "samples/s", [tput, tput * 1.01, tput * 0.99] * 4)])


def _accuracy() -> Result:
    return Result(Cell("accuracy", "vision", "jax", "cpu", {"epochs": 2}),
                  metrics={"accuracy": 0.93, "train_time_s": 1.5},
                  details={"metric_ci": {"accuracy": [0.90, 0.95]}})


def _robustness() -> Result:
    metrics = {"clean_accuracy": 0.97}
    for eps, robust in ((0.0, 0.97), (8.0, 0.61)):
        for fig, v in (("robust", robust), ("success_rate", 1 - robust / 0.97), ("attack_time_s", 0.2)):
            metrics[attack_metric(fig, "pgd", eps)] = v
    metrics.update({attack_metric(f, "tokens", 2, "k"): v for f, v in
                    (("robust", 0.7), ("success_rate", 0.25), ("attack_time_s", 1.0))})
    curve = [{"attack": "pgd", "kind": "white-box", "epsilon": e, "unit": "pixel/255", "metric": m,
              "ci_low": m - 0.05, "ci_high": m + 0.03} for e, m in ((0.0, 0.97), (8.0, 0.61))]
    return Result(Cell("robustness", "vision", "torch", "cpu", {"epochs": 1}), metrics=metrics,
                  series={"robustness_curve": curve},
                  details={"metric_ci": {"clean_accuracy": [0.92, 0.99], attack_metric("robust", "tokens", 2, "k"): [0.6, 0.8]}})


@pytest.fixture
def store(tmp_path) -> Store:
    st = Store(f"sqlite:///{tmp_path / 'r.db'}")
    for commit, tput in (("c0ffee1", 100.0), ("c0ffee2", 90.0)):
        rid = st.start_run("s", {}, commit, {})
        for r in (_speed(8, tput), _speed(None, tput), _accuracy(), _robustness()):
            st.add_result(rid, r)
        st.finish_run(rid)
    other = st.start_run("other", {}, "beef", {})
    st.add_result(other, _speed(4, 50.0))
    return st


def test_one_row_per_figure_across_runs_with_run_commit_and_time(store):
    df = load(store, runs="all", suite="s")
    assert sorted(df["run"].unique()) == [1, 2] and set(df.commit) == {"c0ffee1", "c0ffee2"}
    assert isinstance(df.time.dtype, pd.DatetimeTZDtype) and str(df.time.dt.tz) == "UTC"
    assert list(df.columns[:10]) == ["run", "commit", "time", "suite", "key", "scenario", "task", "framework",
                                     "device", "status"]
    tput = df[df.metric == "throughput"].sort_values(["run", "key"])
    assert list(tput.value.round(3)) == [100.0, 100.0, 90.0, 90.0] and tput.higher_is_better.all()
    assert (tput.ci_low < tput.value).all() and (tput.value < tput.ci_high).all()
    assert set(load(store, suite="s")["run"]) == {2}  # the latest of the suite
    assert set(load(store)["run"]) == {3}  # the latest of any
    assert set(load(store, runs=[1, 3])["run"]) == {1, 3} and set(load(store, runs=1)["run"]) == {1}
    with pytest.raises(ValueError, match="runs must be"):
        load(store, runs="latest-ish")


def test_parameters_are_typed_columns(store):
    df = load(store, runs="all")
    assert str(df.batch_size.dtype) == "Int64" and df.batch_size.isna().any()  # cells without one: <NA>
    assert set(df.batch_size.dropna()) == {4, 8}
    assert str(df.compiled.dtype) == "boolean" and str(df.lr.dtype) == "Float64"
    assert str(df.variant.dtype) == "string" and str(df.epochs.dtype) == "Int64"


def test_accuracy_carries_its_ci_and_epsilon_is_a_column(store):
    df = load(store, runs=2)
    acc = df[df.metric == "accuracy"].iloc[0]
    assert (acc.value, acc.ci_low, acc.ci_high, bool(acc.higher_is_better)) == (0.93, 0.90, 0.95, True)
    assert bool(df[df.metric == "train_time_s"].higher_is_better.iloc[0]) is False
    rob = df[df.scenario == "robustness"]
    assert not rob.metric.str.contains("eps|_k[0-9]").any()  # the budget is never in the name
    pgd = rob[(rob.attack == "pgd") & (rob.metric == "robust")].sort_values("epsilon")
    assert list(pgd.epsilon) == [0.0, 8.0] and set(pgd.epsilon_unit) == {"pixel/255"}
    assert list(pgd.value) == [0.97, 0.61] and list(pgd.ci_low.round(2)) == [0.92, 0.56]  # from the curve
    sr = rob[(rob.attack == "pgd") & (rob.metric == "success_rate")]
    assert len(sr) == 2 and not sr.higher_is_better.any()
    tok = rob[(rob.attack == "tokens") & (rob.metric == "robust")].iloc[0]
    assert (tok.epsilon, tok.epsilon_unit, tok.ci_low, tok.ci_high) == (2.0, "tokens", 0.6, 0.8)
    clean = rob[rob.metric == "clean_accuracy"].iloc[0]
    assert (clean.ci_low, clean.ci_high) == (0.92, 0.99) and pd.isna(clean.attack)


def test_attack_metric_names_round_trip():
    for fig in ("robust", "success_rate", "attack_time_s"):
        for attack, eps, mark in (("pgd", 0.5, "eps"), ("fgsm_l2", 16.0, "eps"), ("tokens", 3, "k")):
            assert parse_attack_metric(attack_metric(fig, attack, eps, mark)) == (fig, attack, mark, float(eps))
    assert parse_attack_metric("robust_metric") is None and parse_attack_metric("accuracy") is None


def test_the_readme_example_runs_and_compares_commits(store):
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "dlbench.results.load" in b)
    lines = block.strip().splitlines()
    assert len(lines) == 3  # three lines, as the README promises
    code = "\n".join(lines).replace("sqlite:///reports/dlbench.db", str(store.engine.url)).replace('"quick"', '"s"')
    scope: dict = {}
    exec("\n".join(code.splitlines()[:2]), scope)
    table = eval(code.splitlines()[2], scope)
    assert list(table.columns) == ["c0ffee1", "c0ffee2"] and table.loc[("torch", 8)].round(3).tolist() == [100.0, 90.0]
