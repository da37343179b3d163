"""Helpers shared by the reporters: metric direction, number formatting with CIs, the warnings a
figure carries (flags), grouping by task, readable configuration labels and the headline figure of
a result."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from dlbench.cell import Cell
from dlbench.result import FLAGS, STATUSES, Measurement, Result

LOWER_IS_BETTER = frozenset({"rmse", "mae", "mse", "loss", "error", "err", "perplexity", "latency",
                             "time", "duration", "memory", "mb", "s", "ms", "seconds"})
"""Words of a metric name (split at non-alphanumerics) that mean "lower is better"."""

NON_TASK_METRICS = ("train_time_s", "time_to_target_s", "compile_time_s", "peak_host_memory_mb",
                    "peak_device_memory_mb", "clean_accuracy", "auc", "n_test", "n_train", "epochs",
                    "first_epoch_s", "first_call_s")
"""Metrics a scenario adds next to the task's own metrics."""

BARE_PARAMS = ("device", "variant", "precision", "mode")
PARAM_ABBREV = {"batch_size": "bs"}
DASH = "–"


def metric_direction(name: str) -> bool:
    """True when a higher value of metric ``name`` is better (accuracy, f1, hr@10, auc,
    throughput); False for errors, losses, times and memory (rmse, mae, loss, train_time_s)."""
    words = set(re.split(r"[^a-z0-9]+", name.lower()))
    return not (words & LOWER_IS_BETTER)


def is_nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def as_float(x: Any) -> float:
    """``x`` as a float; NaN for None, strings and other non-numbers."""
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


# -- formatting ----------------------------------------------------------------------------------
def fmt_num(x: Any, sig: int = 3) -> str:
    """A readable number: ``12,345``, ``123.4``, ``1.23``, ``0.0123``, ``1.2e-05``; a dash for
    missing or NaN values."""
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    v = as_float(x)
    if math.isnan(v):
        return DASH
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9 or a < 1e-3:
        return f"{v:.{max(sig - 1, 0)}e}"
    if a >= 1000:
        return f"{v:,.0f}"
    digits = max(sig - 1 - int(math.floor(math.log10(a))), 0)
    return f"{v:.{digits}f}"


def fmt_ci(lo: Any, hi: Any, sig: int = 3) -> str:
    """``[lo – hi]``; empty when either end is missing."""
    if is_nan(as_float(lo)) or is_nan(as_float(hi)):
        return ""
    return f"[{fmt_num(lo, sig)} – {fmt_num(hi, sig)}]"


def fmt_value_ci(value: Any, lo: Any = None, hi: Any = None, unit: str = "", sig: int = 3) -> str:
    """``1,234 samples/s [1,200 – 1,260]``."""
    text = fmt_num(value, sig)
    if unit and text != DASH:
        text += f" {unit}"
    ci = fmt_ci(lo, hi, sig)
    return f"{text} {ci}" if ci else text


def fmt_pct(x: Any, digits: int = 1) -> str:
    v = as_float(x)
    return DASH if math.isnan(v) else f"{100 * v:.{digits}f}%"


