"""What dlbench costs before any figure, on this machine, with the machine's load (issue 15):

    python scripts/startup_times.py [--repeat 5]

Runs, with the interpreter that runs this script (so another commit's virtual environment
measures that commit): ``dlbench --help`` and its ``-X importtime`` top-level imports,
``dlbench list frameworks`` probing (``--refresh``) and from the cached probe, loading every
plugin in a fresh interpreter, and a trivial cell's whole process (``python -m
dlbench.run.worker`` on an accuracy cell of the test fixtures' NumPy framework), each the median
of ``--repeat`` runs. Commands run in a temporary folder, so each side imports its own dlbench.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "plugins"


def load() -> str:
    try:
        avg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        return f"loadavg {avg}; cpu {Path('/proc/pressure/cpu').read_text().splitlines()[0]}"
    except OSError:
        return "load unknown"


def timed(cmd: list[str], cwd: Path, repeat: int) -> tuple[float, list[float]]:
    took = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
        took.append(time.perf_counter() - t0)
        if out.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()[-400:]}")
    return statistics.median(took), took


def top_imports(cmd: list[str], cwd: Path, n: int = 4) -> list[tuple[str, float]]:
    err = subprocess.run([sys.executable, "-X", "importtime", *cmd], cwd=cwd, capture_output=True, text=True).stderr
    rows = []
    for line in err.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            name = parts[2]
            if name.startswith(" ") and not name.startswith("  "):  # a top-level import
                rows.append((name.strip(), int(parts[1]) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:n]


def trivial_payload(folder: Path) -> Path:
    from dlbench.plugins import PluginConfig, get_plugins
    from dlbench.run import suite as suites

    cfg = PluginConfig((str(FIXTURES),), ())
    spec = folder / "trivial.yaml"
    spec.write_text("name: trivial\nmatrix:\n  - scenario: accuracy\n    tasks: {blobs: {}}\n"
                    "    frameworks: [numpyfw]\n    params: {epochs: 1}\n")
    plugins = get_plugins(cfg)
    cell = suites.load(str(spec), plugins).cells(plugins)[0]
    payload = folder / "payload.json"
    payload.write_text(json.dumps({"cell": cell.to_dict(), "plugins": cfg.to_dict(),
                                   "artifacts_dir": str(folder / "artifacts")}))
    return payload


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        here = Path(tmp)
        print(f"{py}; {load()}")
        m, xs = timed([py, "-m", "dlbench", "--help"], here, a.repeat)
        print(f"dlbench --help: median {m:.3f} s of {[round(x, 3) for x in xs]}")
        tops = ", ".join(f"{n} {s:.3f} s" for n, s in top_imports(["-m", "dlbench", "--help"], here))
        print(f"  -X importtime, top-level imports (cumulative): {tops}")
        try:
            m, xs = timed([py, "-m", "dlbench", "list", "frameworks", "--refresh"], here, 2)
            print(f"dlbench list frameworks --refresh (probing): median {m:.2f} s of {[round(x, 2) for x in xs]}")
        except SystemExit as exc:  # an older dlbench: no probe cache, so no --refresh
            print(f"dlbench list frameworks --refresh: not available ({str(exc)[-80:]})")
        m, xs = timed([py, "-m", "dlbench", "list", "frameworks"], here, a.repeat)
        print(f"dlbench list frameworks (cached where this dlbench caches): median {m:.2f} s of {[round(x, 2) for x in xs]}")
        code = "from dlbench.plugins import PluginConfig, get_plugins; get_plugins(PluginConfig())"
        m, xs = timed([py, "-c", code], here, a.repeat)
        print(f"a fresh interpreter loading every plugin: median {m:.3f} s")
        payload = trivial_payload(here)
        m, xs = timed([py, "-m", "dlbench.run.worker", str(payload), str(here / "result.json")], here, a.repeat)
        status = json.loads((here / "result.json").read_text())["status"]
        print(f"a trivial cell's process ({status}): median {m:.2f} s of {[round(x, 2) for x in xs]}")
        print(f"load after: {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
