#!/usr/bin/env bash
# The wheel installs anywhere (issue 11): build it from the checkout's files, check that it holds one
# top-level package (dlbench, with the built-in plugins as dlbench.builtin and the ready suites as
# dlbench/suites/*.yaml), install it in a fresh venv outside the checkout (core dependencies only:
# no framework but scikit-learn), and from a folder outside the checkout run `dlbench list suites`
# and a small real suite by name and one by path. About a minute; exits non-zero on any failure.
#
#   .ci/check-wheel.sh            (PYTHON=python3.12 .ci/check-wheel.sh to pick the interpreter)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/dlbench-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
fail() { echo "check-wheel: $*" >&2; exit 1; }

# 1. Build from a copy of the files git would ship (tracked and new, never ignored ones), so a
#    stale build/ or egg-info in the checkout cannot leak into the wheel.
mkdir -p "$work/src" "$work/dist"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
   | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
   | tar --null -T - -cf -) | tar -xf - -C "$work/src"
"$py" -m pip wheel "$work/src" --no-deps -q -w "$work/dist" >/dev/null
wheel=$(ls "$work"/dist/dlbench-*.whl)
echo "check-wheel: built $(basename "$wheel")"

# 2. Its contents: one top-level package; every plugins/**/*.py as dlbench/builtin/...; every
#    suites/*.yaml as dlbench/suites/...; entry points into dlbench.builtin only.
"$py" - "$wheel" "$work/src" <<'EOF'
import sys, zipfile
from pathlib import Path

wheel, src = sys.argv[1], Path(sys.argv[2])
names = set(zipfile.ZipFile(wheel).namelist())
top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
assert top == {"dlbench"}, f"the wheel must hold one top-level package, dlbench; it holds {sorted(top)}"
want = {f"dlbench/builtin/{p.relative_to(src / 'plugins').as_posix()}"
        for p in (src / "plugins").rglob("*.py") if "__pycache__" not in p.parts}
want |= {f"dlbench/suites/{p.name}" for p in (src / "suites").glob("*.yaml")}
want |= {f"dlbench/builtin/{p.relative_to(src / 'plugins').as_posix()}"
         for p in (src / "plugins").rglob("*.sha256")}
missing = sorted(want - names)
assert not missing, f"missing from the wheel: {missing}"
for must in ("dlbench/suites/quick.yaml", "dlbench/suites/ci.yaml", "dlbench/builtin/__init__.py",
             "dlbench/report/templates/report.html.j2"):
    assert must in names, f"{must} is not in the wheel"
eps = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
text = zipfile.ZipFile(wheel).read(eps).decode()
group = text.split("[dlbench]", 1)[1].split("\n[", 1)[0]
targets = [line.split("=", 1)[1].strip() for line in group.splitlines() if "=" in line]
assert targets and all(t.startswith("dlbench.builtin.") for t in targets), targets
print(f"check-wheel: {len(names)} files, top level {sorted(top)}, {len(targets)} built-in entry points")
EOF

# 3. A fresh venv outside the checkout, the wheel with its core dependencies only.
"$py" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q "$wheel" -c "$root/constraints.txt" 2>&1 \
  | grep -v "^WARNING: Location" || true
"$work/venv/bin/python" -c "import dlbench" || fail "dlbench does not import from the fresh venv"

# 4. From a folder outside the checkout: the installed package, not the sources, must answer.
mkdir -p "$work/elsewhere"
cd "$work/elsewhere"
dl="$work/venv/bin/dlbench"
"$work/venv/bin/python" - "$root" <<'EOF'
import importlib.util, sys
from pathlib import Path

import dlbench
root = Path(sys.argv[1]).resolve()
here = Path(dlbench.__file__).resolve()
assert root not in here.parents, f"dlbench imported from the checkout ({here})"
assert importlib.util.find_spec("plugins") is None, "a top-level 'plugins' package is importable"
assert importlib.util.find_spec("dlbench.builtin.frameworks.sklearn") is not None
print(f"check-wheel: dlbench imports from {here.parent}")
EOF
suites=$("$dl" list suites) || fail "dlbench list suites failed"
for s in quick standard robustness scalability ci fidelity gpu; do
  grep -q "│ $s " <<<"$suites" || fail "dlbench list suites does not list $s:
$suites"
done
echo "check-wheel: dlbench list suites lists the ready suites"

export DLBENCH_DATA_DIR="${DLBENCH_DATA_DIR:-$(cd "$root/.." && pwd)/shared/data}"
log="$work/run.log"
if ! "$dl" run quick --select '*/vision/sklearn*' --store "sqlite:///$work/r.db" \
     --output-dir "$work/reports" >"$log" 2>&1; then
  cat "$log" >&2; fail "dlbench run quick --select '*/vision/sklearn*' failed"
fi
"$work/venv/bin/python" - "$work/reports" <<'EOF'
import json, sys
from pathlib import Path

doc = json.loads(next(Path(sys.argv[1]).glob("run-*/report.json")).read_text())
status = {r["key"]: r["status"] for r in doc["results"]}
cells = {k: v for k, v in status.items() if "/vision/sklearn[" in k}
kinds = sorted(k.split("/", 1)[0] for k in cells)
assert kinds == ["accuracy", "speed", "speed"], f"expected 2 speed cells and 1 accuracy cell: {status}"
assert set(cells.values()) == {"ok"}, f"every selected cell must be ok: {status}"
print(f"check-wheel: {len(cells)} sklearn cells ok: {', '.join(sorted(cells))}")
EOF
[ -s "$work/reports/quick.html" ] || fail "no report at reports/quick.html"
echo "check-wheel: dlbench run quick --select ... ok, its report written"

cat >"$work/mine.yaml" <<'EOF'
name: mine
matrix:
  - scenario: speed
    tasks: {vision: {dataset: digits, model: mlp}}
    frameworks: [sklearn]
    params: {batch_size: 16, mode: infer}
    budget: {max_time: 0.5}
EOF
"$dl" run "$work/mine.yaml" --store "sqlite:///$work/r.db" --output-dir "$work/reports" >"$log" 2>&1 \
  || { cat "$log" >&2; fail "dlbench run mine.yaml (a suite by path) failed"; }
[ -s "$work/reports/mine.html" ] || fail "no report at reports/mine.html"
echo "check-wheel: a suite by path ok; finished in $(( $(date +%s) - start )) s"
