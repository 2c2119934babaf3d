"""The Markdown report: the results table, then its notes (metric, n, chance), the published
tables' scoring beside ours, each model's decoding settings and the warnings."""

from __future__ import annotations

from typing import Any

from medistill.report.tables import (
    METRICS,
    NO_ANSWER_WARN,
    TRUNCATION_WARN,
    pct,
    pct_short,
    table_strings,
)


def md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(data: dict[str, Any], title: str) -> str:
    """The Markdown report: title, table, then metric/n/chance notes and warnings."""
    header, body = table_strings(data)
    lines = [f"# {title}", ""]
    lines.append("| " + " | ".join(md_escape(h) for h in header) + " |")
    lines.append("|:--" + "|--:" * (len(header) - 1) + "|")
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in body]
    lines.append("")

    metric = data["metric"]
    lines.append(
        f"**Metric:** {metric} accuracy ({METRICS[metric]}), % correct with 95% CI. "
        "Avg is the unweighted mean over benchmarks, shown only for models run on all of "
        "them; the cost columns are averaged over a model's runs, weighted by n. s/answer "
        "is wall-clock time per answer; Latency s is each request's own time (for a "
        "concurrent server, queueing included)."
    )
    lines.append("")
    n_parts = []
    for bench in data["benchmarks"]:
        ns = bench["n"]
        shown = str(ns[0]) if len(ns) == 1 else f"{ns[0]}–{ns[-1]} (varies by model)"
        n_parts.append(f"{bench['header']} {shown}")
    lines.append(f"**n per benchmark:** {', '.join(n_parts)}.")
    lines.append("")
    chances = [b["chance"] for b in data["benchmarks"]]
    if chances and all(c is not None for c in chances) and len(set(chances)) == 1:
        chance_text = f"{pct(chances[0])}% on every benchmark"
    else:
        chance_text = ", ".join(
            f"{b['header']} {pct(b['chance'])}{'' if b['chance'] is None else '%'}"
            for b in data["benchmarks"]
        )
    lines.append(f"**Chance:** {chance_text}.")
    lines.append("")
    lines += _published_markdown(data)
    decoding = [(r["label"], r.get("sampling")) for r in data["rows"] if r.get("sampling")]
    if decoding:
        lines += ["**Decoding** (per model: settings and where they came from):", ""]
        lines += [f"- {md_escape(label)}: {md_escape(text)}" for label, text in decoding]
        lines.append("")
    if data["warnings"]:
        lines.append("**Warnings:**")
        lines.append("")
        lines += [f"- {w}" for w in data["warnings"]]
    else:
        lines.append(
            "No warnings: every run is above chance, with no-answer ≤ "
            f"{pct_short(NO_ANSWER_WARN)} and cut off ≤ {pct_short(TRUNCATION_WARN)}."
        )
    lines.append("")
    return "\n".join(lines)


def _published_markdown(data: dict[str, Any]) -> list[str]:
    """The published tables' scoring rule beside ours (an upper bound), and the letters each
    run answered against the gold letters: the two figures a reader needs to set a run next
    to a paper's table."""
    benches = data["benchmarks"]
    if not any(
        (row["cells"].get(b["name"]) or {}).get("published") is not None
        for row in data["rows"]
        for b in benches
    ):
        return []
    lines = [
        "**Published-table scoring (upper bound):** HuatuoGPT-o1 / MedReason's rule — the "
        "better of a first- and a last-match reading, the most similar option when no letter "
        "is written, never no answer — so a run can sit beside a published table; it is not "
        "medistill's accuracy. Letters: the most frequent answered letter and its share "
        "against its gold share.",
        "",
        "| Model | " + " | ".join(md_escape(b["header"]) for b in benches) + " |",
        "|:--" + "|--:" * len(benches) + "|",
    ]
    for row in data["rows"]:
        cells = []
        for b in benches:
            c = row["cells"].get(b["name"])
            if c is None or c.get("published") is None:
                cells.append("–")
                continue
            letters = c.get("letters") or {}
            top = letters.get("most_frequent")
            bias = (
                f" · {top} {pct_short(letters['extracted'][top])} vs "
                f"{pct_short(letters['gold'].get(top, 0.0))}"
                if top
                else ""
            )
            cells.append(f"{pct(c['published'])}{bias}")
        lines.append(f"| {md_escape(row['label'])} | " + " | ".join(cells) + " |")
    return [*lines, ""]
