"""The HTML report: one self-contained file a clinical reviewer can open anywhere.

No network, no script: styles inline, plots embedded as PNG data URIs. It holds the results
table (accuracy with 95% CIs per benchmark), the cost and answer-quality table (parameters,
tokens and seconds per answer, compute relative to the teacher, well-formed and cut-off
rates), the accuracy plot and accuracy against tokens per answer, the data-card summary of
the training set, and sample explanations — per benchmark, a student's reasoning on a few
questions, right and wrong, beside the teacher's on the same questions
(:mod:`medistill.report.samples`). Every text that comes from a model or a dataset is escaped.
"""

from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any

from medistill.models import SMOLLM2_ALIASES, resolve_model
from medistill.report.deployed import deployed_html
from medistill.report.explanations import explanations_html
from medistill.report.plots import tokens_plot
from medistill.report.safety_render import safety_html
from medistill.report.samples import samples_html
from medistill.report.tables import pct

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;
max-width:1100px;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0 1rem}th,td{border:1px solid #ccc;
padding:.3rem .6rem;text-align:right;vertical-align:top}th:first-child,td:first-child{
text-align:left}th{background:#f3f3f3}.note{color:#555;font-size:.9rem}
.warn{color:#8a3b00}.plots img{max-width:100%;border:1px solid #ddd;margin:.5rem 0}
.case{border:1px solid #ccc;border-radius:6px;padding:.8rem;margin:1rem 0}
.case pre{white-space:pre-wrap;background:#fafafa;border:1px solid #eee;padding:.6rem;
margin:.3rem 0;font-size:.85rem;max-height:28rem;overflow:auto}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem}.ok{color:#0a6b2b}.bad{color:#a11}
"""


def write_html(
    path: Path,
    *,
    title: str,
    data: dict[str, Any],
    runs: list[dict[str, Any]],
    chart_png: Path,
    metric: str,
    dataset: Path | None = None,
    explanations: int = 4,
    safety: tuple[dict[str, Any], list[dict[str, Any]]] | None = None,
    audit: dict[str, Any] | None = None,
    deployed: dict[str, Any] | None = None,
) -> Path:
    """Write ``report.html`` from the report's table data and its runs; return its path.

    ``safety``: the safety table's data and its runs (:mod:`medistill.report.safety`), shown
    under the results with a student's answers to harmful requests; ``audit``: the
    Explanations table's data (:mod:`medistill.report.explanations`); ``deployed``: the "As
    deployed" table's data (:mod:`medistill.report.deployed`)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="note"><strong>Not for clinical use.</strong> Research models answering exam '
        "questions; they make confident mistakes.</p>",
        "<h2>Results</h2>",
        _results_table(data, metric),
        _published_table(data),
        _decoding(data),
        _warnings(data),
    ]
    if audit is not None:
        parts += ["<h2>Explanations</h2>", explanations_html(audit)]
    if safety is not None:
        parts += ["<h2>Safety</h2>", safety_html(*safety)]
    if deployed is not None:
        parts += ['<h2 id="as-deployed">As deployed</h2>', deployed_html(deployed)]
    parts += [
        "<h2>Cost and answer quality</h2>",
        _cost_table(data, runs),
        '<h2>Plots</h2><div class="plots">',
        _img(chart_png.read_bytes(), "accuracy with 95% confidence intervals", "plot-accuracy"),
        _img(tokens_plot(data), "accuracy against tokens per answer", "plot-tokens"),
        "</div>",
    ]
    if dataset is not None:
        parts += ["<h2>Training data</h2>", _data_card(dataset)]
    order = [row["label"] for row in data["rows"]]
    benches = [b["name"] for b in data["benchmarks"]]
    parts += ["<h2>Sample explanations</h2>", samples_html(runs, order, benches, explanations)]
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _results_table(data: dict[str, Any], metric: str) -> str:
    benches = data["benchmarks"]
    head = "".join(f"<th>{escape(b['header'])}</th>" for b in benches)
    rows = []
    for row in data["rows"]:
        cells = []
        for b in benches:
            c = row["cells"][b["name"]]
            cells.append(
                "<td>–</td>"
                if c is None
                else f"<td>{pct(c['value'])} <span class='note'>({pct(c['ci_low'])}–"
                f"{pct(c['ci_high'])})</span></td>"
            )
        rows.append(
            f"<tr><td>{escape(row['label'])}</td>{''.join(cells)}<td>{pct(row['avg'])}</td></tr>"
        )
    ns = ", ".join(f"{escape(b['header'])} n={'/'.join(map(str, b['n']))}" for b in benches)
    return (
        f'<table id="results"><tr><th>Model</th>{head}<th>Avg</th></tr>{"".join(rows)}</table>'
        f'<p class="note">{escape(metric)} accuracy, % correct with 95% Wilson intervals; {ns}.'
        "</p>"
    )


def _published_table(data: dict[str, Any]) -> str:
    """The published tables' rule (an upper bound) per run, with its most frequent letter."""
    benches = data["benchmarks"]
    rows = []
    for row in data["rows"]:
        cells = []
        for b in benches:
            c = row["cells"].get(b["name"]) or {}
            letters = c.get("letters") or {}
            top = letters.get("most_frequent")
            note = (
                f" <span class='note'>{escape(top)} {pct(letters['extracted'][top])} vs gold "
                f"{pct(letters['gold'].get(top, 0.0))}</span>"
                if top
                else ""
            )
            cells.append(f"<td>{pct(c.get('published'))}{note}</td>")
        rows.append(f"<tr><td>{escape(row['label'])}</td>{''.join(cells)}</tr>")
    if not any(
        (row["cells"].get(b["name"]) or {}).get("published") is not None
        for row in data["rows"]
        for b in benches
    ):
        return ""
    head = "".join(f"<th>{escape(b['header'])}</th>" for b in benches)
    return (
        f'<table id="published"><tr><th>Model</th>{head}</tr>{"".join(rows)}</table>'
        '<p class="note">Published-table scoring (HuatuoGPT-o1 / MedReason: the better of a '
        "first- and a last-match reading, the most similar option when no letter is written, "
        "no abstention): an upper bound beside medistill's accuracy, not a replacement. Beside "
        "it, the most frequent answered letter against its gold share.</p>"
    )


def _decoding(data: dict[str, Any]) -> str:
    """Each model's decoding settings and where they came from (report.md's Decoding)."""
    rows = [(r["label"], r["sampling"]) for r in data["rows"] if r.get("sampling")]
    if not rows:
        return ""
    items = "".join(f"<li>{escape(label)}: {escape(text)}</li>" for label, text in rows)
    return f"<p><strong>Decoding</strong> (settings and where they came from):</p><ul>{items}</ul>"


def _warnings(data: dict[str, Any]) -> str:
    if not data["warnings"]:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in data["warnings"])
    return f'<ul class="warn">{items}</ul>'


def _count_parameters(model: str | None) -> int | None:
    """Parameters of a local safetensors model, from the file headers only (no loading)."""
    if not model:
        return None
    folder = Path(model)
    if not folder.is_dir():
        if model.strip().lower() not in SMOLLM2_ALIASES:
            return None
        try:
            folder = Path(resolve_model(model))
        except Exception:
            return None
    total = 0
    for f in folder.glob("*.safetensors"):
        with open(f, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(size))
        for name, info in header.items():
            if name != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= d
                total += n
    return total or None


def _cost_table(data: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    by_label: dict[str, list[dict]] = {}
    for r in runs:
        by_label.setdefault(r["label"], []).append(r)
    params = {
        row["label"]: _count_parameters(by_label[row["label"]][0].get("model"))
        for row in data["rows"]
        if row["label"] in by_label
    }
    ref = next((row for row in data["rows"] if row["label"].lower().startswith("teacher")), None)
    ref = ref or (data["rows"][0] if data["rows"] else None)

    def compute(row) -> float | None:
        p, t = params.get(row["label"]), row.get("tokens_per_answer")
        return 2.0 * p * t if p and t else None

    out = [
        '<table id="cost"><tr><th>Model</th><th>Parameters</th><th>Tokens/answer</th>'
        "<th>s/answer</th><th>Compute vs teacher</th><th>Well-formed %</th><th>Cut-off %</th>"
        "<th>No answer %</th></tr>"
    ]
    for row in data["rows"]:
        p = params.get(row["label"])
        rel = "–"
        if ref is not None:
            mine, theirs = compute(row), compute(ref)
            if mine and theirs:
                rel = f"{mine / theirs:.2f}x"
            elif row.get("s_per_answer") and ref.get("s_per_answer"):
                rel = f"{row['s_per_answer'] / ref['s_per_answer']:.2f}x (time)"
        runs_of = by_label.get(row["label"], [])
        strict = [
            (1 - r["no_answer_rate"]["strict"], r["n"])
            for r in runs_of
            if r["no_answer_rate"].get("strict") is not None
        ]
        formed = sum(v * n for v, n in strict) / sum(n for _, n in strict) if strict else None
        tok = row.get("tokens_per_answer")
        spa = row.get("s_per_answer")
        out.append(
            f"<tr><td>{escape(row['label'])}</td>"
            f"<td>{'–' if not p else f'{p / 1e6:,.0f}M'}</td>"
            f"<td>{'–' if tok is None else f'{tok:.0f}'}</td>"
            f"<td>{'–' if spa is None else f'{spa:.2f}'}</td><td>{rel}</td>"
            f"<td>{pct(formed)}</td><td>{pct(row.get('truncation_rate'))}</td>"
            f"<td>{pct(row.get('no_answer_rate'))}</td></tr>"
        )
    out.append(
        "</table><p class='note'>Compute per answer ≈ 2 × parameters × tokens per answer, "
        "relative to the teacher's (by time where a model's size is unknown, e.g. over HTTP). "
        "Well-formed: the answer states its letter explicitly (strict extraction). Cut-off: it "
        "hit the token budget or a stopped repetition loop.</p>"
    )
    return "".join(out)


def _img(png: bytes, alt: str, ident: str) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img id="{ident}" alt="{escape(alt)}" src="data:image/png;base64,{b64}">'


def _data_card(dataset: Path) -> str:
    stats_path = dataset / "stats.json"
    if not stats_path.is_file():
        return f"<p class='note'>No data card at {escape(str(stats_path))}.</p>"
    s = json.loads(stats_path.read_text(encoding="utf-8"))
    dropped = s.get("dropped") or {}
    drops = ", ".join(f"{escape(str(k))} {v}" for k, v in sorted(dropped.items()) if v) or "none"
    decon = s.get("decontamination") or {}
    found = decon.get("removed_questions", decon.get("contaminated"))
    rows = [
        ("Teacher traces in", s.get("input_traces")),
        ("Kept for training", s.get("kept_traces")),
        ("Questions kept / in", f"{s.get('kept_questions')} / {s.get('input_questions')}"),
        ("Teacher verified accuracy", pct(s.get("teacher_accuracy"))),
        ("Dropped, by reason", drops),
        ("Decontaminated against", ", ".join(map(str, decon.get("benchmarks") or [])) or "none"),
        (
            "Contaminated questions removed",
            (s.get("question_reasons") or {}).get("contaminated", found or 0),
        ),
    ]
    body = "".join(f"<tr><td>{escape(k)}</td><td>{escape(str(v))}</td></tr>" for k, v in rows)
    return f'<table id="data-card">{body}</table>'
