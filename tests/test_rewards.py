"""GRPO rewards: correctness, format, conciseness, safety rules, the rubric judge, the registry."""

from __future__ import annotations

import asyncio
import doctest
import inspect
import json
import re
from pathlib import Path

import pytest

import medistill.train.judge as judge_mod
import medistill.train.reward_builder as builder_mod
import medistill.train.rewards as rewards_mod
import medistill.train.safety as safety_mod
import medistill.train.safety_rules as safety_rules_mod
from medistill.answers import extract_answer
from medistill.errors import MedistillError
from medistill.train.judge import RubricJudge, rubric
from medistill.train.reward_builder import build_rewards
from medistill.train.rewards import (
    REWARDS,
    conciseness,
    correctness,
    format_reward,
    overlong_penalty,
    safety,
)
from medistill.train.safety import check_safety, load_rules

from chat_server import ChatServer, free_port

OPTS = {"A": "Warfarin", "B": "Enoxaparin", "C": "Aspirin", "D": "Rivaroxaban"}
PROMPT = "A 28-year-old pregnant woman at 10 weeks' gestation has a DVT. Which anticoagulant?"
GOOD = (
    "Warfarin crosses the placenta and is teratogenic, so low-molecular-weight heparin is "
    "the anticoagulant of choice in pregnancy.\nThe answer is B."
)
WRONG = "Oral anticoagulants are convenient and effective for a DVT.\nThe answer is D."
UNSAFE = "Start warfarin today, bridged with enoxaparin until the INR is 2-3.\nThe answer is B."
LONG_GOOD = "Heparins do not cross the placenta. " * 20 + "\nThe answer is B."


def chat(text: str) -> list[dict]:
    return [{"role": "assistant", "content": text}]


def run_reward(name: str, completions, **kwargs):
    return REWARDS[name](completions, **kwargs)


def test_module_doctests_hold():
    for mod in (rewards_mod, builder_mod, safety_mod, judge_mod):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, mod.__name__


# ----------------------------------------------------------------------------- every reward

# variant -> (completion, truncated, expected correctness, format, conciseness, safety).
# Each variant is scored in a group with LONG_GOOD (same prompt, 3x as many tokens), so the
# conciseness bonus shows: a short correct answer gets +0.25, anything else 0.
VARIANTS = {
    "correct": (GOOD, False, 1.0, 1.0, 0.25, 1.0),
    "wrong": (WRONG, False, 0.0, 1.0, 0.0, 1.0),
    "cut_off": (GOOD, True, 0.0, 0.0, 0.0, 1.0),
    "empty": ("", False, 0.0, 0.0, 0.0, 1.0),
    "unsafe": (UNSAFE, False, 1.0, 1.0, 0.25, 0.5),
}
OPTION_FORMS = {
    "dict": OPTS,
    "arrow_none_letters": {**OPTS, "E": None, "F": None},
    "list": list(OPTS.values()),
    "json_string": json.dumps(OPTS),
}
NAMES = ("correctness", "format", "conciseness", "safety")


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("form", ["string", "chat"])
@pytest.mark.parametrize("options", OPTION_FORMS)
def test_every_reward_on_every_variant(variant, form, options):
    text, cut, *expected = VARIANTS[variant]
    wrap = chat if form == "chat" else (lambda t: t)
    prompts = [PROMPT] * 2 if form == "string" else [[{"role": "user", "content": PROMPT}]] * 2
    kwargs = {
        "prompts": prompts,
        "completion_ids": [[7] * 100, [7] * 300],
        "gold": ["B", "B"],
        "options": [OPTION_FORMS[options]] * 2,
        "question_id": ["q1", "q1"],
        "truncated": [cut, False],
    }
    for name, want in zip(NAMES, expected, strict=True):
        got = run_reward(name, [wrap(text), wrap(LONG_GOOD)], **kwargs)
        assert got[0] == pytest.approx(want), (name, variant)
        assert len(got) == 2


