"""The study's PNG: one panel per metric, each variant's seeds as points and their mean as a bar."""

from __future__ import annotations

from pathlib import Path

from .results import VariantResult


def plot_results(results: list[VariantResult], metrics: list[str], title: str,
                 path: Path) -> Path | None:
    """Write the plot to ``path``; None (and nothing written) when no variant has a value."""
    if not any(r.values for r in results):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.variant for r in results]
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(3.2, 0.7 * len(names) + 1.6)
                                                       * len(metrics), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for x, result in enumerate(results):
            stats = result.mean_spread(metric)
            if stats is None:
                ax.text(x, 0, "failed" if result.failed else "n/a", rotation=90, ha="center",
                        va="bottom", fontsize=7, color="firebrick")
                continue
            values = list(result.values[metric].values())
            ax.bar(x, stats[0], color="lightsteelblue", width=0.6)
            ax.plot([x] * len(values), values, "o", color="navy", ms=3)
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
    fig.suptitle(f"{title} (bars: mean over seeds; points: seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
