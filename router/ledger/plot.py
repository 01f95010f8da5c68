"""The report as a PNG: accuracy against cost per query, and the difficulty score's reliability diagram;
and, for `router report --sources`, predicted vs observed success by day (calibration drift).

matplotlib is optional (the `plot` extra) and imported only here, only when a plot is asked for.
No pyplot: a Figure drawn on an Agg canvas touches no global state and needs no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import ConfigError
from router.ledger.entry import VERDICT_SOURCES
from router.ledger.intervals import wilson
from router.ledger.monitor import Monitor
from router.ledger.report import Report, iso

_COLOURS = {"tier": "tab:blue", "policy": "tab:red", "always": "tab:gray"}
_MARKERS = {"tier": "o", "policy": "*", "always": "s"}


def _matplotlib() -> tuple[Any, Any, Any]:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import NullFormatter
    except ImportError:
        raise ConfigError(
            "--plot needs matplotlib, which is not installed: pip install 'difficulty-router[plot]' "
            "(or pip install matplotlib)."
        ) from None
    return Figure, FigureCanvasAgg, NullFormatter


def plot_report(report: Report, path: Path) -> Path:
    """Draw both panels for a records report and save them as a PNG at `path`."""
    figure_class, canvas_class, null_formatter = _matplotlib()
    figure = figure_class(figsize=(12, 5), dpi=100, layout="constrained")
    canvas_class(figure)
    left, right = figure.subplots(1, 2)
    window = f"since {iso(report.since)}" if report.since is not None else "all retained records"
    figure.suptitle(f"router ledger, {window} (until {iso(report.until)})")

    points = [p for p in report.points if p.counts.accuracy is not None]
    for point in points:
        left.scatter(point.counts.cost_per_request, point.counts.accuracy, s=90 if point.kind == "policy" else 50,
                     c=_COLOURS[point.kind], marker=_MARKERS[point.kind], zorder=3)
        # Forced-tier references sit where their tier does: label them below, the others above.
        left.annotate(f"{point.label} (n={point.counts.graded})", (point.counts.cost_per_request, point.counts.accuracy),
                      textcoords="offset points", xytext=(6, -12 if point.kind == "always" else 5), fontsize=8)
    costs = [p.counts.cost_per_request for p in points if p.counts.cost_per_request]
    if costs and min(costs) > 0 and max(costs) / min(costs) > 50:
        left.set_xscale("log")
        left.xaxis.set_minor_formatter(null_formatter())
    left.margins(x=0.25)
    left.set_xlabel("cost per query (USD)")
    left.set_ylabel("accuracy on graded requests")
    left.set_ylim(-0.02, 1.02)
    left.set_title("accuracy vs cost per query")
    left.grid(alpha=0.3)
    if not points:
        left.text(0.5, 0.5, "no graded requests in the window", ha="center", va="center", transform=left.transAxes)

    right.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":", label="perfect calibration")
    for tier, diagram in report.reliability.items():
        predicts = tier == report.reliability_tier
        xs = [float(b["predicted"]) for b in diagram.bins]
        ys = [float(b["observed"]) for b in diagram.bins]
        label = f"{tier}: ECE {diagram.ece:.3f}, n={diagram.n}" if predicts else f"{tier} (n={diagram.n})"
        right.plot(xs, ys, marker="o", linewidth=2 if predicts else 1, linestyle="-" if predicts else "--",
                   alpha=1.0 if predicts else 0.6, label=label)
    right.set_xlim(0, 1)
    right.set_ylim(-0.02, 1.02)
    right.set_xlabel("predicted difficulty (P cheapest tier wrong)")
    right.set_ylabel("observed failure rate")
    cheapest = report.reliability_tier or "the cheapest tier"
    right.set_title(f"reliability: difficulty predicts {cheapest}'s failures")
    right.grid(alpha=0.3)
    right.legend(fontsize=8, loc="upper left")
    if not report.reliability:
        right.text(0.5, 0.5, "no graded requests with a difficulty", ha="center", va="center",
                   transform=right.transAxes)
    return _save(figure, path)


def plot_monitor(monitor: Monitor, path: Path) -> Path:
    """Predicted vs observed success by UTC day, a panel per verdict source, a colour per tier (`report --sources`)."""
    figure_class, canvas_class, _ = _matplotlib()
    sources = [s for s in VERDICT_SOURCES if any(s in row.sources for row in monitor.rows)]
    panels = max(1, len(sources))
    figure = figure_class(figsize=(5.5 * panels, 4.5), dpi=100, layout="constrained")
    canvas_class(figure)
    axes = figure.subplots(1, panels, squeeze=False)[0]
    window = f"since {iso(monitor.since)}" if monitor.since is not None else "all retained records"
    figure.suptitle(f"predicted vs observed success by day, {window}; difficulty predicts {monitor.predicts_tier or '-'}")
    days = sorted({row.day for row in monitor.rows})
    index = {day: i for i, day in enumerate(days)}
    tiers = list(dict.fromkeys(row.tier for row in monitor.rows))
    colours = {tier: f"C{i % 10}" for i, tier in enumerate(tiers)}
    for axis, source in zip(axes, sources, strict=False):
        for tier in tiers:
            series = [(day, f) for day, f in monitor.series(tier, source) if f.predicted_n]
            if not series:
                continue
            xs = [index[day] for day, _ in series]
            observed = [f.predicted_correct / f.predicted_n for _, f in series]
            predicted = [f.predicted or 0.0 for _, f in series]
            intervals = [wilson(f.predicted_correct, f.predicted_n) for _, f in series]
            low = [o - (i.low if i else o) for o, i in zip(observed, intervals, strict=True)]
            high = [(i.high if i else o) - o for o, i in zip(observed, intervals, strict=True)]
            main = tier == monitor.predicts_tier
            axis.errorbar(xs, observed, yerr=[low, high], color=colours[tier], marker="o", capsize=3,
                          linewidth=2 if main else 1, label=f"{tier} observed")
            axis.plot(xs, predicted, color=colours[tier], linestyle="--", marker="x",
                      label=f"{tier} predicted (1 - difficulty)")
        axis.set_title(f"verdicts: {source}")
        axis.set_xticks(range(len(days)), days, rotation=45, ha="right", fontsize=8)
        axis.set_xlim(-0.5, len(days) - 0.5)
        axis.set_ylim(-0.02, 1.02)
        axis.set_ylabel("success rate")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="lower left")
    if not sources:
        axes[0].text(0.5, 0.5, "no graded requests in the window", ha="center", va="center",
                     transform=axes[0].transAxes)
    return _save(figure, path)


def _save(figure: Any, path: Path) -> Path:
    """Write `figure` as a PNG at `path`; ConfigError naming the path when it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    except OSError as error:
        raise ConfigError(f"--plot: cannot write {path} ({error.strerror or error}). Choose a writable path.") from None
    return path
