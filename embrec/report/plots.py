"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, so making a
report changes no global matplotlib state). Each function writes one PNG and returns its path."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def norm_vs_popularity(norms: np.ndarray, counts: np.ndarray, path: Path, *, rho: float) -> Path:
    """Scatter of item embedding norm against training count (log scale), with Spearman's rho."""
    fig, ax = _figure(6.4, 4.2)
    ax.scatter(np.maximum(counts, 0) + 1, norms, s=6, alpha=0.35, color="#1f77b4", linewidths=0)
    # median norm per popularity decile: the trend through the cloud
    order = np.argsort(counts, kind="stable")
    bins = [b for b in np.array_split(order, min(10, len(order))) if b.size]
    ax.plot([np.median(counts[b]) + 1 for b in bins], [np.median(norms[b]) for b in bins],
            color="#d62728", marker="o", label="median per popularity decile")
    ax.set_xscale("log")
    ax.set_xlabel("training events of the item + 1 (log scale)")
    ax.set_ylabel("embedding norm")
    shown = "n/a" if np.isnan(rho) else f"{rho:.2f}"
    ax.set_title(f"Item embedding norm vs popularity (Spearman ρ = {shown})")
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def projection(xy: np.ndarray, labels: Sequence[str], path: Path, *, title: str, legend_title: str) -> Path:
    """2-D scatter coloured by label (at most 12 labels drawn by name; the rest pooled as 'other')."""
    labels = np.asarray(labels, dtype=object)
    names, counts = np.unique(labels, return_counts=True)
    shown = list(names[np.argsort(-counts, kind="stable")][:12])
    if len(names) > 12:
        labels = np.where(np.isin(labels, shown), labels, "other")
        shown.append("other")
    fig, ax = _figure(7.2, 5.4)
    cmap = matplotlib.colormaps["tab20"]
    for i, name in enumerate(shown):
        sel = labels == name
        colour = "#bbbbbb" if name == "other" else cmap(i % 20)
        ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.7, color=colour, label=str(name), linewidths=0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    ax.legend(title=legend_title, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
              title_fontsize=9, markerscale=2, frameon=False)
    return _save(fig, path)


def training_curves(history: Sequence[dict[str, float]], path: Path) -> Path:
    """Loss per epoch (left) and every other per-epoch metric, e.g. the validation metric (right)."""
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    others = [k for k in history[0] if k not in ("epoch", "loss", "seconds")
              and all(isinstance(r.get(k), (int, float)) for r in history)]
    fig, axes = _figure(9.0, 3.6, ncols=2 if others else 1)
    axes = np.atleast_1d(axes)
    axes[0].plot(epochs, [row.get("loss", np.nan) for row in history], marker="o", color="#1f77b4")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("training loss")
    axes[0].set_title("Training loss")
    if others:
        for key in others:
            axes[1].plot(epochs, [row[key] for row in history], marker="o", label=key)
        axes[1].set_xlabel("epoch")
        axes[1].set_title("Validation")
        axes[1].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def protocol_bars(result: dict[str, Any], path: Path, *, highlight: str | None = None) -> Path:
    """One panel per metric, one bar per model, on one protocol's results."""
    rows = [r for r in result.get("results", []) if isinstance(r.get("metrics"), dict)]
    metrics = [m for m in rows[0]["metrics"] if all(isinstance(r["metrics"].get(m), (int, float))
                                                    for r in rows)][:4]
    fig, axes = _figure(3.4 * max(1, len(metrics)) + 1.0, 0.35 * len(rows) + 1.6, ncols=max(1, len(metrics)))
    axes = np.atleast_1d(axes)
    names = [str(r["model"]) for r in rows]
    for ax, metric in zip(axes, metrics):
        values = [float(r["metrics"][metric]) for r in rows]
        colours = ["#d62728" if n == highlight else "#1f77b4" for n in names]
        ax.barh(range(len(rows)), values, color=colours)
        ax.set_yticks(range(len(rows)), names if ax is axes[0] else [""] * len(rows))
        ax.invert_yaxis()
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.3f}", va="center", fontsize=7)
        ax.set_xlim(0, max(values + [1e-9]) * 1.25)
        ax.set_title(metric, fontsize=10)
    fig.suptitle(f"{result.get('protocol', 'protocol')} on {result.get('dataset', '?')}", fontsize=11)
    return _save(fig, path)
