"""The answer extractor: a table of what real models write, and the real released outputs."""

from __future__ import annotations

import pytest

from medistill.answers import LENIENT_RULES, STRICT_RULES, extract_answer, match_option_text

OPTS = {
    "A": "Hypothyroidism",
    "B": "4000 mcg",
    "C": "Chlamydia trachomatis",
    "D": "Aspirin and clopidogrel",
}

# (text, strict letter, lenient letter)
CASES = [
    # -- explicit statements
    ("The answer is B.", "B", "B"),
    ("The answer is (B)", "B", "B"),
    ("the answer is: B", "B", "B"),
    ("Therefore, among A through D, the answer is C.", "C", "C"),
    ("Therefore, among A through D, the answer is D) Aspirin and clopidogrel", "D", "D"),
    ("**Answer: B**", "B", "B"),
    ("**Answer:** C", "B" if False else "C", "C"),
    ("Answer: (A)", "A", "A"),
    ("Final Answer: D", "D", "D"),
    ("The correct answer is option C.", "C", "C"),
    ("The correct answer is **C. Chlamydia trachomatis**.", "C", "C"),
    ("So the best answer would be [B].", "B", "B"),
    ("The most likely answer is therefore A.", "A", "A"),
    ("Ans: D", "D", "D"),
    ("Ans. B", "B", "B"),
    ("The final answer is $\\boxed{B}$.", "B", "B"),
    ("\\boxed{C}", "C", "C"),
    ("Thus \\boxed{\\text{D}}", "D", "D"),
    ("\\boxed{(A)}", "A", "A"),
    ("Option B is correct.", "B", "B"),
    ("(C) is the correct answer because chlamydia is the most common cause.", "C", "C"),
    ("I would choose D.", "D", "D"),
    ("I'd go with option A.", "A", "A"),
    ("My final answer is C", "C", "C"),
    ("The answer to this question is B.", "B", "B"),
    ("The answer is likely C.", "C", "C"),
    ("answer: c", "C", "C"),
    ("The answer is A. Hypothyroidism explains the fatigue.", "A", "A"),
    # -- JSON answer fields, parsed or broken
    ('{"step_by_step_thinking": "...", "answer_choice": "C"}', "C", "C"),
    ('{"step_by_step_thinking": "the answer is A", "answer_choice": "B"}', "B", "B"),
    ('{"step_by_step_thinking": "cut off here, "answer_choice": "C"', "C", "C"),
    ('{"answer_choice": "B. 4000 mcg"}', "B", "B"),
    ('{"answer_choice": "Chlamydia trachomatis"}', "C", "C"),
    ('{"answer_choice": "None of the above"}', None, None),
    (
        '{"step_by_step_thinking": "x", "answer_choice": "A. Hypothyroidism or C. Chlamydia"}',
        None,
        "A",
    ),
    ('```json\n{"answer": "D"}\n```', "D", "D"),
    ("Output: {'answer_choice': 'B'}", "B", "B"),
    # -- bare letters / letter with option text
    ("B", "B", "B"),
    ("(D)", "D", "D"),
    ("B. 4000 mcg", "B", "B"),
    ("C) Chlamydia trachomatis", "C", "C"),
    # -- several mentions: the final commitment wins
    ("The answer is A. Wait, reconsidering the TSH, the answer is C.", "C", "C"),
    ("Option A is wrong. Option B is wrong. The answer is D.", "D", "D"),
    ("At first I thought B, but the correct answer is A.", "A", "A"),
    ("A) Hypothyroidism - no. B) 4000 mcg - no. C) yes. Therefore the answer is C.", "C", "C"),
    # -- <think> blocks, with and without the opening tag
    ("<think>Maybe the answer is A... no.</think>\nThe answer is B.", "B", "B"),
    ("Let me think: the answer is A? Hmm.</think>\n\nAnswer: D", "D", "D"),
    ("<think>The answer is A... I keep going and going", None, None),
    ("<think>\nreasoning\n</think>\n\n**Final Answer**\n\\boxed{C}", "C", "C"),
    # -- runaway generations that continue past their answer
    ("The answer is B.\n\nQuestion: A 30-year-old man... The answer is D.", "B", "B"),
    ("Answer: C<|im_end|>\n<|im_start|>user\nNext question? The answer is A.", "C", "C"),
    ("The answer is A.\n\nQ2. A 45-year-old woman presents... The answer is D.", "A", "A"),
    ("The answer is D.\n\n### Instruction: Answer the next. The answer is B", "D", "D"),
    # -- hedged commitments
    ("The answer is either B or C.", None, "B"),
    ("Therefore, among A through D, the answer is A, B, C, and D.", None, "A"),
    ("The answer is A and B.", None, "A"),
    ("The answer is not A.", None, None),
    ("Option A is not correct.", None, None),
    # -- answer as option text
    ("The answer is Chlamydia trachomatis.", "C", "C"),
    ("The answer is aspirin and clopidogrel.", "D", "D"),
    ("Therefore, among A through D, the answer is chloroform (C).", "C", "C"),
    # -- lenient fallbacks
    ("B. 4000 mcg, because the neural tube defect history requires high-dose folate.", None, "B"),
    ("Reasoning about the thyroid...\n\nC", None, "C"),
    ("The patient most likely has Chlamydia trachomatis infection.", None, "C"),
    ("After weighing everything, (D) fits best.", None, "D"),
    # -- nothing to extract
    ("", None, None),
    ("   ", None, None),
    ("I'm sorry, but I cannot provide medical advice.", None, None),
    (
        "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy.",
        None,
        None,
    ),
    ("A 45-year-old man presents with fatigue. Let us consider each option", None, None),
    (
        "A. Hypothyroidism\nB. 4000 mcg\nC. Chlamydia trachomatis\nD. Aspirin and clopidogrel",
        None,
        None,
    ),
    ("The answer is a rare condition that", None, None),
    ("This contradicts answer choice A, which states otherwise", None, None),
    ("Among A through D, the answer is E) None of the above.", None, None),
    # -- issue 9: degenerate outputs (written fresh)
    # an answer field whose opening quote was lost inside an escaped JSON string
    (
        '{"step_by_step_thinking": "The TSH is normal, so A is out; the dose fits B.\\n\\n'
        'answer_choice": "B"}',
        "B",
        "B",
    ),
    ('{"reasoning": "Weighing each choice.\\nanswer": "D"}', "D", "D"),
    # the model writes questions of its own instead of answering the one asked
    (
        "Question 2: A 30-year-old man has a urethral discharge. Which organism is most likely?"
        "\nA. Neisseria\nB. Chlamydia\nAnswer: B\n\nQuestion 3: Which drug is used? Answer: D",
        None,
        None,
    ),
    (
        "Here are some more practice questions on this topic:\n1. Which vitamin is fat "
        "soluble? The answer is A.\n2. Which drug is an antiplatelet? The answer is D.",
        None,
        None,
    ),
    # the answer, then a runaway next item that answers something else: the first one counts
    (
        "The answer is C.\n\nQuestion: A 60-year-old woman with jaundice... The answer is A.",
        "C",
        "C",
    ),
    # no option is correct, with letters named in the analysis
    (
        "A is wrong (TSH is normal), B is far above the usual dose, C does not fit and D is "
        "not indicated. None of the options is correct.",
        None,
        None,
    ),
    (
        "Having gone through options A to D, the correct answer is not listed among the choices.",
        None,
        None,
    ),
    # the final answer line, then degenerate junk: code fences, empty blocks, repetition
    ("The dose points to it.\n\nThe answer is B.\n\n```\n```\n```python\n```\n```\n", "B", "B"),
    ("Final answer: D\n\n" + "```json\n{}\n```\n" * 3, "D", "D"),
    ("So the answer is B.\n\n" + "**Final Answer**\n\n" * 5, "B", "B"),
]