def fmt_duration(seconds: Any) -> str:
    v = as_float(seconds)
    if math.isnan(v):
        return DASH
    if v < 60:
        return f"{fmt_num(v)} s"
    m, s = divmod(int(round(v)), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def first_line(text: str | None, limit: int = 160) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# -- flags: the warnings a figure carries -----------------------------------------------------------
FLAG_MARK = "⚠"


@dataclass(frozen=True)
class Flag:
    """One warning on a figure, ready to show: ``label`` next to the figure (``contended 31%``),
    ``title`` the explanation (a tooltip, a legend line). Plain text: every renderer escapes it."""

    name: str
    label: str
    title: str


def _flag_label(name: str, meta: dict[str, Any]) -> str:
    if name == "contended" and not is_nan(as_float(meta.get("contention"))):
        return f"contended {fmt_pct(meta['contention'], 0)}"
    if name == "repeats_disagree" and meta.get("repeats"):
        return f"repeats disagree (k={meta['repeats']})"
    return flag_name(name)


def flag_name(name: str) -> str:
    """A flag's name for readers: ``not converged``; unknown names as they are."""
    return name.replace("_", " ") if name in FLAGS else name


def _flag_title(name: str, meta: dict[str, Any]) -> str:
    title = FLAGS.get(name, f"a warning dlbench does not know: {name}")
    if name == "contended":
        source = meta.get("contention_source")
        measured = [f"{fmt_pct(meta['contention'])} of the windows' wall time runnable but waiting "
                    f"for a CPU" if not is_nan(as_float(meta.get("contention"))) else "",
                    f"measured by {source}" if source and source != "none" else "",
                    f"{meta['windows_discarded']} contended windows retaken"
                    if meta.get("windows_discarded") else ""]
        extra = "; ".join(p for p in measured if p)
        title += f" ({extra})" if extra else ""
    return title


def flags_of(m: Measurement | None) -> tuple[Flag, ...]:
    """The warnings of a figure, in the order they were raised; a figure stored as not converged
    without the flag (older runs) gets ``not_converged`` too."""
    if m is None:
        return ()
    names = [str(f) for f in m.flags]
    if m.meta.get("converged") is False and "not_converged" not in names:
        names.append("not_converged")
    return tuple(Flag(n, _flag_label(n, m.meta), _flag_title(n, m.meta)) for n in names)


def flags_text(flags: Sequence[Flag]) -> str:
    """``⚠ contended 31%, not converged``; empty for an unflagged figure."""
    return f"{FLAG_MARK} " + ", ".join(f.label for f in flags) if flags else ""


def with_flags(text: str, flags: Sequence[Flag]) -> str:
    """A figure's text followed by its flags, as the one line a plain-text reader sees."""
    return f"{text} {flags_text(flags)}" if flags else text


@dataclass
class FlagSummary:
    """How many of a run's figures (measurements of finished cells) carry which flags."""

    figures: int
    flagged: int
    counts: dict[str, int]
    legend: dict[str, str]  # readable flag name -> explanation, for each flag seen

    @property
    def text(self) -> str:
        """``3 of 28 figures are flagged: 2 contended, 1 not converged — ...``; empty when none."""
        if not self.flagged:
            return ""
        counts = ", ".join(f"{n} {flag_name(name)}" for name, n in self.counts.items())
        tail = "; read contended throughput as a lower bound" if "contended" in self.counts else ""
        verb = "is" if self.flagged == 1 else "are"
        return (f"{self.flagged} of {self.figures} figures {verb} flagged: {counts} — each is "
                f"marked {FLAG_MARK} where it is shown{tail}")


def flag_summary(results: Iterable[Result]) -> FlagSummary:
    """Count the flagged figures (measurements with samples) of the finished cells; counts and
    legend in the order of :data:`FLAGS`, unknown flags after them."""
    figures = flagged = 0
    counts: Counter[str] = Counter()
    titles: dict[str, str] = {}
    for r in results:
        if r.status != "ok":
            continue
        for m in r.measurements:
            if m.stats is None or not m.stats.n:
                continue
            figures += 1
            flags = flags_of(m)
            flagged += bool(flags)
            for f in flags:
                counts[f.name] += 1
                titles.setdefault(f.name, FLAGS.get(f.name, f.title))
    known = [n for n in FLAGS if n in counts] + sorted(n for n in counts if n not in FLAGS)
    return FlagSummary(figures, flagged, {n: counts[n] for n in known},
                       {flag_name(n): titles[n] for n in known})


# -- grouping and labels ---------------------------------------------------------------------------
def group_by_task(results: Iterable[Result],
                  scenario: str | None = None) -> dict[str, list[Result]]:
    """Results per task name (sorted), optionally only those of one scenario."""
    groups: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        if scenario is None or r.cell.scenario == scenario:
            groups[r.cell.task].append(r)
    return {k: groups[k] for k in sorted(groups)}


def group_by(results: Iterable[Result], *params: str) -> dict[tuple[Any, ...], list[Result]]:
    """Results per tuple of parameter values (``mode``, ``batch_size``...), keys sorted."""
    groups: dict[tuple[Any, ...], list[Result]] = defaultdict(list)
    for r in results:
        groups[tuple(r.cell.params.get(p) for p in params)].append(r)
    return {k: groups[k] for k in sorted(groups, key=lambda t: tuple(_sort_key(v) for v in t))}


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is None:
        return (2, "")
    if isinstance(v, (int, float)):
        return (0, v)
    return (1, str(v))


def status_counts(results: Iterable[Result]) -> dict[str, int]:
    """Number of results per status, in the canonical status order (zero counts left out)."""
    c = Counter(r.status for r in results)
    ordered = {s: c[s] for s in STATUSES if c.get(s)}
    ordered.update({s: n for s, n in c.items() if s not in ordered})
    return ordered


def _param_text(k: str, v: Any) -> str:
    if k in BARE_PARAMS:
        return str(v)
    if isinstance(v, float):
        v = f"{v:g}"
    return f"{PARAM_ABBREV.get(k, k)}={v}"


def config_labels(cells: Sequence[Cell], exclude: Iterable[str] = ()) -> list[str]:
    """A short label per cell: the framework plus only the settings that differ between the
    cells, e.g. ``torch[compiled]`` vs ``torch[eager]`` vs ``jax[compiled]``."""
    excl = set(exclude)
    keys: list[str] = ["device"]
    for c in cells:
        for k in c.params:
            if k not in keys and k not in excl:
                keys.append(k)
    keys = [k for k in keys if k not in excl]

    def value(c: Cell, k: str) -> Any:
        return c.device if k == "device" else c.params.get(k)

    varying = [k for k in keys if len({repr(value(c, k)) for c in cells}) > 1]
    labels = []
    for c in cells:
        parts = [_param_text(k, value(c, k)) for k in varying if value(c, k) is not None]
        labels.append(f"{c.framework}[{','.join(parts)}]" if parts else c.framework)
    return labels


# -- headline figures ------------------------------------------------------------------------------
@dataclass
class Headline:
    """The one figure that sums a cell up, with its 95% CI and spread."""

    name: str
    value: float
    unit: str = ""
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    spread: float = float("nan")  # relative: IQR / |median| (or std / |mean|)
    n: int | None = None
    higher_is_better: bool = True
    passed: bool | None = None
    flags: tuple[Flag, ...] = ()

    @property
    def value_text(self) -> str:
        """The figure alone: ``516 samples/s``."""
        return fmt_value_ci(self.value, unit=self.unit)

    @property
    def flags_text(self) -> str:
        return flags_text(self.flags)

    @property
    def text(self) -> str:
        """The figure with its warnings: ``516 samples/s ⚠ contended 31%``."""
        return with_flags(self.value_text, self.flags)

    @property
    def ci_text(self) -> str:
        return fmt_ci(self.ci_low, self.ci_high)

    @property
    def spread_text(self) -> str:
        return "" if math.isnan(self.spread) else f"±{fmt_pct(self.spread / 2)} IQR"


def task_metrics(result: Result) -> list[str]:
    """The task's own metrics of an accuracy result (accuracy, macro_f1, rmse...), in order."""
    named = result.details.get("task_metrics")
    if named:
        return [k for k in named if k in result.metrics]
    return [k for k in result.metrics if k not in NON_TASK_METRICS and not k.endswith("_time_s")]


def metric_ci(result: Result, name: str) -> tuple[float, float]:
    """95% CI of a metric from ``details["metric_ci"]``, or from per-example ``test_correct``
    samples for accuracy (Wilson interval); NaNs when neither exists."""
    ci = (result.details.get("metric_ci") or {}).get(name)
    if ci and len(ci) == 2:
        return as_float(ci[0]), as_float(ci[1])
    if name == "accuracy":
        m = result.measurement("test_correct")
        if m is not None and m.samples:
            from dlbench.measure.stats import proportion_ci

            return proportion_ci(int(round(sum(m.samples))), len(m.samples))
    return float("nan"), float("nan")


def measurement_headline(result: Result, name: str) -> Headline | None:
    m = result.measurement(name)
    if m is None or m.stats is None or m.stats.n == 0:
        return None
    s = m.stats
    if not is_nan(s.iqr) and s.median:
        spread = s.iqr / abs(s.median)
    elif s.mean:
        spread = 2 * s.std / abs(s.mean) if not is_nan(s.std) else float("nan")
    else:
        spread = float("nan")
    return Headline(name, s.median, m.unit, s.ci_low, s.ci_high, spread, s.n, m.higher_is_better,
                    flags=flags_of(m))


def metric_headline(result: Result, name: str) -> Headline | None:
    if name not in result.metrics:
        return None
    lo, hi = metric_ci(result, name)
    m = result.measurement("test_correct")
    n = len(m.samples) if m is not None and m.samples else None
    return Headline(name, as_float(result.metrics[name]), "", lo, hi, n=n,
                    higher_is_better=metric_direction(name))


def parity_rows(result: Result) -> list[dict[str, Any]]:
    rows = result.details.get("parity") or []
    return [r for r in rows if isinstance(r, dict)]


def point_measurement(result: Result, point: dict[str, Any]) -> Measurement | None:
    """The raw measurement of a scaling point (``throughput@bs=64`` for batch size 64)."""
    axis, value = str(point.get("axis", "")), point.get("value")
    v = f"{value:g}" if isinstance(value, float) else str(value)
    return result.measurement(f"throughput@{PARAM_ABBREV.get(axis, axis)}={v}")


def headline(result: Result) -> Headline | None:
    """The headline figure of a result: throughput for speed, the first task metric for
    accuracy, the worst relative error for parity, the clean metric for robustness, the best
    throughput for scalability; otherwise the first measurement or metric."""
    sc = result.cell.scenario
    if sc == "speed":
        return measurement_headline(result, "throughput") or measurement_headline(result, "latency")
    if sc == "accuracy":
        names = task_metrics(result)
        if names:
            return metric_headline(result, names[0])
    if sc == "parity":
        rows = parity_rows(result)
        errs = [as_float(r.get("rel_error")) for r in rows]
        errs = [e for e in errs if not math.isnan(e)]
        if errs:
            flags = [r.get("passed") for r in rows if r.get("passed") is not None]
            return Headline("max rel_error", max(errs), "", higher_is_better=False, n=len(rows),
                            passed=all(flags) if flags else None)
    if sc == "fidelity" and result.measurement("fidelity_ratio") is not None:
        return measurement_headline(result, "fidelity_ratio")
    if sc == "robustness":  # the clean headline metric: clean_accuracy, clean_rmse, clean_hr@10...
        metric = result.details.get("metric")
        clean = f"clean_{metric['name']}" if isinstance(metric, dict) and "name" in metric else None
        for name in (n for n in (clean, "clean_accuracy", "auc") if n):
            if name in result.metrics:
                return metric_headline(result, name)
    if sc == "scalability":
        pts = [p for p in result.series.get("scaling", [])
               if not is_nan(as_float(p.get("throughput")))]
        if pts:
            top = max(pts, key=lambda p: as_float(p["throughput"]))
            return Headline("max throughput", as_float(top["throughput"]), "samples/s",
                            n=len(pts), flags=flags_of(point_measurement(result, top)))
        acc = [p for p in result.series.get("scaling", []) if not is_nan(as_float(p.get("metric")))]
        if acc:
            last = max(acc, key=lambda p: as_float(p.get("value")))
            return Headline(f"metric@{last.get('axis', 'value')}={last.get('value')}",
                            as_float(last["metric"]), "", n=len(acc))
    for m in result.measurements:
        h = measurement_headline(result, m.name)
        if h is not None:
            return h
    for name in result.metrics:
        return metric_headline(result, name)
    return None
