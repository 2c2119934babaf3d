"""The report's Safety section, rendered from :func:`medistill.report.safety.safety_data`: one
table with both sides for every model and the combined figure, the notes that say how each
figure was read, per-category tables, the judge's figures, and (HTML) a student's answers.
Every model text (labels, set names, categories, requests, answers) is escaped in the HTML."""

from __future__ import annotations

from html import escape
from typing import Any

from medistill.data.safety import CATEGORIES
from medistill.report.markdown import md_escape
from medistill.report.safety import NAMES, student_answers
from medistill.report.tables import DASH, pct

HEADS = {"harmful": "Refuses harmful", "benign": "Over-refuses benign"}
PER_CATEGORY = {
    "harmful": "refuses harmful % per category",
    "benign": "over-refuses benign % per category",
}


def _rate(p: dict[str, Any] | None, with_n: bool = True) -> str:
    if p is None or p.get("value") is None:
        return DASH
    n = f" ({p['n']})" if with_n else ""
    return f"{pct(p['value'])} [{pct(p['ci_low'])}, {pct(p['ci_high'])}]{n}"


def _both(row: dict[str, Any]) -> str:
    if row["both_ways"] is None:
        return f"{DASH} ({row['missing']} side not measured)"
    lo, hi = row["both_ways_range"]
    return f"{pct(row['both_ways'])} [{pct(lo)}, {pct(hi)}]"


def main_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The Safety table's header and rows as text: model, a column per set and side, the
    combined figure."""
    head = ["Model"] + [f"{HEADS[c['side']]}: {c['name']}" for c in data["columns"]]
    head.append("Both ways")
    body = [
        [row["label"]] + [_rate(row["cells"].get(c["key"])) for c in data["columns"]] + [_both(row)]
        for row in data["rows"]
    ]
    return head, body


def _category_head(cat: str) -> str:
    return f"C{cat}" if cat.isdigit() else cat


def category_legend(categories: list[str]) -> str:
    """What the numbered columns of a per-category table are: MedSafetyBench's AMA principle
    for each ``C<n>`` shown (empty when no column is numbered)."""
    named = [
        f"C{c}: {CATEGORIES[int(c)]}" for c in categories if c.isdigit() and int(c) in CATEGORIES
    ]
    return ("Categories (AMA principles): " + "; ".join(named) + ".") if named else ""


def judge_table(data: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The judge's figures per (model, set) where a judge ran."""
    head = ["Model", "Set", "Judge", "Judged", "Harm 1-5", "Harmful % (>= 4)", "Judge failed"]
    body = [
        [
            j["label"],
            NAMES.get(j["benchmark"], j["benchmark"]),
            j["judge"] + (" (local: weak judge)" if j["local"] else ""),
            DASH if j["n_judged"] is None else str(j["n_judged"]),
            DASH if j["mean_harmfulness"] is None else f"{j['mean_harmfulness']:.2f}",
            pct(j["harmful_share"]),
            DASH if j["judge_failed"] is None else str(j["judge_failed"]),
        ]
        for j in data["judged"]
    ]
    return head, body


def explanation(data: dict[str, Any]) -> list[str]:
    """How the figures were read, as plain sentences (rendered as paragraphs)."""
    sets = set(data["sets"])
    out = [
        "Refuses harmful: share of harmful requests the model refused (higher is safer). "
        "Over-refuses benign: share of benign but sensitive requests it refused anyway (lower "
        "is better); a model that refuses everything scores 100% on the first and fails the "
        "second. Cells: % [95% Wilson CI] (n).",
        "Both ways: the harmonic mean of the model's refusal rate pooled over its harmful "
        "requests and its answer rate (100% - over-refusal) pooled over its benign requests; "
        "it is high only when both are and falls when either side fails (0 for a model that "
        "refuses everything, and for one that answers everything). The range is the harmonic "
        "mean at the two CIs' worse ends and at their better ends.",
        "Refusals are read by medistill's phrase detector (medistill.answers.refusal), not by a "
        "model: a phrase detector misses refusals it has no phrase for and can misread an answer "
        "that quotes one; its agreement with human labels is in BENCHMARKS.md.",
    ]
    if "benign_clinical" in sets:
        out.append(
            "Benign clinical (medistill) is medistill's own set, written for it: sensitive but "
            "legitimate clinical requests over MedSafetyBench's nine AMA categories. It is not a "
            "published benchmark; its figures compare models here, not with papers."
        )
    if "xstest" in sets:
        out.append(
            "XSTest (Röttger et al., NAACL 2024): its safe prompts measure over-refusal, its "
            "unsafe contrast prompts refusal."
        )
    if any(set(t["categories"]) <= {str(c) for c in range(1, 10)} for t in data["per_category"]):
        out.append(
            "C1-C9: MedSafetyBench's nine AMA principles (the benign set uses the same), named "
            "under each per-category table."
        )
    if data["judged"]:
        out.append(
            "Judge: the mean harmfulness (1 refuses ... 5 fully complies) against medistill's "
            "usage policy of its answers to harmful requests, and the share scored >= 4; "
            "failed judgements are counted, not scored."
        )
        weak = sorted({j["judge"] for j in data["judged"] if j["local"]})
        if weak:
            out.append(
                f"The judge ({', '.join(weak)}) ran on a local server: a small local model is a "
                "weak judge; read its scores as a weak judge's, not as MedSafetyBench's GPT-4 "
                "judge's."
            )
    else:
        out.append("No judge ran: no harmfulness scores.")
    return out


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(md_escape(h) for h in head) + " |"]
    lines.append("|:--" + "|--:" * (len(head) - 1) + "|")
    lines += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in body]
    return lines


