"""The "as deployed" figures: two runs paired answer by answer (McNemar), ``measured.json``
beside an export, and the rows the report, model card and explain page carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy.stats import binomtest

from medistill.answers.refusal import refusal_family
from medistill.errors import MedistillError
from medistill.evaluate.paired import compare_runs, mcnemar_exact
from test_audit_llamacpp import tiny_pair  # noqa: F401  (a fixture: a tiny model and its GGUF)


def _run(folder: Path, benchmark: str, rows: list[dict], metrics: dict | None = None) -> Path:
    """A run folder as run_eval leaves it: predictions.jsonl and metrics.json."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    (folder / "metrics.json").write_text(
        json.dumps({"benchmark": benchmark, **(metrics or {})}), encoding="utf-8"
    )
    return folder


def _mcq(answers: list[str | None], gold: str = "A") -> list[dict]:
    return [
        {"id": f"q{i}", "gold": gold, "extracted": a, "finish_reason": "stop"}
        for i, a in enumerate(answers)
    ]


# ------------------------------------------------------------------------------- McNemar


@pytest.mark.parametrize(
    ("b", "c", "want"),
    [
        (0, 0, 1.0),
        (1, 0, 1.0),
        (0, 5, 0.0625),  # 2 * (1/2)^5
        (2, 8, 0.109375),  # 2 * (1 + 10 + 45) / 1024
        (8, 2, 0.109375),
        (5, 5, 1.0),
    ],
)
def test_mcnemar_exact_known_values(b: int, c: int, want: float) -> None:
    assert mcnemar_exact(b, c) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("b", "c"), [(3, 17), (40, 61), (0, 30), (250, 310), (1, 1)])
def test_mcnemar_exact_matches_scipy_binomial(b: int, c: int) -> None:
    want = binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert mcnemar_exact(b, c) == pytest.approx(want, rel=1e-9)


def test_mcnemar_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="b=-1"):
        mcnemar_exact(-1, 2)


# ------------------------------------------------------------------------ pairing (MCQ)


def test_compare_runs_mcq_counts_each_way(tmp_path: Path) -> None:
    # gold A everywhere; q0 both right; q1 base right run wrong (b); q2,q3 run right base
    # wrong (c); q4 both wrong but different letters (changed, not discordant); q5 both None
    base = _run(tmp_path / "base", "sample", _mcq(["A", "A", "B", "C", "B", None]))
    run = _run(tmp_path / "run", "sample", _mcq(["A", "C", "A", "A", "D", None]))
    got = compare_runs(run, base)
    assert got["metric"] == "correct"
    assert got["n_paired"] == 6
    assert (got["b"], got["c"]) == (1, 2)
    assert got["changed"] == 4  # q1, q2, q3, q4
    assert got["mcnemar_p"] == pytest.approx(1.0)
    assert got["benchmark"] == "sample"


def test_compare_runs_pairs_by_id_not_by_order(tmp_path: Path) -> None:
    base_rows = _mcq(["A", "B", "A"])
    run_rows = list(reversed(_mcq(["A", "B", "A"])))  # same answers, written in another order
    base = _run(tmp_path / "base", "sample", base_rows)
    run = _run(tmp_path / "run", "sample", run_rows)
    got = compare_runs(run, base)
    assert (got["changed"], got["b"], got["c"]) == (0, 0, 0)


def test_compare_runs_subset_and_error_rows(tmp_path: Path) -> None:
    # the deployed run asked a limit of the questions; an error row is left out of the pairs
    base = _run(tmp_path / "base", "sample", _mcq(["A"] * 10))
    rows = _mcq(["B", "A", "A", "A"])
    rows[1]["finish_reason"] = "error"
    rows[1]["extracted"] = None
    run = _run(tmp_path / "run", "sample", rows)
    got = compare_runs(run, base)
    assert got["n_paired"] == 3 and got["n_run"] == 3 and got["n_baseline"] == 10
    assert (got["b"], got["c"], got["changed"]) == (1, 0, 1)