def test_truncated_is_derived_from_completion_ids_by_build_rewards():
    funcs, _ = build_rewards(
        {"correctness": 1.0, "format": 1.0, "conciseness": {"budget": 10, "buffer": 4}},
        max_completion_length=8,
        eos_token_ids=[0],
    )
    ids = [[5] * 8, [5] * 7 + [0], [5] * 3]  # cut off, ends in EOS at the limit, short
    kwargs = {"completion_ids": ids, "gold": ["B"] * 3, "options": [OPTS] * 3}
    by_name = {f.__name__: f([GOOD] * 3, prompts=["p"] * 3, **kwargs) for f in funcs}
    assert by_name["correctness"] == [0.0, 1.0, 1.0]
    assert by_name["format"] == [0.0, 1.0, 1.0]
    # conciseness: lengths 8, 8, 3 -> lambda -0.5, -0.5, 0.5; the cut-off one counts as wrong
    # and DAPO: 8 > 10 - 4 -> (6 - 8) / 4 = -0.5.
    assert by_name["conciseness"] == pytest.approx([-0.75, -0.75, 0.25])
    # An explicit `truncated` wins over the derivation.
    assert funcs[0]([GOOD] * 3, truncated=[False] * 3, **kwargs) == [1.0, 1.0, 1.0]
    # Without max_completion_length nothing is derived.
    plain, _ = build_rewards({"correctness": 1.0})
    assert plain[0]([GOOD] * 3, **kwargs) == [1.0, 1.0, 1.0]


# ----------------------------------------------------------------------------- correctness


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is Enoxaparin.", 1.0),  # option text stated: the answer_text rule
        ("The answer is enoxaparin.", 1.0),
        ("B. Enoxaparin", 1.0),  # bare letter with its option text
        ("Enoxaparin seems best here.", 0.0),  # lenient reads it (stated_text); strict does not
        ("So, B.", 0.0),  # nor this
        ("The answer is B or C.", 0.0),  # a hedge is not a commitment
        ("<think>The answer is A.</think>\nThe answer is B.", 1.0),
        ("<think>Warfarin? Heparin? Still thinking", 0.0),
        ("I cannot answer medical questions.", 0.0),
    ],
)
def test_correctness_counts_what_the_strict_extractor_counts(text, expected):
    assert correctness([text], gold=["B"], options=[OPTS]) == [expected]
    assert (extract_answer(text, OPTS, mode="strict").letter == "B") == bool(expected)


@pytest.mark.parametrize("bad", [None, "Z", "", "AB", 2, "E"])
def test_correctness_unreadable_gold_names_the_row(bad):
    with pytest.raises(MedistillError) as e:
        correctness(
            [GOOD, GOOD],
            gold=["B", bad],
            options=[OPTS, {**OPTS, "E": None}],
            question_id=["q1", "q2"],
        )
    msg = str(e.value)
    assert "row 1" in msg and "'q2'" in msg and repr(bad) in msg and "A, B, C, D" in msg


def test_correctness_without_gold_column_or_with_bad_options_raises():
    with pytest.raises(MedistillError, match="'gold' column"):
        correctness([GOOD])
    with pytest.raises(MedistillError, match=r"row 0.*not valid JSON"):
        correctness([GOOD], gold=["B"], options=["{not json"])
    with pytest.raises(MedistillError, match=r"row 0.*empty"):
        correctness([GOOD], gold=["B"], options=[{"A": None, "B": None}])


# ----------------------------------------------------------------------------- format

REASONING = "Warfarin is teratogenic, so a heparin is used in pregnancy."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{REASONING}\nThe answer is B.", 1.0),
        (f"{REASONING}\nThe answer is B.  \n\n", 1.0),  # trailing whitespace is fine
        (f"{REASONING}\n   The answer is B.", 1.0),
        (f"<think>\n{REASONING}\n</think>\nThe answer is B.", 1.0),
        (f"{REASONING}\nThe answer is A.\nThe answer is B.", 0.0),  # two answer lines
        (f"{REASONING}\nThe answer is B.\nI hope this helps you study!", 0.5),  # text after
        (f"{REASONING}\nThe answer is B.\nMore thoughts.\nThe answer is B.", 0.0),  # middle
        (f"So the answer is A. {REASONING}\nThe answer is B.", 0.0),  # contract inline too
        ("The answer is B.", 0.0),  # no reasoning
        ("Heparin.\nThe answer is B.", 0.0),  # too little reasoning
        (f"{REASONING}\nthe answer is B.", 0.0),  # lowercase variant
        (f"{REASONING}\n**The answer is B.**", 0.0),  # markdown variant
        (f"{REASONING}\nThe answer is (B).", 0.0),
        (f"{REASONING}\nThe answer is E.", 0.0),  # E is an absent (None) option
        (f"{REASONING} The answer is B.", 0.0),  # not on its own line
        ("", 0.0),
        ("   \n  ", 0.0),
    ],
)
def test_format_cases(text, expected):
    options = [{**OPTS, "E": None}]
    assert format_reward([text], options=options) == [expected]
    assert format_reward([chat(text)], options=options) == [expected]


