"""The HTML report in a real headless browser (Debian's chromium driven by Playwright).

It must open without console errors, show the results table, both plots and the sample
explanations, and render a model output containing ``<script>`` as text.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from medistill.data import load_benchmark
from medistill.evaluate import EvalConfig, run_eval
from medistill.report import build_report

from chat_server import ChatServer

SAMPLE = {q.question.strip(): q for q in load_benchmark("sample").questions}
EVIL = '<script>document.title="pwned";console.error("xss")</script><img src=x onerror=alert(1)>'


def _answerer(correct: bool, evil: bool = False):
    def respond(messages: list[dict]) -> str:
        user = messages[-1]["content"]
        q = next(q for text, q in SAMPLE.items() if user.startswith(text))
        wrong = "A" if q.gold != "A" else "B"
        letter = q.gold if correct else wrong
        extra = f"\nThe patient's note said {EVIL}" if evil else ""
        return f"Considering {q.subject}, option {letter} fits.{extra}\nThe answer is {letter}."

    return respond


@pytest.fixture(scope="module")
def report_html(tmp_path_factory, curated_dataset: Path) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    runs = []
    for label, responder in (
        ("teacher: served", _answerer(True)),
        ("student: SFT", lambda m, n=[0]: _mixed(m, n)),
    ):
        with ChatServer(responder) as srv:
            out = tmp / label.replace(": ", "-")
            cfg = EvalConfig(
                model="served",
                backend="openai",
                base_url=[srv.url],
                limit=8,
                out=str(out),
                label=label,
            )
            run_eval(cfg, show_progress=False)
            runs.append(out)
    rep = build_report(runs, tmp / "report", title="Browser <check>", dataset=curated_dataset)
    return rep.html_path


def _mixed(messages: list[dict], counter: list[int]) -> str:
    """Right on even calls, wrong (and quoting a script) on odd ones."""
    counter[0] += 1
    return _answerer(counter[0] % 2 == 0, evil=True)(messages)


def test_report_renders_in_chromium(watched_page, report_html: Path, tmp_path: Path) -> None:
    html = report_html.read_text(encoding="utf-8")
    assert "<script" not in html  # no script of ours, and none of the model's survives
    assert "http://" not in html and "https://" not in html  # self-contained
    page, problems = watched_page
    page.goto(report_html.as_uri())
    page.wait_for_load_state("load")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    for selector in ("#results", "#cost", "#plot-accuracy", "#plot-tokens", "#data-card"):
        assert page.locator(selector).is_visible(), selector
    for img in ("#plot-accuracy", "#plot-tokens"):
        assert page.eval_on_selector(img, "e => e.complete && e.naturalWidth > 100"), img
    cases = page.locator("#explanations .case")
    assert cases.count() >= 2 and cases.first.is_visible()
    text = page.locator("#explanations").inner_text()
    assert EVIL in text  # shown as the model wrote it, as text
    assert page.title() == "Browser <check>"  # the injected script never ran
    assert page.locator("script").count() == 0
    assert page.locator("#results").inner_text().count("student: SFT") == 1
    assert problems == []
    assert shot.stat().st_size > 20_000
