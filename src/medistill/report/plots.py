"""The report's plots, as PNG: accuracy per benchmark with CI error bars and the chance level, and
accuracy against tokens per answer. Drawn on matplotlib's Agg canvas directly: no GUI backend and
no pyplot global state, so they are safe in a headless server, a test, or a process that already
uses another backend."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from medistill.report.tables import pct_short


def render_png(data: dict[str, Any], title: str, path: Path) -> None:
    """Grouped bar chart: benchmarks on x, one bar per model, CI error bars, chance lines."""
    # Agg canvas directly: no GUI backend and no pyplot global state, so this is safe to
    # call from a headless server, a test, or a process that already uses another backend.
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    benches = data["benchmarks"]
    rows = data["rows"]
    n_models = max(len(rows), 1)
    group_width = 0.8
    bar_width = group_width / n_models
    width = max(6.0, 1.5 + len(benches) * (0.6 + 0.45 * n_models))
    fig = Figure(figsize=(width, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    cmap = matplotlib.colormaps["tab10" if n_models <= 10 else "tab20"]
    show_values = n_models * len(benches) <= 30
    for i, row in enumerate(rows):
        xs, ys, lows, highs = [], [], [], []
        for j, bench in enumerate(benches):
            cell = row["cells"][bench["name"]]
            if cell is None:
                continue
            xs.append(j - group_width / 2 + (i + 0.5) * bar_width)
            ys.append(100 * cell["value"])
            lows.append(max(0.0, 100 * (cell["value"] - cell["ci_low"])))
            highs.append(max(0.0, 100 * (cell["ci_high"] - cell["value"])))
        bars = ax.bar(
            xs,
            ys,
            bar_width * 0.92,
            yerr=[lows, highs],
            capsize=3,
            color=cmap(i % cmap.N),
            edgecolor="black",
            linewidth=0.5,
            error_kw={"elinewidth": 1, "ecolor": "black"},
            label=row["label"],
        )
        if show_values:
            for bar, y, high in zip(bars, ys, highs, strict=True):
                ax.annotate(
                    f"{y:.0f}",
                    (bar.get_x() + bar.get_width() / 2, min(y + high, 100)),
                    xytext=(0, 2),
                    textcoords="offset points",
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )

    chances = [b["chance"] for b in benches]
    known = [c for c in chances if c is not None]
    if known and len(known) == len(chances) and len(set(known)) == 1:
        ax.axhline(
            100 * known[0],
            color="gray",
            linestyle="--",
            linewidth=1.2,
            label=f"chance ({pct_short(known[0])})",
            zorder=3,
        )
    else:
        labelled = False
        for j, chance in enumerate(chances):
            if chance is None:
                continue
            ax.hlines(
                100 * chance,
                j - group_width / 2 - 0.05,
                j + group_width / 2 + 0.05,
                colors="gray",
                linestyles="dashed",
                linewidth=1.2,
                label=None if labelled else "chance",
                zorder=3,
            )
            labelled = True

    ax.set_xticks(range(len(benches)))
    ax.set_xticklabels(
        [
            b["header"] + ("\n(n=" + "/".join(str(n) for n in b["n"]) + ")" if b["n"] else "")
            for b in benches
        ]
    )
    ax.set_xlim(-0.6, len(benches) - 0.4)
    ax.set_ylim(0, 100)
    ax.set_ylabel("Accuracy (%)")
    ax.set_title(title)
    ax.yaxis.grid(True, linestyle=":", linewidth=0.6, alpha=0.7)
    ax.set_axisbelow(True)
    # Models first, in table order, then the chance line; as many columns as fit the width.
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda k: labels[k].startswith("chance"))
    ax.legend(
        [handles[k] for k in order],
        [labels[k] for k in order],
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=max(1, min(len(labels), int(width // 2.2))),
        frameon=False,
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")


def _tokens_points(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model's point for the tokens plot: tokens per answer, accuracy (Avg, else its
    first benchmark's) and the CI span over its benchmarks."""
    points = []
    for row in data["rows"]:
        cells = [c for c in row["cells"].values() if c is not None]
        tok = row.get("tokens_per_answer")
        if not cells or tok is None:
            continue
        acc = row["avg"] if row["avg"] is not None else cells[0]["value"]
        if acc is None:
            continue
        lo = min(c["ci_low"] for c in cells)
        hi = max(c["ci_high"] for c in cells)
        points.append({"label": row["label"], "x": tok, "y": 100 * acc, "lo": lo, "hi": hi})
    return points


def point_labels(
    points: list[dict[str, Any]], *, x_tol: float = 0.03, y_tol: float = 3.0
) -> list[tuple[float, float, str]]:
    """One label per group of coinciding points, as ``(x, y, text)``: points closer than
    ``x_tol`` of the x range and ``y_tol`` accuracy points share one label that names every
    model, one per line, instead of labels printed over each other."""
    if not points:
        return []
    xs = [p["x"] for p in points]
    span = max(max(xs) - min(xs), max(abs(x) for x in xs), 1.0)
    groups: list[list[dict[str, Any]]] = []
    for p in points:
        for group in groups:
            first = group[0]
            if abs(p["x"] - first["x"]) <= x_tol * span and abs(p["y"] - first["y"]) <= y_tol:
                group.append(p)
                break
        else:
            groups.append([p])
    return [(g[0]["x"], g[0]["y"], "\n".join(p["label"] for p in g)) for g in groups]


def tokens_plot(data: dict[str, Any]) -> bytes:
    """Accuracy (Avg, else the first benchmark with a value) against tokens per answer; models
    whose points coincide share one label naming them all."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    points = _tokens_points(data)
    for p in points:
        acc = p["y"] / 100
        err = [[100 * max(0.0, acc - p["lo"])], [100 * max(0.0, p["hi"] - acc)]]
        ax.errorbar([p["x"]], [p["y"]], yerr=err, fmt="o", capsize=3)
    for x, y, text in point_labels(points):
        ax.annotate(text, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=8)
    ax.set_xlabel("Tokens per answer")
    ax.set_ylabel("Accuracy (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, linestyle=":", linewidth=0.6)
    ax.set_title("Accuracy against answer length")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")  # long labels are not cut
    return buf.getvalue()
