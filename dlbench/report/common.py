"""Helpers shared by the reporters: metric direction, number formatting with CIs, the warnings a
figure carries (flags), grouping by task, readable configuration labels and the headline figure of
a result."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

from dlbench.cell import Cell
from dlbench.plugins import get_plugins
from dlbench.result import FLAGS, STATUSES, Measurement, Result
from dlbench.scenarios.base import Scenario
from dlbench.scenarios.figures import (
    Figure,
    as_float,
    default_figure,
    is_nan,
    measurement_figure,
    metric_figure,
)

BARE_PARAMS = ("device", "variant", "precision", "mode")
PARAM_ABBREV = {"batch_size": "bs"}
DASH = "–"


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
@dataclass(frozen=True)
class Headline(Figure):
    """The one figure that sums a cell up, with its 95% CI, spread and flags, ready to show."""

    flags: tuple[Flag, ...] = ()

    @classmethod
    def of(cls, f: Figure) -> Headline:
        """A scenario's figure, with the flags of the measurement it comes from."""
        return cls(**{k.name: getattr(f, k.name) for k in fields(f)}, flags=flags_of(f.source))

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


Scenarios = Mapping[str, Scenario]
"""The loaded scenarios by name (``RunData.scenarios``); None: the installed plugins' scenarios."""


def installed_scenarios() -> Scenarios:
    """The scenarios of the installed plugins (entry points), for reports built without a
    session's plugins (a third-party scenario from ``--plugins-dir`` needs them passed)."""
    return {s.name: s for s in get_plugins().scenarios}


def scenario_of(result: Result, scenarios: Scenarios | None = None) -> Scenario | None:
    """The scenario plugin that measured ``result`` (None: not loaded)."""
    return (installed_scenarios() if scenarios is None else scenarios).get(result.cell.scenario)


def is_classic(result: Result) -> bool:
    """Whether a classic-ML framework (``Framework.kind == "classic"``, e.g. scikit-learn)
    produced the result: recorded by the worker as ``environment["framework_kind"]``; results
    stored before that say so by a model without a spec."""
    kind = result.environment.get("framework_kind")
    if kind is not None:
        return kind == "classic"
    return result.model is not None and not result.model.spec_digest


def measurement_headline(result: Result, name: str) -> Headline | None:
    f = measurement_figure(result, name)
    return None if f is None else Headline.of(f)


def metric_headline(result: Result, name: str) -> Headline | None:
    f = metric_figure(result, name)
    return None if f is None else Headline.of(f)


def parity_rows(result: Result) -> list[dict[str, Any]]:
    rows = result.details.get("parity") or []
    return [r for r in rows if isinstance(r, dict)]


def headline(result: Result, scenarios: Scenarios | None = None) -> Headline | None:
    """The headline figure of a result: the one its scenario names
    (:meth:`~dlbench.scenarios.base.Scenario.headline`), otherwise its first measurement or
    metric."""
    sc = scenario_of(result, scenarios)
    f = (sc.headline(result) if sc is not None else None) or default_figure(result)
    return None if f is None else Headline.of(f)
