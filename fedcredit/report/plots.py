"""Matplotlib figures embedded in the report as base64 PNG (no files, no network, no JavaScript).

Every function takes plain arrays and returns ``<img>`` markup; the Agg backend is selected on
import so a headless machine draws the same figures as a desktop.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after selecting the headless backend
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedcredit.report import curves  # noqa: E402

FIGSIZE = (5.2, 3.6)


def figure(title: str, draw: Callable[[Axes], None], *, size: tuple[float, float] = FIGSIZE) -> str:
    """Draw on one fresh axes and return it as an embedded ``<img>`` (alt text = title)."""
    fig, ax = plt.subplots(figsize=size, dpi=90)
    try:
        draw(ax)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="plot" alt="{title}" src="data:image/png;base64,{data}">'


def roc_plot(models: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    def draw(ax: Axes) -> None:
        for name, (y, s) in models.items():
            fpr, tpr = curves.roc(y, s)
            ax.plot(fpr, tpr, label=name, lw=1.4)
        ax.plot([0, 1], [0, 1], "k:", lw=0.8)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")

    return figure("ROC, test set", draw)


def ks_plot(models: dict[str, tuple[np.ndarray, np.ndarray]]) -> str:
    def draw(ax: Axes) -> None:
        for i, (name, (y, s)) in enumerate(models.items()):
            k = curves.ks_curve(y, s)
            q = np.linspace(0, 1, k.bad_cdf.size)
            ax.plot(q, k.good_cdf - k.bad_cdf, label=f"{name} (KS {k.ks:.3f})", lw=1.4, color=f"C{i}")
        ax.set_xlabel("share of test rows below the threshold (score order)")
        ax.set_ylabel("good CDF - bad CDF")
        ax.legend(fontsize=7)

    return figure("KS separation, test set", draw)


def score_distribution(y: np.ndarray, p: np.ndarray) -> str:
    def draw(ax: Axes) -> None:
        bins = [i / 40 for i in range(41)]
        ax.hist(p[y == 0], bins=bins, alpha=0.6, density=True, label=f"good ({int((y == 0).sum())})")
        ax.hist(p[y == 1], bins=bins, alpha=0.6, density=True, label=f"bad ({int((y == 1).sum())})")
        ax.set_xlabel("predicted default probability")
        ax.set_ylabel("density")
        ax.legend(fontsize=7)

    return figure("Score distribution by class", draw)


def calibration_plot(y: np.ndarray, p: np.ndarray) -> str:
    def draw(ax: Axes) -> None:
        pred, obs, _ = curves.calibration(y, p)
        top = float(max(pred.max(), obs.max(), 0.05))
        ax.plot([0, top], [0, top], "k:", lw=0.8, label="perfect")
        ax.plot(pred, obs, "o-", lw=1.4, label="federated (deciles)")
        ax.set_xlabel("mean predicted default probability")
        ax.set_ylabel("observed default rate")
        ax.legend(fontsize=7)

    return figure("Calibration", draw)


def gains_plot(y: np.ndarray, s: np.ndarray) -> str:
    def draw(ax: Axes) -> None:
        pop, cap, lift = curves.gains(y, s)
        ax.plot(pop, cap, lw=1.4, label="bads captured")
        ax.plot([0, 1], [0, 1], "k:", lw=0.8, label="random")
        ax.set_xlabel("share of applicants, riskiest first")
        ax.set_ylabel("share of bads captured")
        twin = ax.twinx()
        twin.plot(pop[1:], lift[1:], color="C3", lw=1.0, label="lift")
        twin.set_ylabel("lift")
        ax.legend(fontsize=7, loc="center right")

    return figure("Cumulative gains and lift", draw)


def lines(
    title: str,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    marks: dict[str, float] | None = None,
) -> str:
    """Several series against one x (training curves, per-round metrics), with labelled vertical marks."""

    def draw(ax: Axes) -> None:
        for name, ys in series.items():
            ax.plot(list(x), list(ys), "o-", ms=3, lw=1.3, label=name)
        for i, (label, at) in enumerate((marks or {}).items()):
            ax.axvline(at, color=f"C{i + 5}", ls="--", lw=1.0, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs, trees and rounds are whole
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)

    return figure(title, draw)


def bars(title: str, labels: Sequence[str], values: Sequence[float], *, xlabel: str) -> str:
    """Horizontal bars, largest magnitude on top (weights, importances, bytes)."""
    order = np.argsort(np.abs(np.asarray(values, dtype=float)))
    height = max(2.4, 0.22 * len(labels) + 1.0)

    def draw(ax: Axes) -> None:
        ax.barh([labels[i] for i in order], [values[i] for i in order], color="C0")
        ax.set_xlabel(xlabel)
        ax.tick_params(axis="y", labelsize=7)

    return figure(title, draw, size=(5.6, height))


def timeline(phases: list[tuple[str, float, float]]) -> str:
    """Phases as bars on a time axis: (name, start seconds, duration seconds)."""

    def draw(ax: Axes) -> None:
        for i, (_name, start, dur) in enumerate(phases):
            ax.broken_barh([(start, max(dur, 1e-3))], (i - 0.4, 0.8), color=f"C{i % 10}")
            ax.text(start + dur, i, f" {dur:.1f} s", va="center", fontsize=7)
        ax.set_yticks(range(len(phases)), [p[0] for p in phases])
        ax.invert_yaxis()
        ax.set_xlabel("seconds since the run started")

    return figure("Phases (from the ledger's timestamps)", draw, size=(6.4, max(2.4, 0.4 * len(phases) + 1.2)))
