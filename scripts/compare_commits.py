"""A suite's wall time on two commits, side by side on this machine, interleaved (issue 15):

    python scripts/compare_commits.py BASE_COMMIT [--head HEAD] [--suite quick] [--rounds 3]

Checks both commits out (``git worktree``), gives each its own virtual environment that reuses
this one's installed packages (a ``.pth`` file; only dlbench itself is installed per commit,
editable, without dependencies), then runs ``dlbench run SUITE`` on each, alternating the order
every round (base, head; head, base; ...) so drift and other load hit both alike. Reports per side
the wall and CPU time of every round with the machine's load, the head/base wall-time ratio
(geometric mean over rounds, with its range), whether both ran the same cells, and ``dlbench
compare`` of the last round's two runs (figures that moved beyond their CIs). Everything lands in
``--work`` (default ``/tmp/dlbench-commits``); every command runs there, never in a checkout, so
each side imports only its own dlbench.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sh(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    return subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def side(name: str, commit: str, work: Path) -> Path:
    """A worktree of ``commit`` and a venv whose python runs that commit's dlbench."""
    tree, venv = work / f"{name}-tree", work / f"{name}-venv"
    if tree.exists():
        sh("git", "worktree", "remove", "--force", str(tree), cwd=REPO)
    sh("git", "worktree", "prune", cwd=REPO)  # a worktree folder deleted by hand
    sh("git", "worktree", "add", "--detach", str(tree), commit, cwd=REPO)
    shutil.rmtree(venv, ignore_errors=True)
    sh(sys.executable, "-m", "venv", str(venv))
    py = venv / "bin" / "python"
    site = Path(sh(str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work).strip())
    (site / "dlbench-shared-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    sh(str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "-e", str(tree), cwd=work)
    where = sh(str(py), "-c", "import dlbench; print(dlbench.__file__)", cwd=work).strip()
    if not where.startswith(str(tree)):
        raise SystemExit(f"{name}: its python imports dlbench from {where}, not from {tree}")
    return py


def load() -> str:
    try:
        avg = Path("/proc/loadavg").read_text().split()[:3]
        psi = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return f"loadavg {' '.join(avg)}; cpu {psi}"
    except OSError:
        return "load unknown"


def start(py: Path, suite: str, store: Path, out: Path) -> tuple[subprocess.Popen[str], float]:
    log = open(store.with_suffix(".stderr"), "w")  # noqa: SIM115 - closed by finish()
    proc = subprocess.Popen([str(py), "-m", "dlbench", "run", suite, "--store", f"sqlite:///{store}",
                             "--output-dir", str(out), "--report", "json", "--quiet"], cwd=store.parent,
                            stdout=subprocess.DEVNULL, stderr=log, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    proc.log = log  # type: ignore[attr-defined]
    return proc, time.perf_counter()


def finish(proc: subprocess.Popen[str], t0: float) -> dict[str, object]:
    """Wait for a run: its wall time, and the CPU time of it and of every process it waited for
    (the cells), from wait4's resource usage."""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.log.close()  # type: ignore[attr-defined]
    tail = Path(proc.log.name).read_text().strip().splitlines()[-1:]  # type: ignore[attr-defined]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rc": proc.returncode,
            "load_after": load(), "tail": tail if proc.returncode else []}


def run(py: Path, suite: str, store: Path, out: Path) -> dict[str, object]:
    return finish(*start(py, suite, store, out))


def cells(py: Path, store: Path) -> tuple[int, set[str]]:
    code = ("import sys; from dlbench.store.database import Store; st = Store(sys.argv[1]); "
            "rid = st.latest_run_id(); print(rid); [print(r.cell.key) for r in st.results(rid)]")
    lines = sh(str(py), "-c", code, f"sqlite:///{store}", cwd=store.parent).split("\n")
    return int(lines[0]), {k for k in lines[1:] if k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base")
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("--suite", default="quick")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/dlbench-commits"))
    ap.add_argument("--concurrent", action="store_true",
                    help="run both sides at the same time in each round (when the machine is shared "
                         "and its load drifts faster than a round lasts)")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    commits = {n: sh("git", "rev-parse", c, cwd=REPO).strip() for n, c in (("base", a.base), ("head", a.head))}
    pys = {n: side(n, c, a.work) for n, c in commits.items()}
    rounds: dict[str, list[dict[str, object]]] = {"base": [], "head": []}
    for i in range(a.rounds):
        order = ("base", "head") if i % 2 == 0 else ("head", "base")
        if a.concurrent:  # both sides at once: whatever else loads the machine loads both alike
            before = load()
            started = {n: start(pys[n], a.suite, a.work / f"{n}.db", a.work / f"{n}-reports") for n in order}
            for n, (proc, t0) in started.items():
                res = finish(proc, t0)
                res["load_before"] = before
                rounds[n].append(res)
                print(f"round {i + 1} {n} (concurrent): wall {res['wall_s']:.1f} s, cpu {res['cpu_s']:.1f} s, "
                      f"rc {res['rc']}; "
                      f"{res['load_after']}", flush=True)
            continue
        for n in order:
            before = load()
            res = run(pys[n], a.suite, a.work / f"{n}.db", a.work / f"{n}-reports")
            res["load_before"] = before
            rounds[n].append(res)
            print(f"round {i + 1} {n}: wall {res['wall_s']:.1f} s, cpu {res['cpu_s']:.1f} s, rc {res['rc']}; "
                  f"{res['load_after']}", flush=True)
    pairs = list(zip(rounds["base"], rounds["head"], strict=True))
    ratios = [float(h["wall_s"]) / float(b["wall_s"]) for b, h in pairs]  # type: ignore[arg-type]
    cpu_ratios = [float(h["cpu_s"]) / float(b["cpu_s"]) for b, h in pairs]  # type: ignore[arg-type]
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    (bid, bcells), (hid, hcells) = cells(pys["base"], a.work / "base.db"), cells(pys["head"], a.work / "head.db")
    summary = {"commits": commits, "suite": a.suite, "rounds": rounds, "wall_ratio_head_over_base": geo,
               "wall_ratio_range": [min(ratios), max(ratios)], "cpu_ratios_head_over_base": cpu_ratios,
               "same_cells": bcells == hcells,
               "only_base": sorted(bcells - hcells), "only_head": sorted(hcells - bcells)}
    export = a.work / "base-run.json"
    export.write_text(sh(str(pys["base"]), "-m", "dlbench", "export", str(bid), "--store",
                         f"sqlite:///{a.work / 'base.db'}", cwd=a.work))
    cmp = subprocess.run([str(pys["head"]), "-m", "dlbench", "compare", str(export), str(hid), "--store",
                          f"sqlite:///{a.work / 'head.db'}", "--json", str(a.work / "compare.json")],
                         capture_output=True, text=True, cwd=a.work)
    summary["compare_summary"] = ([ln for ln in cmp.stdout.splitlines() if "gated rows" in ln or "cells," in ln][-1:]
                                  or cmp.stderr.strip()[-300:])
    (a.work / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print(f"head/base wall time: {geo:.2f}x (rounds {', '.join(f'{r:.2f}' for r in ratios)}); CPU time "
          f"{', '.join(f'{r:.2f}' for r in cpu_ratios)}x; "
          f"same cells: {bcells == hcells} ({len(hcells)}); compare: {summary['compare_summary']}")
    print(f"details: {a.work / 'summary.json'}")


if __name__ == "__main__":
    main()
