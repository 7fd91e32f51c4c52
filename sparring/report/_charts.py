"""The report's charts, drawn with matplotlib (Agg), as inline SVG and as PNG files.

Every chart function takes the run's groups and returns a figure, or None when the run has
nothing for it (the caller notes what is missing). `export` writes the PNG and returns the SVG
markup with ids made unique per chart, so several charts can sit in one page.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._data import Group

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C", "#CCB974", "#64B5CD"]
OUTCOME_COLOURS = {"win": "#55A868", "loss": "#C44E52", "tie": "#8C8C8C"}
_NEUTRAL = {"tie": "#B0B0B0", "error": "#E15759"}
_STYLE = {
    "font.family": "sans-serif", "font.size": 9.5, "axes.titlesize": 11, "axes.titleweight": "bold",
    "axes.titlelocation": "left", "axes.spines.top": False, "axes.spines.right": False,
    "axes.edgecolor": "#888888", "axes.grid": True, "axes.axisbelow": True, "grid.color": "#E6E6E6",
    "grid.linewidth": 0.8, "legend.frameon": False, "svg.fonttype": "none", "svg.hashsalt": "sparring",
    "figure.dpi": 100, "savefig.bbox": "tight", "text.usetex": False,
}


@dataclass
class Chart:
    """One drawn chart: ``svg`` is markup for the page, ``png`` the file beside it."""

    name: str
    title: str
    caption: str
    svg: str
    png: Path


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _label(text: str, width: int = 28) -> str:
    """A label safe for matplotlib's text (no mathtext from '$') and short enough for a legend."""
    text = str(text).replace("$", r"\$")
    return text if len(text) <= width else text[: width - 1] + "…"


def _figure(*, ncols: int = 1, height: float = 3.4, width: float | None = None):
    """A figure and its axes in a row (call inside ``rc_context(_STYLE)``)."""
    fig, axes = _plt().subplots(1, ncols, figsize=(width or (5.8 if ncols == 1 else 9.6), height), squeeze=False)
    return fig, list(axes[0])


def winrate(groups: list[Group]) -> Figure | None:
    """Win, loss and tie rates against the opponent per epoch, with 95% Wilson intervals."""
    points = [(g.label, g.winrate) for g in groups if g.winrate and "win_rate" in g.winrate]
    if not points:
        return None
    with _plt().rc_context(_STYLE):
        fig, (ax,) = _figure()
        xs = range(len(points))
        for offset, key in ((-0.12, "win"), (0.0, "tie"), (0.12, "loss")):
            rates = [float(w.get(f"{key}_rate") or 0.0) for _, w in points]
            cis = [w.get(f"{key}_ci") or [r, r] for (_, w), r in zip(points, rates)]
            low = [max(0.0, r - float(c[0])) for r, c in zip(rates, cis)]
            high = [max(0.0, float(c[1]) - r) for r, c in zip(rates, cis)]
            ax.errorbar([x + offset for x in xs], rates, yerr=[low, high], fmt="o-" if key == "win" else "o--",
                        color=OUTCOME_COLOURS[key], capsize=4, lw=2 if key == "win" else 1, ms=6 if key == "win" else 4,
                        alpha=1 if key == "win" else 0.75, label=f"{key} rate")
        ax.axhline(0.5, color="#999999", lw=0.8, ls=":")
        ax.set_xticks(list(xs), [f"{label}\n(n={w.get('games', '?')})" for label, w in points])
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(_percent())
        ax.set_ylabel("share of games")
        ax.legend(loc="upper left", ncols=3, fontsize=8.5)
        return fig


