"""The explain page: a clinician pastes a question and its options and reads the student's
reasoning and final answer (``medistill serve --ui``).

A small FastAPI app in front of a local OpenAI-compatible server (the one ``medistill serve``
starts). The prompt is eval's (``prompts``), the answer is read by the shared extractor, so
the page shows what an evaluation would have scored; the reasoning is read against the answer
line as the evaluation's audit reads it (:func:`~medistill.answers.reasoning.reasoning_verdict`),
and an answer whose reasoning argues for another option, or for none, is marked. The page is
rendered on the server with every input and output escaped, carries no script at all, and its
Content-Security-Policy forbids scripts and any request to another origin: nothing leaves the
machine, and a pasted ``<script>`` is shown as text.
"""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations at runtime.

import logging
import re
import time
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import parse_qs

from medistill.answers import extract_answer
from medistill.answers.reasoning import reasoning_verdict
from medistill.backends import SamplingParams
from medistill.backends.openai_http import OpenAIBackend
from medistill.data.options import format_options
from medistill.data.schema import Question
from medistill.deploy.measured import pct, seconds_text, size_text, tokens_text, with_ci
from medistill.errors import MedistillError
from medistill.notice import NOT_FOR_CLINICAL_USE_TEXT
from medistill.prompts import get_template

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 6000
MAX_OPTION_CHARS = 1000
MAX_OPTIONS = 10  # A-J, the letters the answer line accepts
MAX_BODY_BYTES = 64_000
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
_LABEL = re.compile(r"^\s*[\(\[]?([A-Za-z])\s*[\)\].:\-]\s*(.*)$")


class BadInput(MedistillError):
    """A question or option list the page refuses, with a message for the clinician."""


def parse_options(text: str) -> dict[str, str]:
    """Options pasted one per line, lettered (``A. x``, ``(B) y``, ``C) z``) or not.

    Unlettered lines are lettered A, B, C... in order; lettered ones must run A, B, C...
    Examples: ``"A. Aspirin\\nB. Heparin"`` -> ``{"A": "Aspirin", "B": "Heparin"}``;
    ``"Aspirin\\nHeparin"`` gives the same.
    """
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 2:
        raise BadInput("Give at least two options, one per line (for example 'A. Aspirin').")
    if len(lines) > MAX_OPTIONS:
        raise BadInput(f"At most {MAX_OPTIONS} options (A-J); {len(lines)} lines were given.")
    labelled = [_LABEL.match(line) for line in lines]
    options: dict[str, str] = {}
    for i, (line, m) in enumerate(zip(lines, labelled, strict=True)):
        expected = "ABCDEFGHIJ"[i]
        if all(labelled):
            letter, body = m.group(1).upper(), m.group(2).strip()
            if letter != expected:
                raise BadInput(
                    f"Option line {i + 1} is lettered {letter!r}; options must run A, B, C... "
                    f"in order (expected {expected!r})."
                )
        else:
            body = line
        if not body:
            raise BadInput(f"Option {expected} (line {i + 1}) is empty.")
        if len(body) > MAX_OPTION_CHARS:
            raise BadInput(
                f"Option {expected} is too long ({len(body)} characters; at most "
                f"{MAX_OPTION_CHARS})."
            )
        options[expected] = body
    return options


def check_question(question: str) -> str:
    """The question stem, stripped; empty or oversized ones are refused."""
    question = question.strip()
    if not question:
        raise BadInput("Enter the question (the stem) before asking.")
    if len(question) > MAX_QUESTION_CHARS:
        raise BadInput(
            f"The question is too long ({len(question)} characters; at most {MAX_QUESTION_CHARS})."
        )
    return question