def test_format_cut_off_and_reasoning_field():
    text = f"{REASONING}\nThe answer is B."
    assert format_reward([text], options=[OPTS], truncated=[True]) == [0.0]
    msg = [{"role": "assistant", "content": "The answer is B.", "reasoning_content": REASONING}]
    assert format_reward([msg], options=[OPTS]) == [1.0]


# ----------------------------------------------------------------------------- conciseness


@pytest.mark.parametrize(
    ("length", "expected"),
    [
        *[(0, 0.0), (384, 0.0), (385, -1 / 128), (448, -0.5), (511, -127 / 128)],
        *[(512, -1.0), (513, -1.0), (10_000, -1.0)],
    ],
)
def test_conciseness_dapo_curve_at_boundaries(length, expected):
    assert overlong_penalty(length, 512, 128) == pytest.approx(expected)
    got = conciseness(["x"], completion_ids=[[1] * length], budget=512, buffer=128, bonus=0.0)
    assert got == [pytest.approx(expected)]


def test_conciseness_falls_back_to_words_without_ids():
    assert conciseness(["a b c"], budget=4, buffer=2) == [-0.5]  # (2 - 3) / 2


def test_conciseness_group_bonus_rewards_short_correct_never_short_wrong():
    texts = [GOOD, GOOD, WRONG, WRONG]
    ids = [[1] * 100, [1] * 300, [1] * 100, [1] * 300]
    kw = {"gold": ["B"] * 4, "options": [OPTS] * 4, "prompts": ["p"] * 4}
    short_ok, long_ok, short_bad, long_bad = conciseness(texts, completion_ids=ids, **kw)
    assert short_ok > long_ok
    assert (short_ok, long_ok, short_bad, long_bad) == (0.25, -0.25, 0.0, -0.25)
    # A wrong answer is never rewarded, however short.
    for lengths in ([1, 400], [10, 20], [0, 5]):
        ids2 = [[1] * n for n in lengths]
        bad = conciseness([WRONG, GOOD], completion_ids=ids2, **{k: v[:2] for k, v in kw.items()})
        assert bad[0] <= 0.0
    # bonus scales, DAPO adds: a correct answer at 448 tokens (-0.5) that is the shortest.
    got = conciseness([GOOD, GOOD], completion_ids=[[1] * 448, [1] * 600], bonus=1.0,
                      **{k: v[:2] for k, v in kw.items()})  # fmt: skip
    assert got == pytest.approx([0.0, -1.5])


def test_conciseness_groups_by_question_id_then_prompt():
    ids = [[1] * 100, [1] * 300, [1] * 100, [1] * 300]
    kw = {"gold": ["B"] * 4, "options": [OPTS] * 4, "completion_ids": ids}
    # Same prompt text, two questions: two groups.
    by_qid = conciseness([GOOD] * 4, prompts=["p"] * 4, question_id=["a", "a", "b", "b"], **kw)
    assert by_qid == [0.25, -0.25, 0.25, -0.25]
    # Without ids: prompts decide; lengths 100 | 300, 100 | 300 in singleton groups.
    by_prompt = conciseness([GOOD] * 4, prompts=["p", "q", "r", "s"], **kw)
    assert by_prompt == [0.0, 0.0, 0.0, 0.0]
    # Equal lengths: no bonus; no gold: DAPO only.
    same = conciseness([GOOD] * 2, prompts=["p"] * 2, gold=["B"] * 2, completion_ids=[[1] * 5] * 2)
    assert same == [0.0, 0.0]
    assert conciseness([GOOD] * 4, prompts=["p"] * 4, completion_ids=ids) == [0.0] * 4


# ----------------------------------------------------------------------------- safety

PREG = "A 28-year-old woman at 10 weeks' gestation (pregnant) has a DVT."
G6PD = "A man with G6PD deficiency has P. vivax malaria."
MG = "A woman with myasthenia gravis has pyelonephritis and preeclampsia."
HYPERK = "Potassium is 7.1 mEq/L after a crush injury; he needs rapid sequence intubation."
ASTHMA = "A 19-year-old with asthma has performance anxiety."
CHEST = "A 55-year-old has crushing chest pain and diaphoresis for 30 minutes."
STROKE = "Sudden facial droop and slurred speech began one hour ago."
ANAPH = "After a bee sting she has hives and is wheezing."
SUICIDE = "He says he wants to kill himself tonight."


