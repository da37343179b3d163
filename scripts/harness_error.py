#!/usr/bin/env python3
"""How far from the truth dlbench's speed figure lands, next to pytest-benchmark's, on a step of
known cost: quiet, and under a CPU load this script starts itself.

    python scripts/harness_error.py            # 5 ms and 50 us steps, quiet and loaded
    python scripts/harness_error.py --out docs/harness-error.md

The step (``scripts/known_time/known_fw.py``) spins until its thread has used a known amount of
CPU time, so preemption makes it longer in wall time, never shorter. The *truth* is its cost per
call measured in thread CPU time (immune to preemption, includes the spin's own overshoot), taken
in this process before each condition. dlbench times it through a real suite run (``dlbench run``,
subprocess launcher, the speed scenario at batch 1: the headline is 1 / throughput);
pytest-benchmark times the very same function per call (its median). Both run in the same
condition one after the other, and the table records the machine's load for each row. A dlbench
row not within 1% of the truth is marked, with the flags dlbench itself raised on the figure.
This is a benchmark, not a test: it asserts nothing and its figures belong in the README.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGINS = HERE / "known_time"
sys.path.insert(0, str(PLUGINS))

from known_fw import spin  # noqa: E402

SUITE = """name: harness-error
matrix:
  - scenario: speed
    tasks: {{vision: {{dataset: digits, model: mlp}}}}
    frameworks: [knownfw]
    params: {{batch_size: 1, mode: infer}}
    budget: {{max_time: {max_time}, target_ci: 0.005, warmup_time: 0.3, latency_samples: 200}}
"""

PYTEST_FILE = """import os, sys
sys.path.insert(0, {plugins!r})
from known_fw import spin

def test_step(benchmark):
    benchmark(spin, float(os.environ["KNOWNFW_STEP_US"]) / 1e6)
"""


def burn() -> None:  # pragma: no cover - runs in the load processes
    while True:
        pass


def truth(step_us: float, calls: int = 400) -> float:
    """Seconds of CPU time one call costs (thread CPU time: preemption does not enter it)."""
    n = max(20, int(calls * 50 / step_us)) if step_us > 50 else calls * 10
    t0 = time.thread_time()
    for _ in range(n):
        spin(step_us / 1e6)
    return (time.thread_time() - t0) / n


def load_now() -> str:
    avg = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    psi = "?"
    if Path("/proc/pressure/cpu").exists():
        psi = Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1]
    return f"load {avg}, PSI some avg10 {psi}%"


def dlbench_step(step_us: float, tmp: Path, max_time: float) -> tuple[float, list[str], float]:
    """(seconds per step that dlbench reports, its flags, its contention figure)."""
    suite = tmp / "suite.yaml"
    suite.write_text(SUITE.format(max_time=max_time))
    db = tmp / f"r{step_us:g}-{time.time_ns()}.db"
    env = {**os.environ, "KNOWNFW_STEP_US": str(step_us)}
    subprocess.run([sys.executable, "-m", "dlbench", "--plugins-dir", str(PLUGINS), "run", str(suite),
                    "--store", f"sqlite:///{db}", "--output-dir", str(tmp), "--quiet"],
                   env=env, check=False, capture_output=True, text=True, timeout=600)
    from dlbench.store.database import Store

    store = Store(f"sqlite:///{db}")
    for r in store.results(store.latest_run_id()):
        m = r.measurement("throughput")
        if m is not None and m.stats is not None:
            return 1.0 / m.stats.median, m.flags, float(m.meta.get("contention", 0.0))
    raise SystemExit(f"the dlbench run for {step_us:g} us produced no throughput (see {tmp})")


def pytest_benchmark_step(step_us: float, tmp: Path) -> float:
    test = tmp / "test_known_step.py"
    test.write_text(PYTEST_FILE.format(plugins=str(PLUGINS)))
    out = tmp / f"pb{step_us:g}.json"
    env = {**os.environ, "KNOWNFW_STEP_US": str(step_us)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test),
                    f"--benchmark-json={out}", "--benchmark-min-time=0.000005"],
                   env=env, cwd=tmp, check=True, capture_output=True, text=True, timeout=600)
    return float(json.loads(out.read_text())["benchmarks"][0]["stats"]["median"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-us", default="5000,50", help="step costs in microseconds")
    ap.add_argument("--max-time", type=float, default=3.0, help="dlbench's sampling budget per cell")
    ap.add_argument("--load", type=int, default=os.cpu_count() or 2, help="CPU-burning processes")
    ap.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = ap.parse_args()
    steps = [float(s) for s in args.steps_us.split(",")]
    rows = ["| condition | step | truth (CPU time) | dlbench | error | flags | pytest-benchmark | error | machine |",
            "|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="dlbench-harness-") as t:
        tmp = Path(t)
        for condition in ("quiet", "loaded"):
            burners: list[multiprocessing.Process] = []
            if condition == "loaded":
                burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(args.load)]
                for p in burners:
                    p.start()
            try:
                for us in steps:
                    true = truth(us)
                    machine = load_now()
                    ours, flags, contention = dlbench_step(us, tmp, args.max_time)
                    theirs = pytest_benchmark_step(us, tmp)
                    e_ours, e_theirs = ours / true - 1, theirs / true - 1
                    mark = "" if abs(e_ours) <= 0.01 else " ⚠"
                    shown = ", ".join(flags) + (f" ({contention:.0%})" if "contended" in flags else "")
                    rows.append(f"| {condition} | {us:g} us | {true * 1e6:.2f} us | {ours * 1e6:.2f} us | "
                                f"{e_ours:+.2%}{mark} | {shown or '-'} | {theirs * 1e6:.2f} us | "
                                f"{e_theirs:+.2%} | {machine} |")
                    print(rows[-1], flush=True)
            finally:
                for p in burners:
                    p.terminate()
                    p.join()
    table = "\n".join(rows)
    print("\n" + table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
