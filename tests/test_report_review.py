"""The HTML report as a reviewer reads it, in headless Chromium (issue 15): boards whose cells were
all skipped come last and say why; a classic baseline is a reference row, not ranked against the
neural model; audit checks that did not run are grey; attack budgets are markers with their unit;
latency is on a log axis; throughput says higher is better; a one-fit baseline is a line across
the learning curves; the environment shows CPU, thread pools, threads, load, contention and the
canary. Screenshots of each section are written beside the test's report (their paths are
printed; set DLBENCH_SCREENSHOTS=<dir> to keep them)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlbench.cell import Cell
from dlbench.measure.canary import CANARY_SCENARIO
from dlbench.report.base import RunData, RunInfo
from dlbench.report.html import HtmlReporter
from dlbench.result import Measurement, ModelInfo, Result

try:
    from tests.browser import Chromium, find_chromium
    from tests.report_data import accuracy, robustness, speed
except ImportError:  # tests/ itself on sys.path (pytest's default "prepend" import mode)
    from browser import Chromium, find_chromium
    from report_data import accuracy, robustness, speed

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(find_chromium() is None,
                       reason="needs headless chromium (apt-get install chromium; or set "
                              "CHROMIUM=/path/to/chrome)"),
]

NEURAL_ENV = {"framework_kind": "neural", "threads": 2, "load": {"loadavg_1m": 1.5, "cpu_pressure_avg10": 3.0},
              "thread_pools": [{"api": "blas", "library": "openblas", "version": "0.3.27", "threads": 2}]}


def review_run() -> RunData:
    rng = np.random.default_rng(0)
    results = [speed(fw, "infer", 1, "eager", t, rng) for fw, t in (("torch", 900.0), ("jax", 1200.0))]
    results += [speed(fw, "infer", 32, "eager", t, rng) for fw, t in (("torch", 9000.0), ("jax", 12000.0))]
    runtime = [speed("onnxruntime", "infer", bs, "all", t, rng) for bs, t in ((1, 2000.0), (32, 30000.0))]
    for r in runtime:  # an inference runtime ran: the task gets an inference board
        r.environment = {**r.environment, **NEURAL_ENV, "framework_trains": False}
    results += runtime
    torch_acc = accuracy("torch", "vision", {"accuracy": 0.90}, rng)
    sk = accuracy("sklearn", "vision", {"accuracy": 0.97}, rng)  # better than the CNN: still not #1
    sk.series["learning_curve"] = sk.series["learning_curve"][-1:]  # one fit
    sk.environment = {**NEURAL_ENV, "framework_kind": "classic"}
    sk.model = ModelInfo("", 0, 0, "")
    results += [torch_acc, sk]
    rob = robustness("torch", 0.9, rng)
    rob.series["robustness_curve"] = [
        {"attack": "pgd", "epsilon": e, "unit": "pixel/255", "metric": m, "ci_low": m - 0.05,
         "ci_high": m + 0.05} for e, m in ((0, 0.9), (16, 0.4))]
    rob.details["audit"] = [{"check": "pgd_stronger_than_fgsm", "passed": None, "evidence": "fgsm did not run"},
                            {"check": "gradients_nonzero_finite", "passed": True, "evidence": "all finite"}]
    results.append(rob)
    for fw in ("torch", "sklearn"):  # a domain without its data
        results.append(Result(Cell("accuracy", "speech", fw, "cpu", {}), "skipped",
                              error="dataset 'fsdd' is not in the data folder: run dlbench data fetch fsdd"))
    canary = Result(Cell(CANARY_SCENARIO, "matmul", "numpy", "cpu", {}), "ok",
                    [Measurement("gflops", "GFLOP/s", list(rng.normal(20.0, 0.2, 40)))])
    results.append(canary)
    for r in results:
        if r.status == "ok" and r is not sk:
            r.environment = {**r.environment, **NEURAL_ENV}
    run = RunInfo(9, "review", 1_700_000_000.0, 1_700_000_300.0, None,
                  {"cpu": "Intel Xeon Platinum", "cpu_count": 2, "affinity": 2, "memory_gb": 24.0, "gpus": []},
                  "finished", {})
    return RunData(run, results)


STATE = """(() => {
  const board = document.querySelector("#leaderboard");
  const boards = [...board.querySelectorAll("h4")].map(h => ({
    title: h.textContent.trim(),
    head: [...h.nextElementSibling.querySelectorAll("th")].map(th => th.textContent.trim()),
    rows: [...h.nextElementSibling.querySelectorAll("tbody tr")].map(tr => [...tr.children].map(td => td.textContent.trim()))}));
  const tasks = [...board.querySelectorAll("h3")].map(h => h.textContent.trim());
  const notes = [...board.querySelectorAll("p.note")].map(p => p.textContent);
  const rows = [...board.querySelectorAll("tr")].map(tr => [...tr.children].map(td => td.textContent.trim()));
  const chart = kind => [...document.querySelectorAll(`div.chart[data-chart="${kind}"]`)];
  const gd = c => c.querySelector(".js-plotly-plot") || c;
  const rob = chart("robustness").map(c => ({x: gd(c).layout.xaxis.title.text,
                                             modes: gd(c).data.filter(t => t.name).map(t => t.mode)}));
  const lat = chart("latency").map(c => gd(c).layout.yaxis.type);
  const tput = chart("throughput").map(c => gd(c).layout.yaxis.title.text);
  const learn = chart("learning_curve").map(c => gd(c).data.map(t => ({name: t.name, n: t.x.length,
                                                                        dash: (t.line || {}).dash})));
  const na = [...document.querySelectorAll("td.na")].map(td => ({text: td.textContent.trim(),
                                                                  color: getComputedStyle(td).color}));
  const fail = document.querySelector("td.fail");
  const env = [...document.querySelectorAll("#environment tr")].map(tr => tr.textContent);
  return {tasks, boards, notes, rows, rob, lat, tput, learn, na, env,
          failColor: fail ? getComputedStyle(fail).color : null};
})()"""


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("review")
    path = out / "report.html"
    path.write_text(HtmlReporter().render(review_run()), encoding="utf-8")
    shots = {out / f"{name}.png": f"#{name}" for name in ("leaderboard", "latency", "learning",
                                                          "robustness", "environment")}
    with Chromium(timeout=120) as browser:
        result = browser.load(path.as_uri(), wait_for="document.body.dataset.chartsRendered",
                              evaluate=STATE, timeout=120, screenshots=shots)
    keep = os.environ.get("DLBENCH_SCREENSHOTS")
    for png in shots:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(png, Path(keep) / png.name)
    print("report screenshots:", *sorted(map(str, shots)))
    return result


def test_all_skipped_boards_come_last_and_say_why(page):
    v = page.value
    assert v["tasks"][-1] == "speech" and v["tasks"][0] != "speech"
    assert any("Every cell here was skipped" in n and "dlbench data fetch fsdd" in n for n in v["notes"])


def test_a_classic_baseline_is_a_reference_row_not_ranked(page):
    rows = page.value["rows"]
    board = rows[next(i for i, r in enumerate(rows) if "accuracy ↑" in r):]
    assert board[1][:2] == ["1", "torch"]  # 0.90: ranked first of the neural frameworks
    assert board[2][:2] == ["ref", "sklearn (classic baseline)"]  # 0.97, yet not ranked


def test_checks_that_did_not_run_are_grey_not_red(page):
    v = page.value
    not_run = [c for c in v["na"] if c["text"] == "not run"]
    assert not_run and all(c["color"] != v["failColor"] for c in not_run)


def test_attack_budgets_are_markers_with_their_unit(page):
    (rob,) = page.value["rob"]
    assert "pixel/255" in rob["x"] and set(rob["modes"]) == {"markers"}  # two budgets: no line


def test_latency_on_a_log_axis_and_throughput_says_higher_is_better(page):
    v = page.value
    assert v["lat"] and set(v["lat"]) == {"log"}
    assert v["tput"] and all("↑" in t for t in v["tput"])


def test_a_one_fit_baseline_is_a_line_across_the_learning_curve(page):
    epoch_chart = page.value["learn"][0]
    sk = next(t for t in epoch_chart if "sklearn" in t["name"])
    assert sk["n"] == 2 and sk["dash"] == "dash" and "one fit" in sk["name"]


def test_the_environment_shows_machine_threads_load_contention_and_canary(page):
    env = " ".join(page.value["env"])
    for needed in ("Intel Xeon Platinum", "openblas 0.3.27", "Threads per cell", "Load while cells ran",
                   "1.50", "Contention", "Canary", "GFLOP/s"):
        assert needed in env, needed


def test_an_inference_board_leads_the_task_with_runtimes_and_frameworks_side_by_side(page):
    boards = page.value["boards"]
    vision = [b["title"] for b in boards if b["title"].endswith("vision")]
    assert vision[0] == "Inference — vision"  # first of the task's boards
    board = boards[[b["title"] for b in boards].index("Inference — vision")]
    assert "Latency p50 / p99 (ms), batch 1" in board["head"]
    assert "Throughput (samples/s) [95% CI], batch 32" in board["head"]
    assert [r[1].split("[")[0] for r in board["rows"]] == ["onnxruntime", "jax", "torch"]  # fastest first
    assert [r[0] for r in board["rows"]] == ["1", "2", "3"]