@dataclass
class Explained:
    """One answered question, as the page shows it."""

    reasoning: str
    letter: str | None
    option: str | None
    rule: str
    finish_reason: str
    cut_off: bool
    output_tokens: int | None
    prompt_tokens: int | None
    seconds: float
    #: does the reasoning support the answer line: ``consistent``, ``argues_other``,
    #: ``argues_none``, ``no_conclusion`` or ``no_answer`` (reasoning_verdict's verdicts)
    verdict: str = "no_answer"
    #: the option the reasoning before the final answer statement argues for, if any
    concluded: str | None = None
    #: the answer line's letter (strict reading), compared with ``concluded``
    answer_line: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``POST /api/explain``)."""
        return dict(self.__dict__)


class Explainer:
    """Asks the served model one question with eval's prompt, reads the answer."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        max_new_tokens: int = 1024,
        template: str = "cot",
        api_key_env: str = "OPENAI_API_KEY",
        served: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        #: the file served and its measured figures
        #: (:func:`medistill.deploy.measured.served_file`); ``None``: not known
        self.served = served
        self.base_url = base_url
        self.template = get_template(template)
        self.max_new_tokens = max_new_tokens
        self.backend = OpenAIBackend(
            model,
            base_url=base_url,
            api_key_env=api_key_env,
            concurrency=1,
            max_retries=1,
            backoff_base_s=0.2,
            backoff_max_s=1.0,
            neutral_penalties=True,
        )

    async def explain(self, question: str, options_text: str) -> Explained:
        """Validate, ask, extract. :class:`BadInput` for the clinician's mistakes,
        :class:`MedistillError` when the model server fails."""
        stem = check_question(question)
        options = parse_options(options_text)
        q = Question(id="explain", source="explain", split="ui", question=stem, options=options)
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=0.0)
        started = time.perf_counter()
        try:
            (gen,) = await self.backend.agenerate([self.template.messages(q)], params)
        except MedistillError as e:
            raise MedistillError(f"The model server at {self.base_url} failed: {e}") from None
        seconds = time.perf_counter() - started
        text = gen.full_text()
        found = extract_answer(text, options, truncated=gen.truncated, question=stem)
        audit = reasoning_verdict(text, options, question=stem)
        return Explained(
            reasoning=text,
            letter=found.letter,
            option=options.get(found.letter) if found.letter else None,
            rule=found.rule,
            finish_reason=gen.finish_reason,
            cut_off=gen.truncated,
            output_tokens=gen.output_tokens,
            prompt_tokens=gen.prompt_tokens,
            seconds=round(seconds, 2),
            verdict=audit.verdict,
            concluded=audit.concluded,
            answer_line=audit.answer,
        )


