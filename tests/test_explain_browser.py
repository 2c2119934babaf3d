"""The explain page in a real headless browser (Debian's chromium driven by Playwright): a
clinician's question is submitted, the reasoning and the answer appear, a pasted ``<script>``
is shown as text and never runs, an answer whose reasoning argues for another option is marked,
bad input gets a message. Screenshots are taken."""

from __future__ import annotations

from pathlib import Path

from medistill.deploy.explain import Explainer, create_app

from chat_server import AppServer, ChatServer

EVIL = '<script>document.title="pwned";console.error("xss")</script><img src=x onerror=alert(1)>'
QUESTION = (
    "A 4-year-old boy has a 2-day history of a barking cough, hoarseness and inspiratory "
    "stridor that worsens at night. Which organism most likely causes this? " + EVIL
)
OPTIONS = "A. Parainfluenza virus\nB. Haemophilus influenzae type b\nC. Streptococcus pyogenes"


def _reasoner(messages: list[dict]) -> str:
    user = messages[-1]["content"]
    assert EVIL in user  # the model sees exactly what was pasted
    return (
        "Step 1: barking cough, hoarseness and stridor in a young child are croup.\n"
        f"Step 2: the pasted note contained {EVIL}, which is not clinical information.\n"
        "Step 3: croup is laryngotracheobronchitis, most often from parainfluenza virus.\n"
        "The answer is A."
    )


def test_explain_page_in_chromium(watched_page, tmp_path: Path) -> None:
    page, problems = watched_page
    with (
        ChatServer(_reasoner) as chat,
        AppServer(create_app(Explainer(chat.url, "student-q8_0"))) as ui,
    ):
        outside: list[str] = []
        page.on("request", lambda r: None if r.url.startswith(ui.url) else outside.append(r.url))

        page.goto(ui.url + "/")
        assert "Not for clinical use" in page.locator("#notice").inner_text()
        page.fill("#question", QUESTION)
        page.fill("#options", OPTIONS)
        page.click("#ask")
        page.wait_for_selector("#answer", timeout=30_000)

        answer = page.locator("#answer").inner_text()
        assert "A" in answer and "Parainfluenza virus" in answer
        reasoning = page.locator("#reasoning").inner_text()
        assert "croup" in reasoning and EVIL in reasoning  # shown as the model wrote it
        assert "tokens in" in page.locator("#figures").inner_text()
        assert page.locator("#question").input_value() == QUESTION  # kept for a follow-up
        assert page.title() == "medistill explain: student-q8_0"  # the pasted script never ran
        assert page.locator("script").count() == 0
        assert page.locator("img").count() == 0  # the pasted <img onerror> is text too
        shot = tmp_path / "explain.png"
        page.screenshot(path=str(shot), full_page=True)

        assert page.locator("#inconsistent").count() == 0  # the reasoning supports A

        # reasoning that argues for A under an answer line that says B: marked on the page
        chat.responder = lambda messages: (
            "Croup is most often caused by parainfluenza virus, so the answer is A.\n\n"
            "Final answer: B"
        )
        page.click("#ask")
        page.wait_for_selector("#inconsistent", timeout=30_000)
        mark = page.locator("#inconsistent").inner_text()
        assert "argues for A, the answer line says B" in mark
        page.screenshot(path=str(tmp_path / "explain-inconsistent.png"), full_page=True)

        assert problems == []
        # bad input: one option only -> a message on the page (HTTP 400), the model is not asked
        asked = chat.stats["requests"]
        page.fill("#options", "A. Parainfluenza virus")
        page.click("#ask")
        page.wait_for_selector("#error", timeout=30_000)
        assert "at least two options" in page.locator("#error").inner_text()
        assert chat.stats["requests"] == asked
        page.screenshot(path=str(tmp_path / "explain-error.png"), full_page=True)
    assert all("status of 400" in m for m in problems), problems
    assert outside == []  # nothing left the machine
    assert shot.stat().st_size > 20_000