def accuracy(groups: list[Group]) -> Figure | None:
    """Accuracy on held-out questions per epoch and method, with 95% Wilson intervals."""
    points = [(g.label, g.accuracy) for g in groups if g.accuracy and isinstance(g.accuracy.get("methods"), dict)]
    if not points:
        return None
    methods = list(dict.fromkeys(m for _, a in points for m in a["methods"]))
    with _plt().rc_context(_STYLE):
        fig, (ax,) = _figure()
        xs = list(range(len(points)))
        for i, method in enumerate(methods):
            offset = (i - (len(methods) - 1) / 2) * 0.1
            got = [(x + offset, a["methods"][method]) for x, (_, a) in zip(xs, points) if method in a["methods"]]
            acc = [float(m.get("accuracy", 0.0)) for _, m in got]
            ci = [m.get("ci") or [v, v] for (_, m), v in zip(got, acc)]
            ax.errorbar([x for x, _ in got], acc, yerr=[[max(0.0, v - float(c[0])) for v, c in zip(acc, ci)],
                                                         [max(0.0, float(c[1]) - v) for v, c in zip(acc, ci)]],
                        fmt="o-", capsize=4, color=PALETTE[i % len(PALETTE)], label=_label(method.replace("_", " ")))
        ax.set_xticks(xs, [f"{label}\n(n={a.get('questions', '?')})" for label, a in points])
        ax.set_ylim(-0.02, 1.02)
        ax.yaxis.set_major_formatter(_percent())
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left", ncols=3, fontsize=8.5)
        return fig


def outcomes(groups: list[Group]) -> Figure | None:
    """How the played episodes ended, per epoch: shares of each outcome reason, stacked."""
    shown = [g for g in groups if g.stats.games]
    if not shown:
        return None
    totals = sum((g.stats.reasons for g in shown), Counter())
    reasons = sorted(totals, key=lambda r: (r == "tie", -totals[r]))  # the most common first, ties last
    if any(g.stats.errors for g in shown):
        reasons.append("error")
    colours, k = {}, 0
    for reason in reasons:
        if reason in _NEUTRAL:
            colours[reason] = _NEUTRAL[reason]
        else:
            colours[reason], k = PALETTE[k % len(PALETTE)], k + 1
    with _plt().rc_context(_STYLE):
        fig, (ax,) = _figure(height=max(2.4, 1.2 + 0.45 * len(shown)))
        ys = list(range(len(shown)))[::-1]
        left = [0.0] * len(shown)
        for reason in reasons:
            share = [(g.stats.errors if reason == "error" else g.stats.reasons[reason]) / g.stats.games for g in shown]
            ax.barh(ys, share, left=left, color=colours[reason], height=0.6, label=_label(reason, 34),
                    edgecolor="white", linewidth=0.8)
            for y, l, s in zip(ys, left, share):
                if s >= 0.07:
                    ax.text(l + s / 2, y, f"{s:.0%}", ha="center", va="center", color="white", fontsize=8.5,
                            fontweight="bold")
            left = [l + s for l, s in zip(left, share)]
        ax.set_yticks(ys, [f"{g.label} (n={g.stats.games})" for g in shown])
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(_percent())
        ax.grid(axis="y", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=min(3, len(reasons)), fontsize=8.5)
        return fig


def turns_tokens(groups: list[Group]) -> Figure | None:
    """Turns and completion tokens per episode, per epoch (box plots)."""
    shown = [g for g in groups if g.stats.games]
    if not shown:
        return None
    with _plt().rc_context(_STYLE):
        fig, (left, right) = _figure(ncols=2, height=3.0)
        labels = [g.label for g in shown]
        for ax, values, title in ((left, [g.stats.turns for g in shown], "turns per episode"),
                                  (right, [g.stats.tokens for g in shown], "completion tokens per episode")):
            ax.boxplot(values, tick_labels=labels, widths=0.5, patch_artist=True, showmeans=True,
                       boxprops={"facecolor": "#DCE6F2", "edgecolor": PALETTE[0]},
                       medianprops={"color": PALETTE[0], "lw": 1.5},
                       meanprops={"marker": "D", "markerfacecolor": PALETTE[1], "markeredgecolor": "white", "ms": 5},
                       flierprops={"marker": ".", "markeredgecolor": "#888888"})
            ax.set_title(title, fontsize=10)
            ax.grid(axis="x", visible=False)
        return fig


def throughput(groups: list[Group]) -> Figure | None:
    """Generation speed per epoch: completion tokens per second and episodes per minute."""
    shown = [g for g in groups if g.stats.games and g.stats.seconds]
    if not shown:
        return None
    with _plt().rc_context(_STYLE):
        fig, (left, right) = _figure(ncols=2, height=3.0, width=5.8)
        labels = [g.label for g in shown]
        for ax, values, title, colour in ((left, [g.stats.tokens_per_second for g in shown], "tokens / s", PALETTE[0]),
                                          (right, [g.stats.episodes_per_minute for g in shown], "episodes / min",
                                           PALETTE[2])):
            bars = ax.bar(labels, values, color=colour, width=0.55)
            ax.bar_label(bars, fmt="%.1f", fontsize=8.5, padding=2)
            ax.set_title(title, fontsize=10)
            ax.margins(y=0.18)
            ax.grid(axis="x", visible=False)
        return fig


