"""The explanation audit's consistency verdict: does the reasoning argue for the answer line?

Realistic responses (written for these tests in the style of what medical models write), read
by the one extractor; each row names the verdict and the option the reasoning concludes.
"""

from __future__ import annotations

import pytest

from medistill.answers.reasoning import (
    VERDICTS,
    reasoning_text,
    reasoning_verdict,
    split_reasoning,
)
from medistill.evaluate.step_judge import parse_verdict, split_steps, weak_judge

QUESTION = (
    "A 34-year-old man has sharp chest pain that improves when he leans forward. ECG shows "
    "diffuse ST elevation with PR depression. Which is the most likely diagnosis?"
)
OPTIONS = {
    "A": "Acute myocardial infarction",
    "B": "Acute pericarditis",
    "C": "Aortic dissection",
    "D": "Pulmonary embolism",
}

CASES = [
    (  # reasoning and answer line agree, the conclusion stated as option text
        "Pain relieved by leaning forward and diffuse ST elevation with PR depression are "
        "classic for inflammation of the pericardium. Therefore, the answer is acute "
        "pericarditis.\n\nThe answer is B.",
        "consistent",
        "B",
    ),
    (  # the reasoning names its letter, the answer line repeats it
        "Step 1: ST elevation is diffuse, not in one territory, so infarction is unlikely.\n"
        "Step 2: PR depression points to the pericardium.\nSo option B is correct.\n\n"
        "Answer: B",
        "consistent",
        "B",
    ),
    (  # the reasoning argues C, the answer line says B
        "Tearing pain radiating to the back with unequal arm pressures points to aortic "
        "dissection, so option C is correct.\n\nAnswer: B",
        "argues_other",
        "C",
    ),
    (  # a conclusion in prose only (option text named, no statement): not read, on purpose
        "Tearing pain radiating to the back points to aortic dissection; pericarditis would "
        "give a rub.\n\nAnswer: B",
        "no_conclusion",
        None,
    ),
    (  # think block concludes D, the final line says A
        "<think>\nSudden dyspnoea after a long flight, tachycardia and pleuritic pain: "
        "I would choose D.\n</think>\n\nThe answer is A.",
        "argues_other",
        "D",
    ),
    (  # think block agrees with a bold answer line
        "<think>\nDiffuse ST elevation with PR depression: the answer is (B).\n</think>\n\n"
        "**Answer: B**",
        "consistent",
        "B",
    ),
    (  # the reasoning says the answer is not among the options, then an answer line anyway
        "The findings fit none of these well. The correct answer is not listed among the "
        "options.\n\nAnswer: D",
        "argues_none",
        None,
    ),
    (  # "none of the options fits" then an answer line
        "Nothing here explains the PR depression. None of the options is correct.\n\n"
        "The answer is C.",
        "argues_none",
        None,
    ),
    (  # a bare answer line: no reasoning to audit
        "The answer is B.",
        "no_conclusion",
        None,
    ),
    (  # findings listed, nothing concluded, then the answer
        "Findings: young man, positional chest pain, diffuse ST elevation, PR depression.\n\n"
        "The answer is B.",
        "no_conclusion",
        None,
    ),
    (  # no answer line at all
        "Let me consider each option. Myocardial infarction would give regional changes.",
        "no_answer",
        None,
    ),
    (  # an unfinished think block: no answer
        "<think>\nThe pain is positional, so the pericardium",
        "no_answer",
        None,
    ),
]


EXCEPT_Q = "All of the following drugs can cause hyperkalaemia EXCEPT:"
EXCEPT_OPTIONS = {"A": "Spironolactone", "B": "Lisinopril", "C": "Furosemide", "D": "Trimethoprim"}


def test_exception_question_reads_only_an_answer_statement() -> None:
    """On an EXCEPT question, "option A is correct" judges a statement, not the answer."""
    text = (
        "Option A is correct: spironolactone spares potassium. Option B is correct too. "
        "Furosemide wastes potassium.\n\nThe answer is C."
    )
    v = reasoning_verdict(text, EXCEPT_OPTIONS, question=EXCEPT_Q)
    assert (v.verdict, v.concluded) == ("no_conclusion", None)
    v = reasoning_verdict(
        "Furosemide lowers potassium, so the answer is C.\n\nAnswer: C",
        EXCEPT_OPTIONS,
        question=EXCEPT_Q,
    )
    assert (v.verdict, v.concluded) == ("consistent", "C")


@pytest.mark.parametrize(("text", "verdict", "concluded"), CASES)
def test_reasoning_verdict_table(text: str, verdict: str, concluded: str | None) -> None:
    v = reasoning_verdict(text, OPTIONS, question=QUESTION)
    assert (v.verdict, v.concluded) == (verdict, concluded), v
    assert v.verdict in VERDICTS
    assert v.inconsistent == (verdict in ("argues_other", "argues_none"))


def test_split_reasoning_cuts_at_the_final_statement() -> None:
    text = "<think>\nPositional pain.\n</think>\n\nIt is pericarditis.\nThe answer is B."
    reasoning, answer = split_reasoning(text, OPTIONS)
    assert answer == "B"
    assert reasoning == "<think>\nPositional pain.\n</think>\n\nIt is pericarditis.\n"
    assert reasoning_text(reasoning) == "Positional pain.\n\nIt is pericarditis."
    assert split_reasoning("No answer here.", OPTIONS) == ("No answer here.", None)


def test_steps_and_verdict_words() -> None:
    steps = split_steps(
        "Step 1:\nThe ST elevation is diffuse.\n\n1. PR depression suggests pericarditis.\n"
        "2. Leaning forward relieves pericardial pain.\n\nSo B."
    )
    assert steps == [
        "Step 1: The ST elevation is diffuse.",
        "1. PR depression suggests pericarditis.",
        "2. Leaning forward relieves pericardial pain. So B.",
    ]
    long = " ".join(
        f"Finding {i} is explained by inflammation of the pericardium, as the ECG shows."
        for i in range(6)
    )
    assert len(split_steps(long)) == 6  # a long paragraph is judged sentence by sentence
    assert parse_verdict("The step is incorrect: WRONG") == "wrong"
    assert parse_verdict("CANT_TELL") == "cant_tell"
    assert parse_verdict("Correct.") == "correct"
    assert parse_verdict("no idea") is None
    # a verdict word inside a sentence is no verdict (a small judge writes these)
    assert parse_verdict("The correct step is to examine the left coronary artery.") is None
    assert parse_verdict('{"verdict": "WRONG"}') == "wrong"
    assert weak_judge("SmolLM2-135M-Instruct") and weak_judge("qwen2.5-1.5b")
    assert weak_judge("Llama-3.1-70B") is False and weak_judge("gpt-4o") is None