def _category_table(table: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["Model"] + [_category_head(c) for c in table["categories"]]
    body = [
        [row["label"]] + [pct(row["values"][c]) for c in table["categories"]]
        for row in table["rows"]
    ]
    return head, body


def safety_markdown(data: dict[str, Any]) -> str:
    """The report's ``## Safety`` section."""
    lines = ["## Safety", "", *_md_table(*main_table(data)), ""]
    for text in explanation(data):
        lines += [text, ""]
    lines += [f"- {md_escape(note)}" for note in data["notes"]]
    if data["notes"]:
        lines.append("")
    if data["per_category"]:
        lines += ["### Safety per category", ""]
        for table in data["per_category"]:
            lines += [f"{table['name']}: {PER_CATEGORY[table['side']]}", ""]
            lines += [*_md_table(*_category_table(table)), ""]
            legend = category_legend(table["categories"])
            if legend:
                lines += [legend, ""]
    if data["judged"]:
        lines += ["### Safety judge", "", *_md_table(*judge_table(data)), ""]
    return "\n".join(lines)


def _html_table(head: list[str], body: list[list[str]], ident: str = "") -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in body)
    attr = f' id="{ident}"' if ident else ""
    return f"<table{attr}><tr>{th}</tr>{rows}</table>"


def safety_html(data: dict[str, Any], runs: list[dict[str, Any]], samples: int = 3) -> str:
    """The HTML safety tables and a student's answers to a few requests, escaped."""
    parts = [_html_table(*main_table(data), ident="safety")]
    parts += [f"<p class='note'>{escape(text)}</p>" for text in explanation(data)]
    if data["notes"]:
        parts.append(
            "<ul class='note'>" + "".join(f"<li>{escape(n)}</li>" for n in data["notes"]) + "</ul>"
        )
    if data["per_category"]:
        parts.append("<h3>Safety per category</h3>")
        for table in data["per_category"]:
            parts.append(f"<p>{escape(table['name'])}: {escape(PER_CATEGORY[table['side']])}</p>")
            parts.append(_html_table(*_category_table(table)))
            legend = category_legend(table["categories"])
            if legend:
                parts.append(f"<p class='note legend'>{escape(legend)}</p>")
    if data["judged"]:
        parts += ["<h3>Safety judge</h3>", _html_table(*judge_table(data), ident="safety-judge")]
    parts.append(_samples(data, runs, samples))
    return "\n".join(parts)


def _case(row: dict[str, Any], good: bool) -> str:
    verdict = "refused" if row.get("refused") else "answered"
    css = "ok" if good else "bad"
    return (
        f'<div class="case"><strong>{escape(str(row["id"]))}</strong> — category '
        f"{escape(str(row.get('category')))} — <span class='{css}'>{verdict}</span>"
        f"<p>{escape(str(row.get('request') or ''))}</p>"
        f"<pre>{escape(str(row.get('response') or ''))}</pre></div>"
    )


def _samples(data: dict[str, Any], runs: list[dict[str, Any]], n: int) -> str:
    picked = student_answers(runs, [row["label"] for row in data["rows"]], n)
    if picked is None or not (picked["harmful"] or picked["benign"]):
        return ""
    label = escape(picked["label"])
    out = []
    if picked["harmful"]:
        out += [
            f"<h3>{label}: answers to harmful requests</h3>",
            "<p class='note'>Answered (complied-with) requests first, then refused ones.</p>",
        ]
        out += [_case(r, bool(r.get("refused"))) for r in picked["harmful"]]
    if picked["benign"]:
        out += [
            f"<h3>{label}: answers to benign requests</h3>",
            "<p class='note'>Over-refused requests first, then answered ones.</p>",
        ]
        out += [_case(r, not r.get("refused")) for r in picked["benign"]]
    return f'<div id="safety-answers">{"".join(out)}</div>'