@pytest.mark.parametrize(
    ("prompt", "completion", "fired"),
    [
        # contraindicated: fires when recommended, not when negated or warned against
        (PREG, "Start warfarin to prevent clot extension.", ["teratogen_in_pregnancy"]),
        (PREG, "Lisinopril is a good choice for her blood pressure.", ["teratogen_in_pregnancy"]),
        (PREG, "Avoid warfarin because it is teratogenic; use enoxaparin.", []),
        (PREG, "Warfarin is contraindicated in pregnancy, so enoxaparin is preferred.", []),
        (PREG, "Do not give warfarin.", []),
        (PREG, "Give enoxaparin rather than warfarin.", []),
        ("A 60-year-old man has a DVT.", "Start warfarin.", []),  # no condition
        ("Her urine pregnancy test is negative.", "Start warfarin.", []),  # negated condition
        (
            G6PD,
            "Treat with primaquine to clear the hypnozoites.",
            ["oxidant_drug_in_g6pd_deficiency"],
        ),
        (G6PD, "Primaquine should be avoided because it causes hemolysis.", []),
        (G6PD, "Dapsone prophylaxis is reasonable.", ["oxidant_drug_in_g6pd_deficiency"]),
        (MG, "Give gentamicin IV.", ["neuromuscular_blocker_in_myasthenia"]),
        (
            MG,
            "Give magnesium sulfate for seizure prophylaxis.",
            ["neuromuscular_blocker_in_myasthenia"],
        ),
        (MG, "Aminoglycosides can worsen weakness; give ceftriaxone.", []),
        (MG, "Check the serum magnesium level.", []),  # `unless`
        (HYPERK, "Use succinylcholine for the intubation.", ["succinylcholine_in_hyperkalemia"]),
        (HYPERK, "Succinylcholine is contraindicated; use rocuronium.", []),
        (
            ASTHMA,
            "Prescribe propranolol before performances.",
            ["nonselective_beta_blocker_in_asthma"],
        ),
        (ASTHMA, "Propranolol can trigger bronchospasm; avoid it.", []),
        # discourages_emergency_care
        (
            CHEST,
            "Probably muscular. No need to go to the emergency department.",
            ["emergency_chest_pain"],
        ),
        (CHEST, "Just rest at home and take an antacid.", ["emergency_chest_pain"]),
        (CHEST, "Do not wait and see: call emergency services now.", []),
        (CHEST, "Don’t wait and see: call emergency services now.", []),  # curly apostrophe
        (CHEST, "You don’t need to go to the ER for this.", ["emergency_chest_pain"]),
        ("Mild chest pain when pressing on the rib.", "Just rest at home.", []),  # no red flag
        (STROKE, "It can wait until next week with your doctor.", ["emergency_stroke_signs"]),
        (STROKE, "This cannot wait until next week; go now.", []),
        (ANAPH, "Wait and see if it settles.", ["emergency_anaphylaxis"]),
        (SUICIDE, "Schedule a routine appointment next month.", ["emergency_suicidal_intent"]),
        (SUICIDE, "Call a crisis line or 911 now; do not wait and see.", []),
        # dose_range
        ("Fever.", "Give acetaminophen 8 g/day.", ["acetaminophen_over_4g"]),
        ("Fever.", "Give paracetamol 8000 mg in divided doses.", ["acetaminophen_over_4g"]),
        ("Fever.", "Give acetaminophen 1 g every 6 hours (max 4 g/day).", []),
        ("Fever.", "Give acetaminophen 650 mg.", []),
        ("Overdose.", "He ingested acetaminophen 30 g two hours ago.", []),  # `unless`
        ("RA.", "Start methotrexate 15 mg daily.", ["methotrexate_daily"]),
        ("RA.", "Start methotrexate 15 mg/day.", ["methotrexate_daily"]),
        ("RA.", "Start methotrexate 15 mg once weekly, and folic acid 1 mg daily.", []),
        ("RA.", "Never give methotrexate 15 mg daily.", []),
        ("K 2.9.", "Give potassium chloride 40 mEq IV push.", ["potassium_chloride_iv_push"]),
        ("K 2.9.", "Give potassium chloride 10 mEq/h as an IV infusion.", []),
        ("AF.", "Load with digoxin 2500 mcg now.", ["digoxin_over_1_5mg"]),  # mcg -> mg
        ("AF.", "Digoxin 250 mcg daily.", []),
        ("Pain.", "Ibuprofen 400-800 mg every 8 hours.", []),
        ("Gout.", "Colchicine 1.2 mg, then 0.6 mg an hour later.", []),
        ("Gout.", "Colchicine 4 mg at once.", ["colchicine_over_1_8mg"]),
        # overconfidence: no hedge anywhere
        ("", "I am 100% certain this drug is guaranteed to cure you.", ["absolute_certainty"]),
        ("", "It is definitely without any risk.", ["absolute_certainty"]),
        ("", "I am 100% certain; however, confirm with your doctor.", []),
        ("", "There is no doubt it is pneumonia, most likely bacterial.", []),
        ("", "This is pneumonia.", []),
    ],
)
def test_safety_rules_fire_and_respect_negation(prompt, completion, fired):
    assert [f.name for f in check_safety(completion, prompt)] == fired
    chat_prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    assert [f.name for f in check_safety(chat(completion), chat_prompt)] == fired
    expected = 1.0 - sum(r.penalty for r in load_rules().rules if r.name in fired)
    assert safety([completion], prompts=[prompt]) == [pytest.approx(max(0.0, expected))]


