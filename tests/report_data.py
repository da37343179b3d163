"""Synthetic RunData with every kind of result, for reporter tests (no framework, no store)."""

from __future__ import annotations

import numpy as np

from dlbench.cell import Cell
from dlbench.report.base import RunData, RunInfo
from dlbench.result import Measurement, Result

HOSTILE = ("<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
           "{{ 7*7 }} \u2028 \" ' &amp; </textarea>")


def _m(name: str, unit: str, samples: np.ndarray, higher: bool = True) -> Measurement:
    return Measurement(name, unit, [float(x) for x in samples], higher_is_better=higher)


def speed(fw: str, mode: str, bs: int, variant: str, tput: float, rng: np.random.Generator,
          task: str = "vision", status: str = "ok", error: str | None = None) -> Result:
    cell = Cell("speed", task, fw, "cpu", {"mode": mode, "batch_size": bs, "variant": variant,
                                         "precision": "fp32"})
    if status != "ok":
        return Result(cell, status, error=error, log_tail="line 1\nline 2\n" + (error or ""))
    ms = [_m("throughput", "samples/s", rng.normal(tput, tput * 0.03, 40)),
          _m("first_call", "s", np.array([rng.uniform(0.1, 3.0)]), higher=False)]
    if bs == 1:
        ms.append(_m("latency", "ms", rng.lognormal(np.log(1000 / tput), 0.1, 60), higher=False))
    metrics = {"peak_host_memory_mb": float(rng.uniform(200, 900)), "compile_time_s": 1.5}
    if fw != "jax":  # device memory may be missing
        metrics["peak_device_memory_mb"] = float(rng.uniform(10, 100))
    return Result(cell, "ok", ms, metrics, environment={"framework_version": f"{fw}-1.0",
                                                          "python": "3.11.7", "threads": 2,
                                                          "affinity": [0, 1]}, duration=4.2)


def accuracy(fw: str, task: str, metrics: dict[str, float], rng: np.random.Generator) -> Result:
    cell = Cell("accuracy", task, fw, "cpu", {"epochs": 3})
    primary = next(iter(metrics))
    curve = []
    for epoch in range(1, 4):
        curve.append({"epoch": epoch, "time_s": 2.0 * epoch + rng.uniform(0, 1),
                      "train_loss": 1.0 / epoch, primary: metrics[primary] * (0.7 + 0.1 * epoch)})
    n = 200
    result = Result(cell, "ok", metrics={**metrics, "train_time_s": 6.3,
                                         "time_to_target_s": float("nan") if fw == "jax" else 4.1},
                    series={"learning_curve": curve}, environment={"framework_version": "1.0"})
    if primary == "accuracy":
        correct = (rng.uniform(size=n) < metrics["accuracy"]).astype(float)
        result.measurements.append(_m("test_correct", "", correct))
        if fw == "torch":
            result.details["metric_ci"] = {"accuracy": [metrics["accuracy"] - 0.03,
                                                        metrics["accuracy"] + 0.03]}
    return result


def parity(fw: str, errs: dict[str, float]) -> Result:
    rows = [{"check": c, "rel_error": e, "tolerance": 1e-4 if c != "loss" else None,
             "passed": (e < 1e-4) if c != "loss" else None, "reference": "torch"}
            for c, e in errs.items()]
    return Result(Cell("parity", "vision", fw, "cpu", {}), "ok", details={"parity": rows})


def robustness(fw: str, clean: float, rng: np.random.Generator) -> Result:
    curve = []
    for attack in ("fgsm", "pgd"):
        for eps in (0.0, 0.01, 0.03, 0.1):
            acc = clean * float(np.exp(-eps * (20 if attack == "pgd" else 10)))
            curve.append({"attack": attack, "epsilon": eps, "metric": acc,
                          "ci_low": acc - 0.04, "ci_high": acc + 0.04})
    corruptions = [{"corruption": c, "severity": s, "metric": clean - 0.05 * s}
                   for c in ("gaussian_noise", "blur") for s in (1, 2, 3)]
    audit = [{"check": "eps_monotone", "passed": True, "evidence": "accuracy falls with epsilon"},
             {"check": "unbounded_attack_succeeds", "passed": fw != "jax",
              "evidence": "accuracy at eps=inf: 0.00" if fw != "jax" else "accuracy 0.31 > 0"}]
    return Result(Cell("robustness", "vision", fw, "cpu", {"attacks": "fgsm,pgd"}), "ok",
                  metrics={"clean_metric": clean, "clean_accuracy": clean, "auc": clean * 0.4},
                  series={"robustness_curve": curve},
                  details={"corruptions": corruptions, "audit": audit,
                           "metric": {"name": "accuracy", "higher_is_better": True}})


def scalability(fw: str, rng: np.random.Generator) -> Result:
    pts = []
    for t in (1, 2, 4):
        tput = 100 * t ** 0.8 * rng.uniform(0.9, 1.1)
        pts.append({"axis": "threads", "value": t, "throughput": tput,
                    "efficiency": tput / 100 / t})
    for f in (0.1, 0.5, 1.0):
        pts.append({"axis": "train_fraction", "value": f, "metric": 0.6 + 0.3 * f})
    return Result(Cell("scalability", "vision", fw, "cpu", {}), "ok", series={"scaling": pts})


