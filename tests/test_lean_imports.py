"""Lean imports: the command line, the plugin manager and a trivial cell's process load nothing heavy
they do not use; the device probe is cached per environment; the statistics that moved off
``scipy.stats`` give SciPy's own figures."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import FIXTURE_PLUGINS, ROOT, run_cli

from dlbench.plugins import PluginConfig, get_plugins
from dlbench.run import devices

HEAVY = ("sqlalchemy", "alembic", "scipy", "pandas", "torch", "tensorflow", "jax", "keras", "art", "plotly",
         "sklearn", "jinja2")
"""Top-level packages none of the processes below needs (``scipy`` alone: see the cell test)."""


def loaded_after(code: str, extra: tuple[str, ...] = ()) -> list[str]:
    """Heavy modules (``HEAVY`` and ``extra``) loaded once ``code`` ran in a fresh interpreter."""
    watch = set(HEAVY) | set(extra)
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(watch)!r})))")
    env = {k: v for k, v in os.environ.items() if k != "DLBENCH_DISABLE_PLUGIN_AUTOLOAD"}  # the built-ins too
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_command_line_imports_no_store_no_scipy_no_framework_and_no_numpy():
    assert loaded_after("import dlbench.cli.main", extra=("numpy",)) == []


def test_help_loads_nothing_heavy():
    code = ("from dlbench.cli.main import main\nimport contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    assert main(['--help']) == 0")
    assert loaded_after(code, extra=("numpy",)) == []


def test_opening_a_store_at_the_newest_revision_imports_no_alembic(tmp_path):
    from dlbench.store.database import Store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    Store(url)  # created and migrated here, with Alembic
    for create in (True, False):
        code = f"from dlbench.store.database import Store\nStore({url!r}, create={create})"
        loaded = loaded_after(code, extra=("alembic",))
        assert "sqlalchemy" in loaded and [m for m in loaded if m.startswith("alembic")] == []


def test_loading_every_plugin_imports_no_framework_scipy_store_or_report_library():
    assert loaded_after("from dlbench.plugins import get_plugins\nget_plugins()") == []


def test_a_trivial_cells_process_imports_neither_scipy_stats_nor_any_framework(tmp_path):
    """The cell scripts/startup_times.py times: its payload builder is the one used here."""
    spec = importlib.util.spec_from_file_location("startup_times", ROOT / "scripts" / "startup_times.py")
    assert spec is not None and spec.loader is not None
    startup_times = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(startup_times)
    payload = startup_times.trivial_payload(tmp_path)
    code = (f"from dlbench.run.worker import execute\nimport json\n"
            f"r = execute(json.loads(open({str(payload)!r}).read()))\n"
            f"assert r.status == 'ok', r.error\nassert r.measurements")
    loaded = loaded_after(code)
    # the median's CI is counted in integers: no SciPy at all (scipy.stats 0.8 s, scipy.special 0.4 s)
    assert [m for m in loaded if m.split(".")[0] == "scipy"] == []


# -- statistics off scipy.stats: the same figures as scipy.stats -----------------------------------
def test_binomial_quantiles_are_scipy_stats_binom_ppf_and_isf():
    from scipy.stats import binom

    from dlbench.stats import binomial_quantiles

    for n in [*range(1, 400), 999, 1000, 4097, 20011]:
        for q in (0.025, 0.005, 0.05, 0.5 - 1e-9):
            assert binomial_quantiles(n, q) == (int(binom.ppf(q, n, 0.5)), int(binom.isf(q, n, 0.5))), (n, q)


def test_binomial_quantiles_are_exact_where_a_cdf_equals_q():
    """Where the CDF equals ``q`` (0.5 at odd n, 2**-n), counting decides; SciPy's floating
    evaluation may fall on either side of such a tie, so the reference is the definition itself."""
    from fractions import Fraction
    from math import comb

    from dlbench.stats import binomial_quantiles

    for n in range(1, 60):
        cdf = [Fraction(sum(comb(n, i) for i in range(k + 1)), 2**n) for k in range(n + 1)]
        for q in {0.5, 2.0**-n, 0.025, float(cdf[n // 3]) if n > 2 else 0.5}:
            if not 0 < q <= 0.5:
                continue
            ppf = min(k for k in range(n + 1) if cdf[k] >= Fraction(q))
            isf = min(k for k in range(n + 1) if 1 - cdf[k] <= Fraction(q))
            assert binomial_quantiles(n, q) == (ppf, isf), (n, q)
    with pytest.raises(ValueError, match="q must be"):
        binomial_quantiles(10, 0.0)


def test_wilson_interval_is_scipy_binomtests():
    from scipy.stats import binomtest

    from dlbench.stats import proportion_ci

    for n in (1, 2, 7, 50, 101, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for conf in (0.9, 0.95, 0.99):
                ref = binomtest(k, n).proportion_ci(conf, method="wilson")
                assert proportion_ci(k, n, conf) == pytest.approx((ref.low, ref.high), abs=1e-12), (k, n, conf)
    with pytest.raises(ValueError, match="between 0 and n"):
        proportion_ci(5, 4)


# -- the device probe cache ------------------------------------------------------------------------
class Counting:
    """Stands in for the probe processes: what was asked, and a fixed answer."""

    def __init__(self, answer: dict[str, list[str] | str]) -> None:
        self.answer, self.asked = answer, []

    def __call__(self, plugins, names, timeout):
        self.asked.append(list(names))
        return {n: self.answer[n] for n in names}


@pytest.fixture
def plugins():
    return get_plugins(PluginConfig((str(FIXTURE_PLUGINS),), (), autoload=False))


def test_probe_is_cached_and_invalidated_when_the_installed_distributions_change(tmp_path, monkeypatch, plugins):
    cache = tmp_path / "devices.json"
    fake = Counting({"a": ["cpu", "cuda"], "b": ["cpu"]})
    monkeypatch.setattr(devices, "_probe_processes", fake)
    monkeypatch.setattr(devices, "distributions_digest", lambda: "packages-v1")
    assert devices.probe(plugins, ["a", "b"], cache=cache) == {"a": ["cpu", "cuda"], "b": ["cpu"]}
    assert devices.probe(plugins, ["a", "b"], cache=cache) == {"a": ["cpu", "cuda"], "b": ["cpu"]}
    assert fake.asked == [["a", "b"]]  # the second answer came from the cache
    monkeypatch.setattr(devices, "distributions_digest", lambda: "packages-v2")  # pip install ...
    devices.probe(plugins, ["a", "b"], cache=cache)
    assert fake.asked == [["a", "b"], ["a", "b"]]
    monkeypatch.setattr(devices, "distributions_digest", lambda: "packages-v1")  # both environments kept
    devices.probe(plugins, ["a"], cache=cache)
    assert len(fake.asked) == 2
    devices.probe(plugins, ["a"], cache=cache, refresh=True)
    assert fake.asked[-1] == ["a"]


def test_the_real_distribution_digest_changes_with_a_package(monkeypatch):
    import importlib.metadata

    before = devices.distributions_digest()
    assert devices.distributions_digest() == before
    real = importlib.metadata.distributions

    class Dist:
        metadata = {"Name": "a-new-package", "Version": "1.0"}

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: [*real(), Dist()])
    assert devices.distributions_digest() != before


def test_device_variables_and_plugin_files_are_part_of_the_key(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "distributions_digest", lambda: "same")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = PluginConfig((str(tmp_path),), (), autoload=False)
    first = devices.environment_digest(cfg)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert devices.environment_digest(cfg) != first
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert devices.environment_digest(cfg) == first
    (tmp_path / "myfw.py").write_text("# a framework plugin\n")
    assert devices.environment_digest(cfg) != first


def test_failed_probes_are_not_kept_and_a_broken_cache_is_probed_again(tmp_path, monkeypatch, plugins):
    cache = tmp_path / "devices.json"
    fake = Counting({"a": "device probe failed: ImportError: no module", "b": ["cpu"]})
    monkeypatch.setattr(devices, "_probe_processes", fake)
    assert devices.probe(plugins, ["a", "b"], cache=cache)["a"].startswith("device probe failed")
    devices.probe(plugins, ["a", "b"], cache=cache)
    assert fake.asked == [["a", "b"], ["a"]]  # b came from the cache, a was asked again
    cache.write_text("{not json")
    assert devices.probe(plugins, ["b"], cache=cache) == {"b": ["cpu"]}
    assert fake.asked[-1] == ["b"]
    assert json.loads(cache.read_text())  # rewritten whole


def test_list_devices_fills_the_user_cache_dir_once(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "DLBENCH_DISABLE_PLUGIN_AUTOLOAD": "1"}
    args = ("--plugins-dir", str(FIXTURE_PLUGINS), "list", "devices")
    first = run_cli(*args, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    cache = tmp_path / "cache" / "dlbench" / "devices.json"
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["devices"] == {"numpyfw": ["cpu"]}
    stamp = cache.stat().st_mtime_ns
    again = run_cli(*args, env=env, cwd=tmp_path)
    assert again.returncode == 0 and again.stdout == first.stdout
    assert cache.stat().st_mtime_ns == stamp  # answered from the cache: nothing probed, nothing written
    refreshed = run_cli(*args, "--refresh", env=env, cwd=tmp_path)
    assert refreshed.returncode == 0, refreshed.stderr
    assert cache.stat().st_mtime_ns != stamp


def test_probe_asks_a_fresh_process_and_keeps_its_answer(tmp_path, plugins):
    assert devices.probe(plugins, ["numpyfw"], cache=tmp_path / "d.json") == {"numpyfw": ["cpu"]}
    (entry,) = json.loads((tmp_path / "d.json").read_text()).values()
    assert entry == {"devices": {"numpyfw": ["cpu"]}}