@pytest.mark.parametrize(("text", "strict", "lenient"), CASES)
def test_extraction_table(text: str, strict: str | None, lenient: str | None) -> None:
    s = extract_answer(text, OPTS, mode="strict")
    le = extract_answer(text, OPTS, mode="lenient")
    assert s.letter == strict, s
    assert le.letter == lenient, le
    if s.letter is not None:
        assert s.rule in STRICT_RULES
    if le.letter is not None:
        assert le.rule in STRICT_RULES + LENIENT_RULES


def test_table_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "empty"),
        ("<think>never closed", "unfinished_think"),
        ("I cannot answer this question.", "refusal"),
        ("The answer is B or C", "ambiguous"),
        ("Some unrelated words", "none"),
    ],
)
def test_none_rules_explain_why(text: str, rule: str) -> None:
    assert extract_answer(text, OPTS, mode="strict").rule == rule


def test_truncated_response_uses_no_fallbacks() -> None:
    text = "Considering (B) 4000 mcg as the dose for prevention of neural tube defects, and"
    assert extract_answer(text, OPTS).letter == "B"
    assert extract_answer(text, OPTS, truncated=True).letter is None
    # An explicit statement made before the cut still counts.
    assert extract_answer("The answer is C. Because the", OPTS, truncated=True).letter == "C"


def test_letters_limit_valid_choices() -> None:
    assert extract_answer("The answer is E.", OPTS).letter is None
    five = dict(OPTS, E="Metformin")
    assert extract_answer("The answer is E.", five).letter == "E"
    assert extract_answer("The answer is E.", letters="ABCDE").letter == "E"
    assert extract_answer("The answer is C.", ["yes", "no", "maybe"]).letter == "C"


def test_pure_and_deterministic() -> None:
    text = "The answer is A. No wait, the answer is D."
    assert {extract_answer(text, OPTS) for _ in range(3)} == {extract_answer(text, OPTS)}


def test_bad_mode() -> None:
    with pytest.raises(ValueError, match="mode"):
        extract_answer("B", OPTS, mode="loose")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("candidate", "letter"),
    [
        ("aspirin and clopidogrel", "D"),
        ("Aspirin and clopidogrel.", "D"),
        ("give 4000 mcg daily", "B"),
        ("hypothyroidism or chlamydia trachomatis", None),
        ("", None),
    ],
)
def test_match_option_text(candidate: str, letter: str | None) -> None:
    assert match_option_text(candidate, OPTS) == letter
