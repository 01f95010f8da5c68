"""The report as a PNG: accuracy against cost per query, and the difficulty score's reliability diagram.

matplotlib is optional (the `plot` extra) and imported only here, only when a plot is asked for.
No pyplot: a Figure drawn on an Agg canvas touches no global state and needs no display.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import ConfigError
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, format="png")
    except OSError as error:
        raise ConfigError(f"--plot: cannot write {path} ({error.strerror or error}). Choose a writable path.") from None
    return path