def create_app(explainer: Explainer) -> Any:
    """The FastAPI app: ``GET /`` the form, ``POST /`` the answer page, ``POST /api/explain``
    JSON in and out, ``GET /healthz``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title="medistill explain", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/", response_class=HTMLResponse)
    async def form() -> HTMLResponse:
        return HTMLResponse(render_page(explainer.model, served=explainer.served))

    @app.post("/", response_class=HTMLResponse)
    async def answer(request: Request) -> HTMLResponse:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            msg = f"The text is too long ({len(body)} bytes; at most {MAX_BODY_BYTES})."
            page = render_page(explainer.model, error=msg, served=explainer.served)
            return HTMLResponse(page, status_code=413)
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        question, options = fields.get("question", ""), fields.get("options", "")
        try:
            result = await explainer.explain(question, options)
        except BadInput as e:
            page = render_page(
                explainer.model, question, options, error=str(e), served=explainer.served
            )
            return HTMLResponse(page, status_code=400)
        except MedistillError as e:
            page = render_page(
                explainer.model, question, options, error=str(e), served=explainer.served
            )
            return HTMLResponse(page, status_code=502)
        return HTMLResponse(
            render_page(explainer.model, question, options, result=result, served=explainer.served)
        )

    @app.post("/api/explain")
    async def api(request: Request) -> JSONResponse:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        if not isinstance(data, dict):
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        options = data.get("options", "")
        if isinstance(options, dict):
            options = format_options(options)
        elif isinstance(options, list):
            options = "\n".join(str(o) for o in options)
        try:
            result = await explainer.explain(str(data.get("question", "")), str(options))
        except BadInput as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except MedistillError as e:
            return JSONResponse({"error": str(e)}, status_code=502)
        return JSONResponse(result.to_dict())

    @app.get("/healthz")
    async def health() -> dict[str, Any]:
        served = explainer.served or {}
        return {
            "status": "ok",
            "model": explainer.model,
            "file": served.get("file_name"),
            "sha256": served.get("sha256"),
            "measured": served.get("measured") is not None,
        }

    return app


_CSS = """
body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:1.5rem auto;padding:0 1rem;
color:#1d2733}
h1{font-size:1.4rem;margin-bottom:.2rem} .model{color:#5a6572;margin-top:0}
.notice{background:#fff4e5;border-left:4px solid #d9822b;padding:.6rem .9rem}
.error{background:#fde8e8;border-left:4px solid #c53030;padding:.6rem .9rem}
label{display:block;font-weight:600;margin-top:1rem}
textarea{width:100%;box-sizing:border-box;font:inherit;padding:.4rem}
button{margin-top:1rem;font:inherit;padding:.4rem 1.2rem}
.answer{font-size:1.15rem;background:#e8f4ea;border-left:4px solid #2f855a;padding:.6rem .9rem}
.answer.none{background:#f1f1f1;border-color:#888}
pre{white-space:pre-wrap;word-wrap:break-word;background:#f7f8fa;padding:.8rem;
border:1px solid #dde1e6}
.figures{color:#5a6572} .hint{color:#5a6572;font-size:.9rem}
.served{border:1px solid #dde1e6;padding:.4rem .9rem;font-size:.92rem}
.served table{border-collapse:collapse} .served td,.served th{padding:.15rem .5rem;
text-align:left;border-bottom:1px solid #eef0f2}
"""


def render_page(
    model: str,
    question: str = "",
    options: str = "",
    *,
    result: Explained | None = None,
    error: str | None = None,
    served: dict[str, Any] | None = None,
) -> str:
    """The whole page; every piece of text in it is escaped. ``served``: the file served and
    its measured figures (:func:`medistill.deploy.measured.served_file`)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>medistill explain: {escape(model)}</title><style>{_CSS}</style></head><body>",
        "<h1>Explain a medical multiple-choice answer</h1>",
        f'<p class="model">Model: <code>{escape(model)}</code>, on this machine</p>',
        f'<p class="notice" id="notice"><strong>{escape(NOT_FOR_CLINICAL_USE_TEXT)}</strong></p>',
        served_html(served),
    ]
    if error:
        parts.append(f'<p class="error" id="error" role="alert">{escape(error)}</p>')
    parts += [
        '<form method="post" action="/">',
        '<label for="question">Question</label>',
        f'<textarea id="question" name="question" rows="7" maxlength="{MAX_QUESTION_CHARS}" '
        f"required>{escape(question)}</textarea>",
        '<label for="options">Options, one per line</label>',
        f'<textarea id="options" name="options" rows="5" required '
        f'placeholder="A. ...&#10;B. ...">{escape(options)}</textarea>',
        '<button type="submit" id="ask">Ask the model</button>',
        '<p class="hint">The answer can take a minute on a CPU. Nothing leaves this machine.</p>',
        "</form>",
    ]
    if result is not None:
        parts.append(_result(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def _result(r: Explained) -> str:
    if r.letter:
        answer = (
            f'<p class="answer" id="answer">Answer: <strong>{escape(r.letter)}</strong>'
            f" &mdash; {escape(r.option or '')}</p>"
        )
    else:
        answer = (
            '<p class="answer none" id="answer">No final answer: the model did not commit to '
            "an option the shared extractor can read.</p>"
        )
    cut = (
        '<p class="error" id="cut-off">The answer was cut off before it ended '
        f"({escape(r.finish_reason)}): the model needed more tokens or looped.</p>"
        if r.cut_off
        else ""
    )
    tokens = "?" if r.output_tokens is None else str(r.output_tokens)
    return "\n".join(
        [
            "<h2>Result</h2>",
            answer,
            _mismatch(r),
            cut,
            f'<p class="figures" id="figures">{escape(tokens)} tokens in {r.seconds:.1f} s '
            f"(answer read by rule <code>{escape(r.rule)}</code>)</p>",
            "<h2>Reasoning</h2>",
            f'<pre id="reasoning">{escape(r.reasoning)}</pre>',
        ]
    )


def _mismatch(r: Explained) -> str:
    """A warning when the reasoning does not support the answer line (empty otherwise)."""
    said = escape(r.answer_line or r.letter or "?")
    if r.verdict == "argues_other":
        return (
            '<p class="error" id="inconsistent" role="alert">The reasoning argues for '
            f"<strong>{escape(r.concluded or '?')}</strong>, the answer line says "
            f"<strong>{said}</strong>: the explanation does not support the answer.</p>"
        )
    if r.verdict == "argues_none":
        return (
            '<p class="error" id="inconsistent" role="alert">The reasoning argues for none of '
            f"the options, the answer line says <strong>{said}</strong>: the explanation does "
            "not support the answer.</p>"
        )
    return ""


def served_html(served: dict[str, Any] | None) -> str:
    """Which file the page serves (name, quant, sha256 prefix, size) and that file's figures
    as measured on this kind of machine, or "not measured"."""
    if not served:
        return (
            '<div class="served" id="served"><p>Served file: not known (the page is in front '
            "of a server it did not start). As deployed: <strong>not measured</strong>.</p></div>"
        )
    what = [f"<code>{escape(str(served.get('file_name')))}</code>"]
    if served.get("quant"):
        what.append(escape(str(served["quant"])))
    if served.get("size_bytes") is not None:
        what.append(size_text(served["size_bytes"]))
    if served.get("sha256"):
        what.append(f"sha256 <code>{escape(str(served['sha256'])[:16])}</code>")
    head = f'<p id="served-file">Served file: {", ".join(what)}</p>'
    rows = served.get("measured")
    if not rows:
        body = (
            '<p id="measured">As deployed: <strong>not measured</strong>. This file was not '
            "evaluated as deployed (<code>medistill run</code>'s export and eval-deployed "
            "stages measure the GGUF files they export); its accuracy on this machine is "
            "unknown.</p>"
        )
        return f'<div class="served" id="served">{head}{body}</div>'
    lines = [
        '<table id="measured"><tr><th>benchmark</th><th>n</th><th>score [95% CI]</th>'
        "<th>cut off</th><th>tokens/answer</th><th>s/answer</th><th>peak memory</th></tr>"
    ]
    for r in rows:
        if r.get("kind") == "safety":
            score = f"refused harmful {with_ci(r.get('refusal_rate'))}"
            if r.get("over_refusal_rate"):
                score += f"; over-refused benign {with_ci(r.get('over_refusal_rate'))}"
        else:
            score = f"accuracy {with_ci(r.get('accuracy'))}"
        cells = [
            str(r.get("benchmark")),
            str(r.get("n")),
            score,
            pct(r.get("cut_off")),
            tokens_text(r.get("tokens_per_answer")),
            seconds_text(r),
            size_text(r.get("peak_rss_bytes")),
        ]
        lines.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    lines.append("</table>")
    note = (
        '<p class="hint">As deployed: this file, evaluated through llama.cpp on a CPU with '
        "the same prompts and answer reading as this page. Exam accuracy is not clinical "
        "validity.</p>"
    )
    return f'<div class="served" id="served">{head}{"".join(lines)}{note}</div>'