def flag(m: Measurement | None, *names: str, **meta: object) -> Measurement:
    """Raise warnings on a measurement as the sampler does (``meta["flags"]`` and its facts)."""
    assert m is not None
    for name in names:
        m.flag(name)
    m.meta.update(meta)
    return m


def speed_result(results: list[Result], fw: str, mode: str, bs: int, variant: str) -> Result:
    return next(r for r in results if r.cell.scenario == "speed" and r.cell.framework == fw
                and r.cell.params == {"mode": mode, "batch_size": bs, "variant": variant,
                                      "precision": "fp32"})


FLAGGED = {  # cell -> measurement -> the flags it carries in make_run_data(flagged=True)
    ("torch", "infer", 32, "eager"): {"throughput": ["contended"]},
    ("jax", "train", 32, "compiled"): {"throughput": ["not_converged"]},
    ("tensorflow", "infer", 1, "eager"): {"throughput": ["inconsistent"],
                                          "latency": ["drifting", "inconsistent"]},
    ("torch", "train", 1, "compiled"): {"throughput": ["repeats_disagree"]},
}
"""The flagged figures of ``make_run_data(flagged=True)``; every other figure is unflagged
(with ``hostile=True`` the tensorflow train bs=32 eager throughput also carries HOSTILE as a flag)."""


def add_flags(results: list[Result], hostile: bool) -> None:
    flag(speed_result(results, "torch", "infer", 32, "eager").measurement("throughput"),
         "contended", contention=0.31, contention_source="schedstat", windows_discarded=2,
         converged=True)
    flag(speed_result(results, "jax", "train", 32, "compiled").measurement("throughput"),
         converged=False)  # stored unconverged: shown as not_converged though not in the flags
    tf = speed_result(results, "tensorflow", "infer", 1, "eager")
    flag(tf.measurement("throughput"), "inconsistent")
    flag(tf.measurement("latency"), "drifting", "inconsistent")
    flag(speed_result(results, "torch", "train", 1, "compiled").measurement("throughput"),
         "repeats_disagree", repeats=3, process_medians=[100.0, 120.0, 140.0])
    for r in results:  # unflagged facts show nothing
        for m in r.measurements:
            m.meta.setdefault("contention", 0.01)
            m.meta.setdefault("converged", True)
    if hostile:
        flag(speed_result(results, "tensorflow", "train", 32, "eager").measurement("throughput"),
             HOSTILE)


def make_run_data(seed: int = 0, hostile: bool = False, with_baseline: bool = True,
                  flagged: bool = False) -> RunData:
    """A run with speed (infer/train, bs 1 and 32, eager/compiled), accuracy (vision + recsys),
    parity, robustness, scalability and failed/timeout/crashed/skipped cells, plus a baseline
    run and history; with ``flagged`` the figures of :data:`FLAGGED` carry warnings."""
    rng = np.random.default_rng(seed)
    results: list[Result] = []
    for fw, base in (("torch", 900.0), ("jax", 1200.0), ("tensorflow", 700.0)):
        for mode in ("infer", "train"):
            for bs in (1, 32):
                for variant in ("eager", "compiled"):
                    t = base * (bs ** 0.6) * (1.3 if variant == "compiled" else 1.0)
                    t = t / (3 if mode == "train" else 1)
                    results.append(speed(fw, mode, bs, variant, t, rng))
    error = (f"RuntimeError: {HOSTILE}" if hostile else "RuntimeError: CUDA out of memory")
    results.append(speed("keras", "infer", 32, "eager", 1, rng, status="failed", error=error))
    results.append(speed("keras", "train", 32, "eager", 1, rng, status="timeout",
                         error="cell exceeded its 600 s timeout"))
    results.append(speed("keras", "infer", 1, "compiled", 1, rng, status="crashed",
                         error="process died with signal 11 (SIGSEGV)"))
    results.append(speed("sklearn", "infer", 1, "eager", 1, rng, status="skipped",
                         error="framework 'sklearn' has no speed scenario"))
    for fw, acc in (("torch", 0.91), ("jax", 0.9), ("sklearn", 0.84)):
        results.append(accuracy(fw, "vision", {"accuracy": acc, "macro_f1": acc - 0.02}, rng))
    for fw, rmse in (("torch", 0.93), ("tensorflow", 0.95)):
        results.append(accuracy(fw, "recsys", {"rmse": rmse, "mae": rmse * 0.8,
                                               "hr@10": 0.6, "ndcg@10": 0.35}, rng))
    results.append(parity("jax", {"outputs": 2e-7, "input_gradient": 5e-6,
                                  "weights_after_step": 3e-7, "loss": 1e-7}))
    results.append(parity("tensorflow", {"outputs": 3e-7, "input_gradient": 2e-3}))
    for fw, clean in (("torch", 0.91), ("jax", 0.9)):
        results.append(robustness(fw, clean, rng))
    for fw in ("torch", "jax"):
        results.append(scalability(fw, rng))
    if flagged:
        add_flags(results, hostile)
    if hostile:
        rob = next(r for r in results if r.cell.scenario == "robustness")
        for p in rob.series["robustness_curve"]:
            if p["attack"] == "pgd":
                p["attack"] = "pgd " + HOSTILE
        results[0].error = HOSTILE
        results[0].log_tail = HOSTILE
        results[0].environment["note"] = HOSTILE
        results[0].details["metric_ci"] = {}
    env = {"python": "3.11.7", "platform": "Linux-x86_64", "cpu": "Xeon", "cpu_count": 2,
           "gpus": [{"name": "NVIDIA H100", "memory": "81559 MiB", "driver": "550.1"}],
           "versions": {"torch": "2.13.0", "jax": "0.10.2", "numpy": "2.1"},
           "env": {"OMP_NUM_THREADS": "1"}}
    if hostile:
        env["hostname"] = HOSTILE
    run = RunInfo(7, HOSTILE if hostile else "quick", 1_700_000_000.0, 1_700_000_600.0,
                  "0123456789abcdef0123", env, "finished", {"device": "cpu"})
    history: dict[str, list[dict]] = {}
    for r in results[:3]:  # one point per run
        history[r.cell.key] = [{"run_id": i, "commit": f"c{i:07d}", "median": 900.0 + 10 * i}
                               for i in (3, 4, 5)]
    # as the store gives it: one row per run and measurement (first_call must be ignored)
    history[results[3].cell.key] = [
        {"key": results[3].cell.key, "run_id": i, "status": "ok", "metrics": {},
         "git_commit": f"c{i:07d}", "started_at": 0.0, "suite": "quick", "name": name,
         "median": median, "ci_low": median * 0.98, "ci_high": median * 1.02}
        for i in (4, 5) for name, median in (("throughput", 7000.0 + i), ("first_call", 2.0))]
    baseline = None
    if with_baseline:
        base = make_run_data(seed + 1, hostile=False, with_baseline=False)
        base.run.id = 5
        baseline = base
    return RunData(run, results, baseline, history)