def loss(groups: list[Group]) -> Figure | None:
    """Training loss per logged step, one line per epoch."""
    shown = [g for g in groups if len(g.losses)]
    if not shown:
        return None
    with _plt().rc_context(_STYLE):
        fig, (ax,) = _figure(height=3.0)
        for i, g in enumerate(shown):
            steps, values = zip(*g.losses)
            ax.plot(steps, values, "o-" if len(steps) < 30 else "-", color=PALETTE[i % len(PALETTE)], ms=3.5, lw=1.6,
                    label=g.label)
        ax.set_xlabel("training step (within the epoch)")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8.5)
        return fig


TRAINING_METRICS = [("kl", "KL to the reference"), ("ratio", "ratio exp(logp - ref)"),
                    ("clipped", "share of samples clipped"), ("grad_norm", "gradient norm")]
"""The SPAG trainer's logged metrics drawn by `training_metrics` (key in the log, axis label)."""


def training_metrics(groups: list[Group]) -> Figure | None:
    """SPAG's training metrics per logged step (KL, ratio, clipped share, gradient norm), one line per epoch."""
    series = {key: [(g, g.metric(key)) for g in groups if g.metric(key)] for key, _ in TRAINING_METRICS}
    shown = [(key, label) for key, label in TRAINING_METRICS if series[key]]
    if not any(key != "grad_norm" for key, _ in shown):  # no SPAG metrics: an SFT run's gradient norm alone says little
        return None
    with _plt().rc_context(_STYLE):
        fig, axes = _figure(ncols=len(shown), height=2.8, width=2.6 * len(shown) + 0.6)
        for ax, (key, label) in zip(axes, shown):
            for g, points in series[key]:
                steps, values = zip(*points)
                colour = PALETTE[groups.index(g) % len(PALETTE)]
                ax.plot(steps, values, "o-" if len(steps) < 30 else "-", color=colour, ms=3, lw=1.4, label=g.label,
                        clip_on=False)
            ax.set_title(_label(label, 26), fontsize=9.5)  # longer titles run into the next panel's
            ax.set_xlabel("step")
            if key == "clipped":
                ax.set_ylim(bottom=0)  # a share: nothing clipped is the floor, not the middle of the axis
        axes[0].legend(fontsize=8)
        fig.subplots_adjust(wspace=0.4)  # room for each panel's tick labels
        return fig


def _percent():
    from matplotlib.ticker import PercentFormatter

    return PercentFormatter(xmax=1, decimals=0)


def export(fig: Figure, name: str, title: str, caption: str, png_dir: Path) -> Chart:
    """Write ``png_dir/NAME.png`` and return the chart with its SVG markup (ids prefixed with ``NAME-``)."""
    png = png_dir / f"{name}.png"
    buffer = io.StringIO()
    plt = _plt()
    with plt.rc_context(_STYLE):
        fig.savefig(png, format="png", dpi=144, metadata={"Software": None})
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    return Chart(name, title, caption, _inline_svg(buffer.getvalue(), name, title), png)


def _inline_svg(text: str, prefix: str, title: str) -> str:
    """An SVG document made fit to sit inside HTML: no XML prolog, unique ids, sized by CSS."""
    text = text[text.index("<svg"):]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, count=1, flags=re.DOTALL)
    text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}-\1"', text)
    text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}-\1)", text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}-\1"', text)
    head_end = text.index(">")
    width = re.search(r'\swidth="([\d.]+)pt"', text[:head_end])
    head = re.sub(r'\s(width|height)="[^"]*"', "", text[:head_end])
    style = f' style="max-width: {float(width.group(1)):.0f}pt"' if width else ""
    return f'{head} role="img" aria-label="{_attribute(title)}" class="chart-svg"{style}{text[head_end:]}'


def _attribute(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