def test_compare_runs_significant_shift(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "sample", _mcq(["A"] * 12))
    run = _run(tmp_path / "run", "sample", _mcq(["B"] * 10 + ["A"] * 2))
    got = compare_runs(run, base)
    assert (got["b"], got["c"]) == (10, 0)
    assert got["mcnemar_p"] == pytest.approx(2 / 1024)


def test_compare_runs_refuses_other_benchmark(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "medqa", _mcq(["A"]))
    run = _run(tmp_path / "run", "sample", _mcq(["A"]))
    with pytest.raises(MedistillError, match="different benchmarks"):
        compare_runs(run, base)


def test_compare_runs_refuses_no_common_ids(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "sample", _mcq(["A"]))
    rows = _mcq(["A"])
    rows[0]["id"] = "other"
    run = _run(tmp_path / "run", "sample", rows)
    with pytest.raises(MedistillError, match="no question id in common"):
        compare_runs(run, base)


def test_compare_runs_refuses_different_gold(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "mcq", _mcq(["A"], gold="A"))
    run = _run(tmp_path / "run", "mcq", _mcq(["A"], gold="B"))
    with pytest.raises(MedistillError, match="different data under the same ids"):
        compare_runs(run, base)


def test_compare_runs_refuses_missing_predictions(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "sample", _mcq(["A"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedistillError, match=r"no predictions\.jsonl"):
        compare_runs(tmp_path / "empty", base)


# --------------------------------------------------------------------- pairing (safety)

REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Take the usual dose with food and see your doctor if it persists."


def _safety(responses: list[tuple[str, str]]) -> list[dict]:
    return [
        {
            "id": f"s{i}",
            "expect": expect,
            "response": text,
            "refused": None,  # stale: compare_runs reads the detector as it is now
            "finish_reason": "stop",
        }
        for i, (expect, text) in enumerate(responses)
    ]


def test_compare_runs_safety_both_sides(tmp_path: Path) -> None:
    base = _run(
        tmp_path / "base",
        "safety_sample",
        _safety(
            [
                ("refuse", REFUSAL),  # right -> run complies: b
                ("refuse", ANSWER),  # wrong -> run refuses: c
                ("answer", ANSWER),  # right -> run over-refuses: b
                ("answer", ANSWER),  # right, unchanged
            ]
        ),
    )
    run = _run(
        tmp_path / "run",
        "safety_sample",
        _safety([("refuse", ANSWER), ("refuse", REFUSAL), ("answer", REFUSAL), ("answer", ANSWER)]),
    )
    got = compare_runs(run, base)
    assert got["metric"] == "refused"
    assert (got["n_paired"], got["changed"], got["b"], got["c"]) == (4, 3, 2, 1)
    assert got["mcnemar_p"] == pytest.approx(1.0)


def test_compare_runs_refuses_safety_against_mcq(tmp_path: Path) -> None:
    base = _run(tmp_path / "base", "x", _mcq(["A"]))
    rows = _safety([("refuse", REFUSAL)])
    rows[0]["id"] = "q0"
    run = _run(tmp_path / "run", "x", rows)
    with pytest.raises(MedistillError, match="safety run"):
        compare_runs(run, base)


# ------------------------------------------------------------------ measured.json + cards


def _deployed(
    root: Path,
    quant: str,
    benchmark: str,
    rows: list[dict],
    baseline: Path | None,
    gguf: Path,
) -> Path:
    """An eval-deployed folder: run_eval's files (metrics from the real metric functions)
    and deployment.json per the pipeline's contract."""
    from medistill.evaluate.metrics import compute_metrics
    from medistill.evaluate.safety_metrics import compute_safety_metrics

    folder = root / f"{quant}-{benchmark}"
    safety = "expect" in rows[0]
    if safety:  # refused as write_safety_metrics reads it
        rows = [{**r, "refused": refusal_family(r["response"]) is not None} for r in rows]
        metrics = compute_safety_metrics(rows, wall_s=2.0 * len(rows))
    else:
        metrics = compute_metrics(rows, chance=0.25, wall_s=2.0 * len(rows))
    metrics.update(label=f"student-{quant}", benchmark=benchmark, mode="generate")
    _run(folder, benchmark, rows, metrics)
    dep = {
        "file": str(gguf.resolve()),
        "file_name": gguf.name,
        "quant": quant,
        "size_bytes": gguf.stat().st_size,
        "sha256": __import__("hashlib").sha256(gguf.read_bytes()).hexdigest(),
        "source_model": str(root / "grpo"),
        "source_stage": "grpo",
        "benchmark": benchmark,
        "unquantised_run": str(baseline) if baseline else None,
        "n_threads": 4,
        "cpu_count": 8,
        "n_parallel": 8,
        "peak_rss_bytes": 1_500_000_000,
        "llama_cpp_version": "0.3.36",
        "comparison": compare_runs(folder, baseline) if baseline else None,
    }
    (folder / "deployment.json").write_text(json.dumps(dep), encoding="utf-8")
    return folder


def _export(folder: Path, files: dict[str, bytes]) -> Path:
    """An export folder as export_model leaves it: the files, the manifest and a card."""
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "medistill_export.json").write_text("{}", encoding="utf-8")
    (folder / "README.md").write_text(
        "# student\n\n## Evaluation\n\nthe HF runs\n\n## Training data\n\nsome data\n",
        encoding="utf-8",
    )
    return folder


def _mcq_rows(answers: list[str | None]) -> list[dict]:
    rows = _mcq(answers)
    for r in rows:
        r.update(output_tokens=100, rule="answer_line", extracted_strict=r["extracted"])
    return rows


@pytest.fixture
def measured_run(tmp_path: Path) -> dict:
    """A pipeline-shaped run: the HF student's eval, an export (hf + one GGUF), and the GGUF's
    deployed eval on an MCQ benchmark (2 answers changed of 8) and a safety one."""
    from medistill.deploy.measured import write_measured
    from medistill.evaluate.metrics import compute_metrics

    base_rows = _mcq_rows(["A"] * 6 + ["B"] * 2)
    base_metrics = compute_metrics(base_rows, chance=0.25, wall_s=8.0)
    base_metrics.update(label="student", mode="generate")
    base = _run(tmp_path / "eval" / "student-sample", "sample", base_rows, base_metrics)
    export = tmp_path / "export"
    _export(export / "hf", {"model.safetensors": b"weights"})
    q4 = _export(export / "gguf-q4_k_m", {"student-q4_k_m.gguf": b"GGUF q4 bytes"})
    gguf = q4 / "student-q4_k_m.gguf"
    mcq = _deployed(
        tmp_path / "eval-deployed",
        "q4_k_m",
        "sample",
        _mcq_rows(["A"] * 5 + ["C"] + ["A", "B"]),  # q5 right->wrong (b), q6 wrong->right (c)
        base,
        gguf,
    )
    safety = _deployed(
        tmp_path / "eval-deployed",
        "q4_k_m",
        "safety_sample",
        _safety([("refuse", REFUSAL), ("refuse", ANSWER), ("answer", ANSWER)]),
        None,
        gguf,
    )
    path = write_measured(export, [mcq, safety])
    return {
        "path": path,
        "export": export,
        "gguf": gguf,
        "mcq": mcq,
        "safety": safety,
        "base": base,
    }


def test_write_measured_json(measured_run: dict) -> None:
    record = json.loads(measured_run["path"].read_text())
    assert measured_run["path"] == measured_run["export"] / "measured.json"
    (entry,) = record["files"]  # one GGUF, two benchmarks
    assert entry["file_name"] == "student-q4_k_m.gguf" and entry["quant"] == "q4_k_m"
    assert entry["size_bytes"] == len(b"GGUF q4 bytes")
    mcq, safety = entry["benchmarks"]
    assert mcq["kind"] == "mcq" and mcq["n"] == 8
    assert mcq["accuracy"]["value"] == pytest.approx(6 / 8)
    assert mcq["accuracy"]["ci_low"] < 0.75 < mcq["accuracy"]["ci_high"]
    assert mcq["no_answer_rate"] == 0.0 and mcq["tokens_per_answer"] == 100
    assert mcq["seconds_per_answer"] == pytest.approx(2.0)
    assert mcq["peak_rss_bytes"] == 1_500_000_000 and mcq["n_threads"] == 4
    c = mcq["comparison"]
    assert (c["n_paired"], c["changed"], c["b"], c["c"]) == (8, 2, 1, 1)
    assert mcq["delta"] == 0.0 and c["mcnemar_p"] == 1.0
    assert safety["kind"] == "safety" and safety["comparison"] is None
    assert safety["refusal_rate"]["value"] == pytest.approx(0.5)
    assert safety["over_refusal_rate"]["value"] == 0.0
    for sub in ("hf", "gguf-q4_k_m"):  # a copy in each export folder
        assert json.loads((measured_run["export"] / sub / "measured.json").read_text()) == record


def test_write_measured_cards(measured_run: dict) -> None:
    export = measured_run["export"]
    q4 = (export / "gguf-q4_k_m" / "README.md").read_text()
    hf = (export / "hf" / "README.md").read_text()
    for card in (q4, hf):
        assert card.index("## Evaluation") < card.index("## As deployed")
        assert card.index("## As deployed") < card.index("## Training data")
        assert "75.0% [" in card  # accuracy with its CI
        assert "2/8 changed, +0.0 pts, p=1" in card
        assert "4/8 threads, 8 parallel" in card
        assert "1.50 GB" in card  # peak memory
        assert "refused harmful" in card and "50.0% [" in card
    assert "**student-q4_k_m.gguf (q4_k_m, 0.0 kB)** (this file)" in q4
    assert "(this file)" not in hf


def test_write_measured_again_replaces_the_section(measured_run: dict) -> None:
    from medistill.deploy.measured import write_measured

    write_measured(measured_run["export"], [measured_run["mcq"]])
    card = (measured_run["export"] / "gguf-q4_k_m" / "README.md").read_text()
    assert card.count("## As deployed") == 1
    assert "refused harmful" not in card  # the safety run is no longer measured
    write_measured(measured_run["export"], [])
    card = (measured_run["export"] / "gguf-q4_k_m" / "README.md").read_text()
    assert card.count("## As deployed") == 1 and "Not measured" in card


def test_write_measured_refuses_a_plain_eval_folder(tmp_path: Path) -> None:
    from medistill.deploy.measured import write_measured

    plain = _run(tmp_path / "eval" / "x", "sample", _mcq(["A"]))
    with pytest.raises(MedistillError, match=r"no deployment\.json"):
        write_measured(tmp_path / "export", [plain])


def test_served_file_finds_its_figures(measured_run: dict, tmp_path: Path) -> None:
    from medistill.deploy.measured import served_file

    info = served_file(measured_run["gguf"])
    assert info["quant"] == "q4_k_m" and info["size_bytes"] == len(b"GGUF q4 bytes")
    assert [r["benchmark"] for r in info["measured"]] == ["sample", "safety_sample"]
    # the export folder names the same file
    assert served_file(measured_run["gguf"].parent)["sha256"] == info["sha256"]
    # the GGUF's export folder copied alone to another machine keeps its figures
    copied = tmp_path / "ward" / "student-q4_k_m"
    __import__("shutil").copytree(measured_run["gguf"].parent, copied)
    assert served_file(copied / "student-q4_k_m.gguf")["measured"] == info["measured"]
    # another file of the same name, not measured: no figures borrowed
    other = tmp_path / "elsewhere" / "student-q4_k_m.gguf"
    other.parent.mkdir()
    other.write_bytes(b"other bytes")
    assert served_file(other)["measured"] is None
    # the same name beside the measured.json but other bytes (re-exported): not measured
    measured_run["gguf"].write_bytes(b"GGUF q4 bytes, re-exported")
    assert served_file(measured_run["gguf"])["measured"] is None


# ------------------------------------------------------------------------------ the report


def test_report_as_deployed_rows(measured_run: dict, tmp_path: Path) -> None:
    from medistill.report import build_report

    # the safety folder given among the runs (detected by its deployment.json), the MCQ one
    # through deployed=: both become "As deployed" rows, neither a model of the results table
    rep = build_report(
        [measured_run["base"], measured_run["safety"] / "metrics.json"],
        tmp_path / "report",
        deployed=[measured_run["mcq"]],
        explanations=0,
    )
    md = rep.markdown
    assert "student-q4_k_m" not in md.split("## As deployed")[0]  # not a results-table row
    section = md.split("## As deployed")[1]
    assert "| student-q4_k_m.gguf (q4_k_m, 0.0 kB) | sample | 8 | 75.0% [" in section
    assert "2/8 changed, +0.0 pts, p=1" in section
    assert "| student-q4_k_m.gguf (q4_k_m, 0.0 kB) | safety_sample | 3 | 50.0% [" in section
    assert "McNemar" in section
    data = json.loads(rep.json_path.read_text())
    assert [r["benchmark"] for r in data["deployed"]] == ["sample", "safety_sample"]
    html = rep.html_path.read_text()
    assert '<h2 id="as-deployed">As deployed</h2>' in html
    assert '<table id="deployed-mcq">' in html and '<table id="deployed-safety">' in html
    assert "1.50 GB" in html


def test_report_without_deployed_folders_has_no_section(measured_run: dict, tmp_path) -> None:
    from medistill.report import build_report

    rep = build_report([measured_run["base"]], tmp_path / "report", explanations=0)
    assert "As deployed" not in rep.markdown
    assert "deployed" not in json.loads(rep.json_path.read_text())


# ------------------------------------------------------------------------ the explain page


def test_explain_page_states_the_served_file_and_its_figures(measured_run: dict) -> None:
    from medistill.deploy.explain import render_page
    from medistill.deploy.measured import served_file

    info = served_file(measured_run["gguf"])
    page = render_page("student", served=info)
    assert "Served file: <code>student-q4_k_m.gguf</code>, q4_k_m" in page
    assert f"sha256 <code>{info['sha256'][:16]}</code>" in page
    assert '<table id="measured">' in page
    assert "accuracy 75.0% [" in page and "refused harmful 50.0% [" in page
    assert "4/8 threads, 8 parallel" in page and "1.50 GB" in page
    assert "not measured" not in page


def test_explain_page_says_not_measured(tmp_path: Path) -> None:
    from medistill.deploy.explain import render_page
    from medistill.deploy.measured import served_file

    gguf = tmp_path / "mine-q8_0.gguf"
    gguf.write_bytes(b"<b>not measured</b>")
    page = render_page("mine", served=served_file(gguf))
    assert "<code>mine-q8_0.gguf</code>, q8_0" in page
    assert "As deployed: <strong>not measured</strong>" in page
    assert '<table id="measured">' not in page
    # a page in front of a server it did not start: it says it does not know the file
    assert "Served file: not known" in render_page("remote")


def test_serve_ui_hands_the_named_file_to_the_page(
    measured_run: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``medistill serve --ui --base-url URL --model FILE``: the page started states FILE's
    figures (uvicorn.run is replaced to catch the app instead of serving forever)."""
    import uvicorn
    from fastapi.testclient import TestClient

    from medistill.deploy.serve import ServeConfig, serve

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    cfg = ServeConfig(model=str(measured_run["gguf"]), ui=True, base_url="http://127.0.0.1:9/v1")
    serve(cfg, announce=lambda _: None)
    (app,) = apps
    client = TestClient(app)
    page = client.get("/").text
    assert "student-q4_k_m.gguf" in page and "accuracy 75.0% [" in page
    health = client.get("/healthz").json()
    assert health["file"] == "student-q4_k_m.gguf" and health["measured"] is True


# ------------------------------------------------- end to end: a real GGUF against its source


def test_real_gguf_against_its_hf_source(
    tiny_pair: tuple[Path, Path],  # noqa: F811 (the imported fixture)
    tmp_path: Path,
) -> None:
    """A tiny student and its q8_0 GGUF answer the same questions through run_eval (HF, then
    llama.cpp): the pairing, measured.json, the card section and the report rows come from
    real run folders."""
    import hashlib
    import os
    import resource

    from medistill.deploy.gguf import llama_cpp_version
    from medistill.deploy.measured import served_file, write_measured
    from medistill.evaluate import run_eval
    from medistill.evaluate.config import EvalConfig
    from medistill.report import build_report

    model, gguf = tiny_pair
    runs = {}
    for bench, limit in (("sample", 4), ("safety_sample", 3)):
        for name, backend, path in (("hf", "transformers", model), ("q8_0", "llamacpp", gguf)):
            out = tmp_path / ("eval" if name == "hf" else "eval-deployed") / f"{name}-{bench}"
            cfg = EvalConfig(
                model=str(path),
                backend=backend,
                benchmark=bench,
                limit=limit,
                max_new_tokens=6,
                audit=False,
                out=str(out),
            )
            run_eval(cfg, show_progress=False)
            runs[name, bench] = out
    export = tmp_path / "export" / "gguf-q8_0"
    export.mkdir(parents=True)
    (export / "medistill_export.json").write_text("{}", encoding="utf-8")
    (export / "README.md").write_text("# s\n\n## Evaluation\n\nx\n", encoding="utf-8")
    os.link(gguf, export / gguf.name)
    deployed = []
    for bench in ("sample", "safety_sample"):
        folder, base = runs["q8_0", bench], runs["hf", bench]
        dep = {
            "file": str((export / gguf.name).resolve()),
            "file_name": gguf.name,
            "quant": "q8_0",
            "size_bytes": gguf.stat().st_size,
            "sha256": hashlib.sha256(gguf.read_bytes()).hexdigest(),
            "source_model": str(model),
            "source_stage": "sft",
            "benchmark": bench,
            "unquantised_run": str(base),
            "n_threads": os.cpu_count(),
            "cpu_count": os.cpu_count(),
            "n_parallel": 1,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "llama_cpp_version": llama_cpp_version("the test"),
            "comparison": compare_runs(folder, base),
        }
        assert dep["comparison"]["n_paired"] == (4 if bench == "sample" else 3)
        assert dep["comparison"]["metric"] == ("correct" if bench == "sample" else "refused")
        (folder / "deployment.json").write_text(json.dumps(dep), encoding="utf-8")
        deployed.append(folder)
    record = json.loads(write_measured(tmp_path / "export", deployed).read_text())
    (entry,) = record["files"]
    assert [r["n"] for r in entry["benchmarks"]] == [4, 3]
    assert all(r["seconds_per_answer"] > 0 for r in entry["benchmarks"])
    assert "## As deployed" in (export / "README.md").read_text()
    assert served_file(export / gguf.name)["measured"][0]["benchmark"] == "sample"
    rep = build_report(
        [runs["hf", "sample"], runs["hf", "safety_sample"], *deployed],
        tmp_path / "report",
        explanations=0,
    )
    section = rep.markdown.split("## As deployed")[1]
    assert f"| {gguf.name} (q8_0," in section and "/4 changed" in section


# ------------------------------------------------------------------------------ in chromium


def test_as_deployed_in_chromium(watched_page, measured_run: dict, tmp_path: Path) -> None:
    """The explain page's served-file box and the report's As deployed tables, as a browser
    shows them: visible, carrying the figures, without console errors."""
    from medistill.deploy.explain import Explainer, create_app
    from medistill.deploy.measured import served_file
    from medistill.report import build_report

    from chat_server import AppServer

    page, problems = watched_page
    served = served_file(measured_run["gguf"])
    explainer = Explainer("http://127.0.0.1:9/v1", "student", served=served)
    with AppServer(create_app(explainer)) as ui:
        page.goto(ui.url + "/")
        assert "student-q4_k_m.gguf" in page.locator("#served-file").inner_text()
        table = page.locator("#measured")
        assert table.is_visible() and "75.0%" in table.inner_text()
        page.screenshot(path=str(tmp_path / "explain-served.png"), full_page=True)
    rep = build_report(
        [measured_run["base"], measured_run["mcq"], measured_run["safety"]],
        tmp_path / "report",
        explanations=0,
    )
    page.goto(rep.html_path.as_uri())
    for table in ("#deployed-mcq", "#deployed-safety"):
        assert page.locator(table).is_visible()
    assert "2/8 changed" in page.locator("#deployed-mcq").inner_text()
    assert problems == []


def test_report_of_deployed_folders_alone_is_refused(measured_run: dict, tmp_path) -> None:
    from medistill.report import build_report

    with pytest.raises(MedistillError, match="add at least one plain eval run folder"):
        build_report([measured_run["mcq"]], tmp_path / "report")
