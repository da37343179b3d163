"""Forked cells against spawned ones, side by side on this machine, interleaved (issue 15):

    python scripts/fork_vs_spawn.py [--suite quick] [--select 'speed/*'] [--rounds 5]

Runs ``dlbench run SUITE --select GLOB`` alternately as dlbench runs it by default (speed cells
forked from a fork server per framework) and with ``--fresh-processes`` (a new interpreter per
cell), swapping the order every round, each side into its own store under ``--work``. Then, per
cell, compares the figures a fork server must not change: the first call (one sample per
process, so the rounds are its samples), the median throughput and the peak resident memory, with the Mann-Whitney U test
(scipy.stats) and the ratio of medians, and reports each side's wall time per round with the
machine's load. A first call that a server made cheaper (something it ran, or imported, that a
fresh process pays inside its first call) shows as a forked/spawned ratio below 1 that the test
calls significant.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scipy.stats import mannwhitneyu

from dlbench.store.database import Store

SIDES = {"forked": [], "spawned": ["--fresh-processes"]}


def load() -> str:
    try:
        avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        psi = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return f"loadavg {avg}; cpu {psi}"
    except OSError:
        return "load unknown"


def run(side: str, suite: str, select: str, work: Path) -> float:
    store = work / f"{side}.db"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dlbench", "run", suite, "--select", select, "--store",
                    f"sqlite:///{store}", "--output-dir", str(work / f"{side}-reports"), "--report", "json",
                    "--quiet", *SIDES[side]], cwd=work, check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONHASHSEED": "0"})
    return time.perf_counter() - t0


def figures(store: Path) -> dict[str, dict[str, list[float]]]:
    """Per cell key: its first calls, median throughputs and peak resident memory, one per run."""
    st = Store(f"sqlite:///{store}")
    out: dict[str, dict[str, list[float]]] = {}
    for info in st.runs():
        for r in st.results(info.id):
            if r.status != "ok" or r.cell.scenario == "canary":
                continue
            fig = out.setdefault(r.cell.key, {"first_call": [], "throughput": [], "peak_rss_mb": []})
            if "first_call_s" in r.metrics:
                fig["first_call"].append(float(r.metrics["first_call_s"]))
            if "peak_host_memory_mb" in r.metrics:
                fig["peak_rss_mb"].append(float(r.metrics["peak_host_memory_mb"]))
            m = r.measurement("throughput")
            if m is not None and m.stats is not None:
                fig["throughput"].append(float(m.stats.median))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--select", default="speed/*")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dlbench-fork-vs-spawn"))
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    walls: dict[str, list[float]] = {s: [] for s in SIDES}
    for i in range(a.rounds):
        for side in (("forked", "spawned") if i % 2 == 0 else ("spawned", "forked")):
            wall = run(side, a.suite, a.select, a.work)
            walls[side].append(wall)
            print(f"round {i + 1} {side}: wall {wall:.1f} s; {load()}", flush=True)
    got = {side: figures(a.work / f"{side}.db") for side in SIDES}
    rows: list[dict[str, object]] = []
    significant = 0
    print(f"\n{'cell':<78} {'figure':<10} {'forked':>10} {'spawned':>10} {'ratio':>6} {'p':>6}")
    for key in sorted(got["forked"].keys() & got["spawned"].keys()):
        for name in ("first_call", "throughput", "peak_rss_mb"):
            f, s = got["forked"][key][name], got["spawned"][key][name]
            if len(f) < 2 or len(s) < 2:
                continue
            ratio = statistics.median(f) / statistics.median(s)
            p = float(mannwhitneyu(f, s).pvalue)
            significant += p < 0.05
            rows.append({"cell": key, "figure": name, "forked": f, "spawned": s, "ratio": ratio, "p": p})
            print(f"{key[:78]:<78} {name:<10} {statistics.median(f):>10.4g} {statistics.median(s):>10.4g} "
                  f"{ratio:>6.2f} {p:>6.3f}")
    wall_ratio = statistics.median(walls["forked"]) / statistics.median(walls["spawned"])
    print(f"\nwall time forked/spawned: {wall_ratio:.2f}x (medians over {a.rounds} rounds: "
          f"{statistics.median(walls['forked']):.1f} s, {statistics.median(walls['spawned']):.1f} s); "
          f"p < 0.05 in {significant} of {len(rows)} figure comparisons")
    (a.work / "summary.json").write_text(json.dumps({"walls": walls, "wall_ratio": wall_ratio, "rows": rows},
                                                    indent=1))
    print(f"details: {a.work / 'summary.json'}")


if __name__ == "__main__":
    main()