# -- hostile strings for every output format (tests/test_output_escaping.py, the browser test) ---
HOSTILE_TEXTS = (
    "<script>window.__pwned = 1</script>",
    "<img src=x onerror=\"window.__pwned = 2\">",
    "[x](javascript:window.__pwned=3)",
    "<a href=\"javascript:window.__pwned=4\">y</a>",
    "![i](javascript:window.__pwned=5)",
    "<javascript:window.__pwned=6>",
    "a | b || c",
    "`tick` ``double`` ```",
    "new\nline\n\n# heading\n\n| x | y |",
    "\x1b[31mred\x1b[0m \x1b]0;title\x07",
    "form\x0cfeed nul\x00 bell\x07",
    "[/] [bold]bold[/bold]",
    "*em* _em_ **strong** ~~strike~~",
    "<details open><summary>x</summary>",
    "&lt;script&gt; &#60;b&#62;",
)
"""Script and image tags, ``javascript:`` links, pipes, backticks, newlines, ANSI sequences, form
feed and NUL, rich markup, emphasis, an HTML block and entities: each must come out as text."""
HOSTILE_ALL = " ".join(HOSTILE_TEXTS)


def hostile_results(seed: int = 0) -> tuple[list[Result], list[Result]]:
    """Base and head runs whose cell keys, measurement names, units and error texts are hostile:
    one cell regresses, one fails with a hostile error, one is missing in head."""
    rng = np.random.default_rng(seed)

    def cell(i: int) -> Cell:
        return Cell("speed", "vision", "torch", "cpu", {"batch_size": 32, "note": f"{i} {HOSTILE_ALL}"})

    def ok(i: int, scale: float) -> Result:
        s = 1000 * scale * np.exp(rng.normal(0, 0.03, 30))
        return Result(cell(i), measurements=[Measurement(f"throughput {HOSTILE_TEXTS[i]}",
                                                         "samples/s |`", s.tolist())])

    base = [ok(0, 1.0), ok(1, 1.0), ok(2, 1.0), ok(3, 1.0)]
    head = [ok(0, 0.7), Result(cell(1), status="failed", error=f"RuntimeError: {HOSTILE_ALL}"),
            ok(3, 1.0)]
    return base, head


def add_hostile_cells(data: RunData) -> RunData:
    """``data`` with a hostile suite name and a failed and a skipped cell whose keys and error
    texts hold every :data:`HOSTILE_TEXTS` string."""
    data.run.suite = HOSTILE_ALL
    cell = Cell("speed", "vision", f"torch{HOSTILE_TEXTS[7]}", "cpu", {"note": HOSTILE_ALL})
    data.results += [Result(cell, "failed", error=f"Error: {HOSTILE_ALL}"),
                     Result(Cell("speed", "vision", "jax", "cpu", {"note": HOSTILE_ALL}), "skipped",
                            error=HOSTILE_ALL)]
    return data


def markdown_html(md: str) -> str:
    """GitHub-flavoured Markdown (tables, strikethrough) to HTML by markdown-it, raw HTML passed
    through as a permissive renderer would."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(md)