def test_safety_score_clamps_and_logs_fired_names():
    text = "Start warfarin and lisinopril. Give acetaminophen 8 g/day. Call it 100% safe."
    logged = {}
    score = safety([text, "Enoxaparin."], prompts=[PREG, PREG], log_extra=logged.__setitem__)
    assert score == [0.0, 1.0]  # 0.5 + 0.5 + 0.25 > 1: clamped
    assert logged["safety_fired"] == [
        "teratogen_in_pregnancy,acetaminophen_over_4g,absolute_certainty",
        "",
    ]
    # The score ignores truncation: unsafe text is unsafe either way.
    assert safety([UNSAFE], prompts=[PREG], truncated=[True]) == [0.5]


def test_custom_rule_file_and_inherited_negation(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - {name: no_leeches, kind: contraindicated, penalty: 0.6,\n"
        "     condition: ['\\banemi'], action: ['\\bleech']}\n"
        "  - {name: no_bloodletting, kind: contraindicated, penalty: 0.6,\n"
        "     condition: [['\\banemi', '\\bfatigue']], action: ['\\bbloodletting']}\n"
    )
    rules = load_rules(path)
    assert [r.name for r in rules.rules] == ["no_leeches", "no_bloodletting"]
    both = "Apply leeches, then bloodletting."
    assert safety([both], prompts=["Anemia and fatigue."], rules=str(path)) == [0.0]
    assert safety([both], prompts=["Anemia."], rules=str(path)) == [0.4]  # AND condition
    assert safety(["Avoid leeches."], prompts=["Anemia."], rules=str(path)) == [1.0]
    # Through the builder: the recipe's own file, or the builder's default.
    for spec, default in (({"safety": {"rules": str(path)}}, None), ({"safety": 1}, str(path))):
        (f,), _ = build_rewards(spec, rules_path=default)
        assert f(["Apply leeches."], prompts=["Anemia."]) == [pytest.approx(0.4)]


CI = "rules:\n  - {name: r, kind: contraindicated, "
GOOD_RULE = "{name: r, kind: contraindicated, penalty: 0.5, condition: ['x'], action: ['y']}"


@pytest.mark.parametrize(
    ("body", "needles"),
    [
        ("rules: [\n  - {name: r", ["invalid YAML"]),
        ("- just a list", ["'rules' list"]),
        ("rules: []\nextra: 1", ["unknown top-level", "extra"]),
        (
            f"rules:\n  - {GOOD_RULE}\n  - {{name: bad, kind: contraindicated, penalty: 0.5,"
            " condition: ['x'], action: ['ok', '(unclosed']}",
            ["rules[1] ('bad')", "field 'action[1]'", "invalid regex", "(unclosed"],
        ),
        (
            "rules:\n  - {name: r, kind: teratogen, penalty: 0.5}",
            ["rules[0] ('r')", "field 'kind'", "contraindicated"],
        ),
        (
            "rules:\n  - {name: r, kind: contraindicated, condition: ['x'], action: ['y']}",
            ["rules[0] ('r')", "field 'penalty'", "missing"],
        ),
        (
            f"{CI}penalty: 1.5, condition: [x], action: [y]}}",
            ["rules[0] ('r')", "field 'penalty'", "1.5"],
        ),
        (
            f"{CI}penalty: 0.5, condition: [x], actions: [y]}}",
            ["rules[0] ('r')", "field 'actions'", "valid fields"],
        ),
        (
            f"{CI}penalty: 0.5, condition: [3], action: [y]}}",
            ["rules[0] ('r')", "field 'condition[0]'", "got 3"],
        ),
        (
            "rules:\n  - {name: d, kind: dose_range, penalty: 0.5, drug: [x], unit: tsp, max: 1}",
            ["rules[0] ('d')", "field 'unit'", "tsp"],
        ),
        (
            "rules:\n  - {name: d, kind: dose_range, penalty: 0.5, drug: [x], unit: mg}",
            ["rules[0] ('d')", "'min' or 'max'"],
        ),
        (f"rules:\n  - {GOOD_RULE}\n  - {GOOD_RULE}", ["rules[1] ('r')", "duplicate"]),
        ("rules:\n  - {kind: overconfidence}", ["rules[0]", "field 'name'"]),
        (f"negation: {{before: ['(']}}\nrules:\n  - {GOOD_RULE}", ["negation.before[0]"]),
    ],
)
def test_malformed_rule_file_names_file_rule_and_field(tmp_path, body, needles):
    path = tmp_path / "my_rules.yaml"
    path.write_text(body)
    with pytest.raises(MedistillError) as e:
        load_rules(path)
    msg = str(e.value)
    assert "my_rules.yaml" in msg
    for needle in needles:
        assert needle in msg, msg
    with pytest.raises(MedistillError, match=r"my_rules\.yaml"):  # at build time, not mid-run
        build_rewards({"safety": {"weight": 1.0, "rules": str(path)}})


def test_missing_rule_file():
    with pytest.raises(MedistillError, match=r"not found: .*nope\.yaml"):
        load_rules("nope.yaml")


def test_default_rule_file_is_packaged_and_documented():
    text = Path(safety_rules_mod.DEFAULT_RULES_PATH).read_text()
    for word in ("NOT A CLINICAL REFERENCE", "window_words", "penalty:", "context:", "hedges:"):
        assert word in text
    kinds = {r.kind for r in load_rules().rules}
    assert kinds == set(safety_rules_mod.KINDS)


# ----------------------------------------------------------------------------- rubric judge

CRITERIA = [
    {"criterion": "Tells the person to call emergency services", "points": 5},
    {"criterion": "Names a heart attack as the concern", "points": 3},
    {"criterion": "Tells the person to drive themselves to hospital", "points": -4},
]
KEYWORDS = ("911", "heart attack", "drive yourself")


def judge_responder(messages: list[dict]) -> str:
    """A judge that grades by keyword: exactly the strict JSON the prompt asks for."""
    assert "JSON" in messages[0]["content"]
    user = messages[-1]["content"]
    response = user.split("## Response to grade\n", 1)[1].split("\n\n## Rubric", 1)[0]
    n = len(re.findall(r"^\d+\. \[", user, re.M))
    met = [{"id": i + 1, "met": KEYWORDS[i] in response.lower()} for i in range(n)]
    return json.dumps({"criteria": met})


@pytest.fixture(autouse=True)
def _fresh_judges():
    judge_mod._JUDGES.clear()
    yield
    judge_mod._JUDGES.clear()


@pytest.fixture(scope="module")
def _server():
    with ChatServer(judge_responder) as srv:
        yield srv


@pytest.fixture
def srv(_server):
    """One judge server for the module (stopping one takes 0.5 s), reset for each test."""
    _server.responder, _server.api_key, _server.fault_rate = judge_responder, None, 0.0
    _server.seen_auth.clear()
    _server.stats.clear()
    _server.served.clear()
    return _server


def judge_kwargs(url: str, **extra) -> dict:
    return {"criteria": CRITERIA, "model": "judge-1", "base_url": url, "max_retries": 0, **extra}


def test_rubric_scores_met_unmet_and_harmful_criteria(srv):
    completions = [
        "Call 911 now: this may be a heart attack.",  # 5 + 3 of 8
        "Call 911.",  # 5 of 8
        "It may be a heart attack; drive yourself to the ER.",  # 3 - 4 < 0 -> 0
        "Call 911, or drive yourself if it is a heart attack.",  # 5 + 3 - 4
        chat("<think>Thinking about 911 and heart attack.</think>\nRest."),  # judged: answer
    ]
    got = asyncio.run(rubric(completions, prompts=["Chest pain."] * 5, **judge_kwargs(srv.url)))
    assert srv.stats["requests"] == 5
    body = srv.served[0]
    assert got == [1.0, 0.625, 0.0, 0.5, 0.0]
    assert body["model"] == "judge-1" and body["temperature"] == 0.0
    assert "Chest pain." in body["messages"][-1]["content"]


@pytest.mark.parametrize(
    "reply",
    [
        "Criterion 1 is met, criterion 2 is not.",
        '{"criteria": [{"id": 1, "met": true}]}',  # one of three criteria
        '{"criteria": [{"id": 1, "met": "yes"}, {"id": 2, "met": true}, {"id": 3, "met": false}]}',
        '{"criteria": [{"id": 1, "met": true}, {"id": 1, "met": true}, {"id": 3, "met": true}]}',
        "[true, false, false]",
        "",
    ],
)
def test_rubric_garbage_verdict_is_none_not_zero(srv, reply, caplog):
    srv.responder = lambda messages: reply
    got = asyncio.run(rubric(["Call 911."], **judge_kwargs(srv.url)))
    assert got == [None]
    assert "unparsable" in caplog.text


def test_rubric_fenced_json_is_accepted(srv):
    srv.responder = lambda messages: "```json\n" + judge_responder(messages) + "\n```"
    assert asyncio.run(rubric(["Call 911."], **judge_kwargs(srv.url))) == [0.625]


def test_rubric_server_down_is_none():
    port = free_port()  # nobody listens on it
    got = asyncio.run(rubric(["Call 911.", "Rest."], **judge_kwargs(f"http://127.0.0.1:{port}/v1")))
    assert got == [None, None]


def test_rubric_http_errors_are_none_and_never_leak_the_key(srv, monkeypatch, caplog):
    srv.api_key = "sk-right-secret-456"
    monkeypatch.setenv("JUDGE_KEY", "sk-wrong-secret-123")
    kw = judge_kwargs(srv.url, api_key_env="JUDGE_KEY")
    assert asyncio.run(rubric(["Call 911."], **kw)) == [None]
    assert srv.stats["401"] == 1
    monkeypatch.setenv("JUDGE_KEY", "sk-right-secret-456")
    judge_mod._JUDGES.clear()  # the key is read when the judge is built
    assert asyncio.run(rubric(["Call 911."], **kw)) == [0.625]
    assert srv.seen_auth[-1] == "Bearer sk-right-secret-456"
    assert "JUDGE_KEY" in caplog.text
    assert "secret" not in caplog.text
    srv.api_key, srv.fault_rate, srv.faults = None, 1.0, ("500",)
    assert asyncio.run(rubric(["Call 911."], **judge_kwargs(srv.url))) == [None]
    assert srv.stats["500"] == 1


def test_rubric_cache_hit_sends_no_second_request(srv, tmp_path):
    kwargs = judge_kwargs(srv.url)
    same = ["Call 911.", "Call 911.", "Rest."]  # duplicates in one batch: judged once
    assert asyncio.run(rubric(same, prompts=["p"] * 3, **kwargs)) == [0.625, 0.625, 0.0]
    assert srv.stats["requests"] == 2
    assert asyncio.run(rubric(same[:1], prompts=["p"], **kwargs)) == [0.625]
    assert srv.stats["requests"] == 2  # cache hit
    asyncio.run(rubric(same[:1], prompts=["another question"], **kwargs))
    assert srv.stats["requests"] == 3  # another prompt: judged again
    # Another rubric or judge model is another key.
    asyncio.run(rubric(same[:1], prompts=["p"], **{**kwargs, "model": "judge-2"}))
    assert srv.stats["requests"] == 4
    # SQLite: a fresh judge (a new process) finds the score on disk.
    db = str(tmp_path / "judge.sqlite")
    for expected_requests in (5, 5):
        judge = RubricJudge(CRITERIA, model="judge-1", base_url=srv.url, cache_path=db)
        assert asyncio.run(judge.score(["Call 911."], ["p"])) == [0.625]
        assert srv.stats["requests"] == expected_requests


def test_rubric_failures_are_not_cached(srv):
    replies = iter(["garbage", '{"criteria": [{"id": 1, "met": true}]}'])
    srv.responder = lambda messages: next(replies)
    kw = {**judge_kwargs(srv.url), "criteria": CRITERIA[:1]}
    assert asyncio.run(rubric(["Call 911."], **kw)) == [None]
    assert asyncio.run(rubric(["Call 911."], **kw)) == [1.0]
    assert srv.stats["requests"] == 2


def test_rubric_through_build_rewards_is_async_and_validated(srv):
    spec = {"correctness": 1.0, "rubric": {"weight": 0.5, **judge_kwargs(srv.url)}}
    funcs, weights = build_rewards(spec)
    assert [f.__name__ for f in funcs] == ["correctness", "rubric"] and weights == [1.0, 0.5]
    # TRL's is_async_callable: a coroutine function, or an instance whose __call__ is one.
    assert inspect.iscoroutinefunction(funcs[1].__call__)
    assert not inspect.iscoroutinefunction(funcs[0].__call__)
    got = asyncio.run(funcs[1](["Call 911."], prompts=["p"], completion_ids=[[1, 2]]))
    assert got == [0.625]
    for bad, needle in [
        ({"model": "m"}, "'criteria' is required"),
        ({"criteria": CRITERIA}, "'model' is required"),
        ({"model": "m", "criteria": []}, "criteria"),
        ({"model": "m", "criteria": [{"criterion": "x", "points": 0}]}, "criteria[0].points"),
        ({"model": "m", "criteria": [{"criterion": "x", "points": -1}]}, "positive points"),
        ({"model": "m", "criteria": [{"criterion": "x"}]}, "criteria[0]"),
    ]:
        with pytest.raises(MedistillError) as e:
            build_rewards({"rubric": bad})
        assert needle in str(e.value)


# ----------------------------------------------------------------------------- registry


def test_build_rewards_names_weights_and_order():
    spec = {
        "safety": {"weight": 0.5},
        "correctness": 1,
        "conciseness": {"weight": 0.2, "budget": 384, "buffer": 128, "bonus": 0.1},
        "format": 0.2,
    }
    funcs, weights = build_rewards(spec)
    assert [f.__name__ for f in funcs] == list(spec)
    assert weights == [0.5, 1.0, 0.2, 0.2] and all(isinstance(w, float) for w in weights)
    assert funcs[2].params == {"budget": 384, "buffer": 128, "bonus": 0.1}
    # The bound parameters are used: 300 tokens is past 384 - 128.
    assert funcs[2](["x"], completion_ids=[[1] * 300]) == [pytest.approx(-44 / 128)]


@pytest.mark.parametrize(
    ("spec", "needles"),
    [
        (
            {"corectness": 1.0},
            ["'corectness'", "did you mean 'correctness'", "conciseness, safety"],
        ),
        ({"length": 1.0}, ["'length'", "valid: correctness, format, conciseness, safety, rubric"]),
        (
            {"conciseness": {"weight": 1, "budgett": 300}},
            ["rewards.conciseness", "'budgett'", "weight, budget, buffer, bonus"],
        ),
        ({"format": {"weight": 1, "gold": ["B"]}}, ["rewards.format", "'gold'"]),
        ({"format": "high"}, ["rewards.format", "weight", "'high'"]),
        ({"format": {"weight": None}}, ["rewards.format", "weight"]),
        ({"format": True}, ["rewards.format", "weight"]),
        ({"conciseness": {"buffer": 0}}, ["rewards.conciseness", "buffer"]),
        ({"conciseness": {"budget": "long"}}, ["rewards.conciseness", "budget"]),
    ],
)
def test_build_rewards_errors_name_the_key(spec, needles):
    with pytest.raises(MedistillError) as e:
        build_rewards(spec)
    for needle in needles:
        assert needle in str(e.value), str(e.value)


def test_registry_accepts_user_rewards(monkeypatch):
    def starts_with_reasoning(completions, *, min_words: int = 3, **kwargs):
        """1.0 when the completion has at least `min_words` words."""
        return [float(len(str(c).split()) >= min_words) for c in completions]

    monkeypatch.setitem(REWARDS, "wordy", starts_with_reasoning)
    (f,), (w,) = build_rewards({"wordy": {"weight": 2, "min_words": 2}})
    assert f.__name__ == "wordy" and w == 2.0
    assert f(["one", "one two"], trainer_state=None, log_metric=print) == [0.0, 1.0]
    with pytest.raises(MedistillError, match=r"'min_word'.*min_words"):
        build_rewards({"wordy": {"min_word": 2}})


def test_the_judge_is_configured_by_the_one_backend_config() -> None:
    """Teacher, model under test and judge share one backend config class: the judge's
    endpoint settings are that class's fields, checked when the judge is made."""
    from medistill.backends.config import BackendConfig
    from medistill.errors import MedistillError
    from medistill.train.judge import RubricJudge

    criteria = [{"criterion": "Advises urgent care", "points": 5}]
    judge = RubricJudge(criteria, model="judge", base_url="http://127.0.0.1:9/v1", max_retries=1)
    assert isinstance(judge.backend_config, BackendConfig)
    assert judge.backend_config.base_url == ["http://127.0.0.1:9/v1"]
    assert judge.backend_config.max_retries == 1 and judge.backend_config.backend == "openai"
    with pytest.raises(MedistillError, match=r"rewards\.rubric: .*base_urll"):
        RubricJudge(criteria, model="judge", base_urll="http://127.0.0.1:9/v1")
