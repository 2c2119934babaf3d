"""Imported trace sets that state answers as text (HuatuoGPT-o1's demo data): verification by
the option text a response states or the set's own ground truth, recorded per kept trace, and
the low-yield warning of a curation that keeps under 10% of its input."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest

from medistill.answers import asks_for_exception, extract_answer
from medistill.answers.extract import prepare
from medistill.answers.textmatch import stated_option
from medistill.curate import CurateConfig, run_curate
from medistill.curate.filters import verify
from medistill.errors import MedistillError
from medistill.store import TraceRecord, TraceStore
from medistill.store.import_mapping import parse_mapping
from medistill.store.importer import import_traces

HUATUO = "reasoning_traces/huatuogpt_o1_demo_data.json"
WHICH = "Which of the following is the most likely diagnosis?"
REASONING = (
    "The patient has an acute ischaemic stroke within the window for thrombolysis. Bleeding "
    "has been excluded on the CT scan, the blood pressure is controlled and the glucose is "
    "normal, so the treatment that restores perfusion is a thrombolytic agent."
)

# (response, options, references, question, expected letter, expected rule)
CASES = [
    # --- real phrasings from the HuatuoGPT-o1 demo file -----------------------------------
    (
        "In summary, the most likely diagnosis considering the sudden and severe presentation "
        "of the current symptoms is caustic ingestion.",
        {"A": "Caustic ingestion", "B": "Diphenhydramine ingestion", "C": "Iron overdose"},
        None,
        WHICH,
        "A",
        "option_text",
    ),
    (  # the rejected alternative is hedged ("While ..."), the stated one counts
        "The most likely diagnosis is renal vein thrombosis. While Wilms tumor is a common "
        "renal issue in this age group, the acute onset points towards renal vein thrombosis.",
        {"A": "Renal vein thrombosis", "B": "Hemolytic syndrome", "C": "Wilm's tumor"},
        None,
        WHICH,
        "A",
        "option_text",
    ),
    (  # possessive: "Hoigne's syndrome" names "Hoigne Syndrome"; "distinguishing it from"
        "The condition likely responsible is Hoigne's syndrome. This rare reaction is "
        "distinguishing it from common reactions like the Jarisch-Herxheimer reaction.",
        {"A": "Jarisch-Herxheimer Reaction", "B": "Hoigne Syndrome", "C": "Schizophrenia"},
        None,
        WHICH,
        "B",
        "option_text",
    ),
    (  # the option is misspelt ("Hypeension"): the set's ground truth names it
        "The lesions are most closely associated with chronic hypertension.",
        {"A": "Hypeension", "B": "Embolism", "C": "A demyelinating disease"},
        {"A": "Hypertension"},
        WHICH,
        "A",
        "ground_truth",
    ),
    (  # an alias is a name, not an alternative
        "This cancer is associated with the MYCL1 oncogene, also known as L-myc.",
        {"A": "bcl-2", "B": "erb-2", "C": "L-myc", "D": "N-myc"},
        None,
        "Which oncogene is associated with this tumor?",
        "C",
        "option_text",
    ),
    (  # a different answer than every option: nothing is read
        "These findings are highly suggestive of methamphetamine use.",
        {"A": "Cocaine use", "B": "Narcolepsy", "C": "Schizophrenia"},
        None,
        WHICH,
        None,
        "none",
    ),
    (  # gold named only as a rejected alternative; the answer is another option
        "The presentation is most consistent with alopecia areata. While other causes exist, "
        "such as tinea capitis, the smooth patches align with alopecia areata.",
        {"A": "Tinea capitis", "B": "Cradle cap", "C": "Alopecia areata"},
        {"A": "Tinea capitis"},
        "Diagnosis is ?",
        "C",
        "option_text",
    ),
    (  # a numeric range names neither end
        "ATP is reduced to 10% of its original level within 20 to 40 minutes of ischemia.",
        {"A": "<2 minutes", "B": "10 minutes", "C": "20 minutes", "D": "40 minutes"},
        None,
        "Approximate time is -",
        None,
        "none",
    ),
    (  # two options stated affirmatively: ambiguous, never the first one
        "In the UK, yellow bags are used for anatomical waste. In the United States, red bags "
        "are used for anatomical waste.",
        {"A": "Yellow", "B": "Black", "C": "Red", "D": "Blue"},
        None,
        "The colour of the bag is -",
        None,
        "ambiguous",
    ),
    (  # a question asking for the exception is read by letter only
        "Aspergillus fumigatus is the least likely diagnosis here.",
        {"A": "Candida tropicalis", "B": "Cryptococcus neoformans", "D": "Aspergillus fumigatus"},
        None,
        "All of the following are the most likely diagnosis except -",
        None,
        "none",
    ),
    # --- adversarial ---------------------------------------------------------------------
    ("The answer is not heparin.", {"A": "Aspirin", "B": "Heparin"}, None, WHICH, None, "none"),
    (
        "Heparin is unlikely here; warfarin is the drug of choice.",
        {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"},
        None,
        WHICH,
        "C",
        "option_text",
    ),
    (
        "We should rule out heparin-induced thrombocytopenia, rather than aspirin allergy.",
        {"A": "Aspirin allergy", "B": "Heparin-induced thrombocytopenia"},
        None,
        WHICH,
        None,
        "none",
    ),
    (
        "Both aspirin and heparin are appropriate first steps.",
        {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"},
        None,
        WHICH,
        None,
        "ambiguous",
    ),
    (
        "It isn't warfarin. Aspirin is the answer.",
        {"A": "Aspirin", "B": "Heparin", "C": "Warfarin"},
        None,
        WHICH,
        "A",
        "option_text",
    ),
    (  # the longer option text wins over the one it contains
        "Give aspirin and clopidogrel now.",
        {"A": "Aspirin", "B": "Aspirin and clopidogrel", "C": "Heparin"},
        None,
        WHICH,
        "B",
        "option_text",
    ),
    (  # "All" / letter codes are never read as text
        "All of these foods are high in purines, and ab initio we avoid them.",
        {"A": "ab", "B": "bd", "C": "All", "D": "None"},
        None,
        "Which foods?",
        None,
        "none",
    ),
    (  # a word inside another word is not a mention
        "Hyperkalemia explains the ECG.",
        {"A": "Kalemia", "B": "Hypokalemia"},
        None,
        WHICH,
        None,
        "none",
    ),
]


@pytest.mark.parametrize(("text", "options", "refs", "question", "letter", "rule"), CASES)
def test_stated_text_cases(text, options, refs, question, letter, rule):
    """The prose-answer rule on the prepared answer region, and the extractor's lenient
    reading through it (a set's own answer text is not read: eval has none, and curation
    reads what eval reads)."""
    if rule == "ground_truth":  # a misspelt option named only by the set's reference
        letter, rule = None, "none"
    region = prepare(text, options, None)[0]
    e = stated_option(region, options, question=question)
    assert (e.letter, e.rule) == (letter, rule)
    if letter is not None:
        read = extract_answer(text, options, mode="lenient", question=question)
        assert (read.letter, read.rule) == (letter, "stated_text")
        assert extract_answer(text, options, mode="strict", question=question).letter is None


def test_asks_for_exception_reads_the_ask_not_the_stem():
    assert asks_for_exception("Which of the following is NOT a cause?")
    assert asks_for_exception("True about X, except:")
    stem = "The cells do not stain for LCA. Which oncogene is associated with this tumor?"
    assert not asks_for_exception(stem)


def _record(text: str, *, endpoint: str | None, gold: str = "D", qid: str = "q") -> TraceRecord:
    opts = {"A": "Aspirin", "B": "Heparin", "C": "Warfarin", "D": "Alteplase"}
    q = f"Question {qid}: a 64-year-old presents with sudden weakness. Best drug?"
    return TraceRecord(
        key=hashlib.sha256(f"{qid}/{text}/{endpoint}".encode()).hexdigest(),
        question_id=qid,
        sample_index=0,
        teacher="teacher-x",
        messages=[{"role": "user", "content": q}],
        params={"imported_from": "x.json"} if endpoint else {"temperature": 0.7},
        text=text,
        finish_reason="stop",
        source="unit",
        question=q,
        options=opts,
        gold=gold,
        reasoning=REASONING,
        endpoint=endpoint,
    )


def _row(r: TraceRecord) -> dict:
    return {**vars(r), "truncated": r.truncated}


def test_text_verification_reads_what_evaluation_reads_and_is_recorded():
    """One reading: every trace (imported or the project's own) is read by the extractor's
    stated_text rule in lenient mode, as evaluation reads it; strict reads no prose answer,
    as the correctness reward does not; the verdict records how."""
    prose = "The treatment that restores perfusion here is alteplase."
    opts = _record(prose, endpoint=None).options
    for endpoint in (None, "import:x.json"):
        v = verify(_row(_record(prose, endpoint=endpoint)), mode="lenient")
        assert (v.reason, v.verified_by, v.letter) == (None, "option_text", "D")
        assert v.assistant.endswith("The answer is D.")
        assert extract_answer(prose, opts, mode="lenient").rule == "stated_text"
        assert verify(_row(_record(prose, endpoint=endpoint))).reason == "no_answer"
    heparin = _row(_record("Heparin is the drug to give.", endpoint="import:x.json"))
    wrong = verify(heparin, mode="lenient")
    assert (wrong.reason, wrong.detail) == ("incorrect", "answered B, gold D (by option_text)")
    both = verify(_row(_record("Give heparin. Give alteplase.", endpoint="import:x.json")))
    assert both.reason == "no_answer"
    letter = verify(_row(_record("The answer is D.", endpoint="import:x.json")))
    assert (letter.reason, letter.verified_by) == (None, "letter")
    # A trace that weighs every option and concludes none is listed is never kept, though
    # its analysis named the gold option's text affirmatively.
    rejects = (
        "Alteplase restores perfusion. Heparin prevents extension. However the patient "
        "arrived after the window. Therefore, the correct answer is not among the options."
    )
    for mode in ("strict", "lenient"):
        v = verify(_row(_record(rejects, endpoint="import:x.json")), mode=mode)
        assert (v.reason, v.detail) == ("no_answer", "rule=no_option")


def test_text_answers_off_is_refused_and_on_is_deprecated(tmp_path, caplog):
    store = tmp_path / "own.db"
    with TraceStore(store) as s:
        s.put_many([_record("The answer is D.", endpoint=None)])
    cfg = CurateConfig(
        store=str(store), out=str(tmp_path / "o"), eval_benchmarks=[], hf_dataset=False,
        text_answers="off",
    )  # fmt: skip
    with pytest.raises(MedistillError, match="text_answers: off is no longer possible"):
        run_curate(cfg, show_progress=False)
    cfg.text_answers = "on"
    with caplog.at_level(logging.WARNING, logger="medistill"):
        run_curate(cfg, show_progress=False)
    assert any("text_answers is deprecated" in r.getMessage() for r in caplog.records)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_huatuogpt_demo_is_kept_by_stated_text(shared_data, tmp_path):
    """HuatuoGPT-o1's demo responses state the option's text, never a letter: strict mode
    (explicit commitments only, as the correctness reward reads) keeps none and says which
    setting would; lenient mode reads the stated text, each row saying how it was verified."""
    store = tmp_path / "traces.db"
    mapping = parse_mapping(None, "huatuogpt-o1")
    import_traces(shared_data / HUATUO, store, origin="huatuogpt-o1", mapping=mapping)
    with TraceStore(store) as s:
        truths = [r["params"].get("ground_truth") for r in s.iter_rows()]
    assert all(truths) and "Parvovirus B19 infection" in truths
    base = {"store": str(store), "eval_benchmarks": [], "hf_dataset": False}
    strict = run_curate(CurateConfig(**base, out=str(tmp_path / "strict")), show_progress=False)
    assert strict["kept_traces"] == 0
    assert "--extract-mode lenient" in strict["low_yield"]["setting"]
    out = tmp_path / "lenient"
    cfg = CurateConfig(**base, out=str(out), extract_mode="lenient")
    stats = run_curate(cfg, show_progress=False)
    by = stats["kept_by_verification"]
    assert sum(by.values()) == stats["kept_traces"] >= 40
    assert by.get("option_text", 0) > 0 and "ground_truth" not in by
    rows = [r for s in ("train", "validation") for r in _jsonl(out / "messages" / f"{s}.jsonl")]
    assert len(rows) == stats["kept_traces"]
    assert {r["verified_by"] for r in rows} <= {"letter", "option_text"}
    assert all(r["messages"][-1]["content"].endswith(f"The answer is {r['gold']}.") for r in rows)
    card = (out / "README.md").read_text()
    assert "## How kept answers were verified" in card
    assert f"| option_text | {by['option_text']} |" in card
    assert "| ground_truth |" not in card
    assert stats["low_yield"] is None and "low yield" not in card
    assert json.loads((out / "stats.json").read_text())["kept_by_verification"] == by


def test_low_yield_names_the_top_reason_and_the_setting(tmp_path, caplog):
    """A curation keeping under 10% says which reason dropped most and what would change it:
    in stats.json, as a warning in the card, and in the log (the CLI's output)."""
    store = tmp_path / "own.db"
    prose = "Thrombolysis restores perfusion.\n\nHence, D."  # only lenient reads it
    records = [
        _record(prose, endpoint=None, qid=f"q{i} drug {i * 31} dose {i * 7}") for i in range(19)
    ]
    records.append(_record("The answer is D.", endpoint=None, qid="q-letter"))
    with TraceStore(store) as s:
        s.put_many(records)
    out = tmp_path / "out"
    cfg = CurateConfig(
        store=str(store), out=str(out), eval_benchmarks=[], hf_dataset=False, min_tokens=1,
        dedup=False,
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="medistill"):
        stats = run_curate(cfg, show_progress=False)
    assert (stats["kept_traces"], stats["dropped"]["no_answer"]) == (1, 19)
    warning = stats["low_yield"]
    assert warning["top_reason"] == "no_answer" and warning["top_reason_traces"] == 19
    assert "--extract-mode lenient" in warning["setting"]
    assert json.loads((out / "stats.json").read_text())["low_yield"] == warning
    card = (out / "README.md").read_text()
    assert "**Warning: low yield.**" in card and "no_answer (19, 95.0%)" in card
    logged = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("kept 1 of 20 traces" in m and "--extract-mode lenient" in m for m in logged)
    # The setting it names does change it.
    cfg.extract_mode, cfg.out = "lenient", str(tmp_path / "lenient")
    again = run_curate(cfg, show_progress=False)
    assert again["kept_traces"] == 20 and again["low_yield"] is None
    assert again["kept_by_verification"] == {"letter": 20}
