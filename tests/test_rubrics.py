"""Per-question rubrics (issue 18, point 2): the teacher's rubric replies parsed or refused and
counted, the store's rubrics table and its migration, curation carrying rubrics into the dataset
(format_version 3) and its card, the ``rubric`` reward reading a row's rubric (else the
recipe's), bad judge verdicts giving ``None`` and a counted warning, and the whole chain against
the local HTTP server through one real ``GRPOTrainer`` step."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from medistill.config import build
from medistill.curate import CurateConfig, run_curate
from medistill.data import load_benchmark
from medistill.errors import MedistillError
from medistill.generate import GenerateConfig, run_generate
from medistill.rubrics import RUBRIC_SYSTEM, WEIGHT_POINTS, RubricsConfig, parse_rubric, run_rubrics
from medistill.store import SCHEMA_VERSION, RubricRecord, TraceStore
from medistill.train import judge as judge_mod
from medistill.train.data import prompt_rows, resolve_dataset
from medistill.train.judge import JUDGE_SYSTEM, RubricJudge, rubric

from chat_server import ChatServer

QUESTIONS = load_benchmark("sample", limit=6).questions


def item(text: str, weight: str) -> dict:
    return {"criterion": text, "weight": weight}


GOOD = [
    item("Identifies hyperkalaemia with ECG changes as an emergency", "essential"),
    item("Gives intravenous calcium to stabilise the cardiac membrane first", "essential"),
    item("Mentions insulin with glucose to shift potassium into cells", "important"),
    item("Notes the need for repeat potassium and ECG monitoring", "optional"),
    item("Recommends an oral binder alone as the immediate treatment", "pitfall"),
]


@pytest.fixture(autouse=True)
def _fresh_judges():
    judge_mod._JUDGES.clear()
    yield
    judge_mod._JUDGES.clear()


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (json.dumps(GOOD), None),
        ("```json\n" + json.dumps(GOOD) + "\n```", None),  # a code fence is allowed
        ("```\n" + json.dumps(GOOD[:5]) + "\n```", None),
        (json.dumps([{**c, "weight": c["weight"].upper()} for c in GOOD]), None),
        (json.dumps(GOOD[:4]), "too_few"),
        (json.dumps(GOOD * 3 + GOOD[:1]), "too_many"),
        (json.dumps([*GOOD[:4], item("Checks the serum potassium", "critical")]), "bad_weight"),
        (json.dumps([*GOOD[:4], item("Checks the serum potassium", 5)]), "bad_weight"),
        (json.dumps({"criteria": GOOD}), "not_a_list"),
        ('"essential: be right"', "not_a_list"),
        ("Here is the rubric:\n1. Be right (essential)", "not_json"),
        ("", "not_json"),
        (json.dumps([*GOOD[:4], "Checks the serum potassium"]), "bad_item"),
        (json.dumps([*GOOD[:4], {**GOOD[0], "why": "because"}]), "bad_item"),
        (json.dumps([*GOOD[:4], item("Short", "important")]), "bad_text"),
        (json.dumps([*GOOD[:4], item(None, "important")]), "bad_text"),
        (json.dumps([*GOOD[:4], item("Chooses option B over the others", "important")]),
         "letter_reference"),
        (json.dumps([*GOOD[:4], item("Explains why (C) is a distractor", "important")]),
         "letter_reference"),
        (json.dumps([*GOOD[:4], GOOD[0]]), "duplicate"),
        (json.dumps([{**c, "weight": "important"} for c in GOOD]), "no_essential"),
    ],
)  # fmt: skip
def test_teacher_rubric_replies_are_parsed_or_refused_with_a_reason(reply, reason):
    criteria, error = parse_rubric(reply, min_criteria=5, max_criteria=15)
    if reason is None:
        assert error is None
        assert [c["criterion"] for c in criteria] == [c["criterion"] for c in GOOD]
        assert [c["points"] for c in criteria] == [5, 5, 3, 1, -5]
        assert {c["weight"] for c in criteria} <= set(WEIGHT_POINTS)
    else:
        assert criteria is None and error.split(":", 1)[0] == reason, error


def test_a_bad_rubrics_config_names_the_key():
    teacher = {"model": "t", "base_url": "http://127.0.0.1:9/v1"}
    with pytest.raises(MedistillError, match=r"r\.yaml: rubrics.*min_criteria <= max_criteria"):
        build(RubricsConfig, {"teacher": teacher, "min_criteria": 9, "max_criteria": 5},
              where="r.yaml: rubrics")  # fmt: skip
    with pytest.raises(MedistillError, match=r"unknown key.*'max_criterias'"):
        build(RubricsConfig, {"teacher": teacher, "max_criterias": 5}, where="r.yaml: rubrics")


# ----------------------------------------------------------------------------- the store


def test_a_schema_2_store_gains_the_rubrics_table_and_keeps_its_traces(tmp_path: Path):
    from conftest import synthetic_traces

    db = tmp_path / "old.db"
    with TraceStore(db) as store:
        store.put_many(synthetic_traces(3))
    con = sqlite3.connect(db)  # what a schema-2 medistill wrote: no rubrics table
    con.execute("DROP TABLE rubrics")
    con.execute("UPDATE meta SET v='2' WHERE k='schema_version'")
    con.commit()
    con.close()
    with TraceStore(db) as store:
        version = store.db.execute("SELECT v FROM meta WHERE k='schema_version'").fetchone()[0]
        assert int(version) == SCHEMA_VERSION == 3
        assert len(store) == 3 and store.rubrics() == {} and store.rubric_status() == {}
        qs = list(store.questions())
        assert [q["question_id"] for q in qs] == [q.id for q in QUESTIONS[:3]]
        criteria, _ = parse_rubric(json.dumps(GOOD))
        for q, (crit, err) in zip(qs[:2], [(criteria, None), (None, "not_json: 'x'")], strict=True):
            store.put_rubric(RubricRecord(q["source"], q["question_id"], "t", [], "x", crit, err))
    with TraceStore(db) as store:  # reopened: nothing to migrate, the rubrics are there
        assert list(store.rubrics()) == [("sample", QUESTIONS[0].id)]
        assert store.rubric_status()[("sample", QUESTIONS[1].id)] == ("not_json: 'x'", 1)
    # A store from a newer medistill is refused, not misread.
    con = sqlite3.connect(db)
    con.execute("UPDATE meta SET v='4' WHERE k='schema_version'")
    con.commit()
    con.close()
    with pytest.raises(MedistillError, match="schema 4"):
        TraceStore(db)


# ----------------------------------------------------------------------------- the judge

ROW_RUBRIC = [
    {"criterion": "Names calcium gluconate as the first treatment", "weight": "essential",
     "points": 5},
    {"criterion": "Recommends an oral binder alone", "weight": "pitfall", "points": -5},
]  # fmt: skip
RECIPE = [{"criterion": "Gives one clear final answer", "points": 2}]


def grading_judge(messages: list[dict]) -> str:
    """Meets every positive criterion and no pitfall: the strict JSON the judge prompt asks."""
    user = messages[-1]["content"]
    marks = re.findall(r"^(\d+)\. \[([+-][\d.]+)\]", user, re.M)
    return json.dumps({"criteria": [{"id": int(i), "met": float(p) > 0} for i, p in marks]})


def test_the_reward_reads_the_row_rubric_else_the_recipe_and_says_how_often():
    with ChatServer(grading_judge) as srv:
        metrics: dict[str, float] = {}
        kw = {"model": "judge-x", "base_url": srv.url, "max_retries": 0,
              "log_metric": metrics.__setitem__}  # fmt: skip
        got = asyncio.run(rubric(["Calcium.", "Calcium.", "Rest."], criteria=RECIPE,
                                 prompts=["p1", "p1", "p2"], rubric=[ROW_RUBRIC, ROW_RUBRIC, None],
                                 **kw))  # fmt: skip
        assert got == [1.0, 1.0, 1.0]
        sent = [b["messages"][-1]["content"] for b in srv.served]
        assert len(sent) == 2  # the two identical completions were judged once
        assert any("[+5] Names calcium gluconate" in s and "[-5] Recommends" in s for s in sent)
        assert any("[+2] Gives one clear final answer" in s for s in sent)
        assert metrics["rubric/from_row"] == pytest.approx(2 / 3)
        assert metrics["rubric/from_recipe"] == pytest.approx(1 / 3)
        assert metrics["rubric/none"] == 0 and metrics["rubric/invalid_verdicts"] == 0
        # criteria: null -- per-question rubrics only: a row without one is unscored, unasked.
        metrics.clear()
        got = asyncio.run(rubric(["Other.", "Rest."], criteria=None, prompts=["p1", "p2"],
                                 rubric=[ROW_RUBRIC, None], **kw))  # fmt: skip
        assert got == [1.0, None] and len(srv.served) == 3
        assert (metrics["rubric/from_row"], metrics["rubric/none"]) == (0.5, 0.5)
        assert metrics["rubric/unscored"] == 0.5


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        ("The response meets criterion 1.", "not_json"),
        ('{"criteria": [{"id": 1, "met": true}, {"id": 3, "met": false}]}', "missing_ids"),
        ('{"criteria": [{"id": 1, "met": "yes"}, {"id": 2, "met": false}]}', "wrong_types"),
        ('{"criteria": [{"id": "1", "met": true}, {"id": 2, "met": false}]}', "wrong_types"),
        ('{"criteria": [{"id": 1, "met": true}]}', "wrong_count"),
        ('[{"id": 1, "met": true}, {"id": 2, "met": false}]', "no_criteria_list"),
    ],
)
def test_a_bad_verdict_is_none_and_a_counted_warning(reply, kind, caplog):
    with ChatServer(lambda messages: reply) as srv:
        metrics: dict[str, float] = {}
        with caplog.at_level(logging.WARNING, logger="medistill"):
            got = asyncio.run(rubric(["a", "b"], criteria=RECIPE, rubric=[ROW_RUBRIC, None],
                                     model="judge-x", base_url=srv.url, max_retries=0,
                                     log_metric=metrics.__setitem__))  # fmt: skip
    assert got == [None, None] if kind != "wrong_count" else got[0] is None
    judge = next(iter(judge_mod._JUDGES.values()))
    assert judge.invalid_verdicts[kind] >= 1
    assert metrics["rubric/invalid_verdicts"] == sum(judge.invalid_verdicts.values())
    assert metrics[f"rubric/invalid_verdicts/{kind}"] >= 1
    assert f"unparsable verdict ({kind};" in caplog.text


def test_the_recipe_rubric_may_be_null_but_not_missing():
    from medistill.train.reward_builder import build_rewards

    (f,), _ = build_rewards({"rubric": {"model": "judge-x", "criteria": None}})
    assert f.params["criteria"] is None
    with pytest.raises(MedistillError, match=r"'criteria' is required \(the recipe's rubric"):
        build_rewards({"rubric": {"model": "judge-x"}})


def test_a_row_rubric_must_be_criteria_with_points(tmp_path: Path):
    from medistill.errors import DataError
    from medistill.train.data import check_row

    row = {"prompt": [{"role": "user", "content": "q"}],
           "completion": [{"role": "assistant", "content": "a"}],
           "options": {"A": "x", "B": "y"}, "gold": "A"}  # fmt: skip
    assert check_row(row, path="d.jsonl", line=1)["rubric"] is None
    assert check_row({**row, "rubric": ROW_RUBRIC}, path="d.jsonl", line=1)["rubric"] == ROW_RUBRIC
    for bad in ([], [{"criterion": "x"}], [{"criterion": "x", "points": "5"}],
                [{"criterion": "x", "points": -5}], "be right"):  # fmt: skip
        with pytest.raises(DataError, match=r"d\.jsonl:1.*rubric"):
            check_row({**row, "rubric": bad}, path="d.jsonl", line=1)


# ----------------------------------------------------------------------------- end to end


class Teacher:
    """The local server's one responder: traces for the traces' prompts, rubrics for rubric
    prompts (question ``refuse`` gets prose, which is refused), verdicts for judge prompts
    (every other one unreadable, in turn: not JSON, missing ids, wrong types)."""

    @staticmethod
    def bad_verdict(k: int, n: int) -> str:
        """The k-th kind of unreadable verdict for a rubric of n criteria."""
        if k == 0:
            return "Looks good to me."  # not JSON
        if k == 1:  # the right count, an id missing
            return json.dumps({"criteria": [{"id": i + 2, "met": True} for i in range(n)]})
        return json.dumps({"criteria": [{"id": i + 1, "met": 1} for i in range(n)]})  # ints

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.judged = itertools.count()
        self.judge_prompts: list[str] = []
        self.refuse: str | None = None

    def __call__(self, messages: list[dict]) -> str:
        system, user = messages[0]["content"], messages[-1]["content"]
        if system == JUDGE_SYSTEM:
            with self.lock:
                n = next(self.judged)
                self.judge_prompts.append(user)
            if n % 2 == 1:  # every other verdict is unreadable
                return self.bad_verdict((n // 2) % 3, len(re.findall(r"^\d+\. \[", user, re.M)))
            return grading_judge(messages)
        q = next(q for q in QUESTIONS if q.question in user)
        gold_text = q.options[q.gold]
        if system == RUBRIC_SYSTEM:
            if q.id == self.refuse:
                return "A good answer explains the mechanism and picks the right option."
            return json.dumps([
                item(f"Identifies {gold_text} as the best answer", "essential"),
                item("Explains the key finding that decides the question", "essential"),
                item("Rules out the tempting alternative with a reason", "important"),
                item("Keeps the explanation short and focused", "optional"),
                item("Recommends a harmful or contraindicated intervention", "pitfall"),
            ])  # fmt: skip
        letter = re.search(rf"^([A-J])\. {re.escape(gold_text)}$", user, re.M).group(1)
        return f"The findings point to {gold_text}; the rest fit less.\nThe answer is {letter}."


def test_rubrics_end_to_end_through_a_grpo_step(tiny_model_dir: Path, tmp_path: Path, caplog):
    pytest.importorskip("trl")
    from typer.testing import CliRunner

    from medistill.cli import app
    from medistill.train.config import GRPORecipe
    from medistill.train.grpo import run_grpo

    db = tmp_path / "traces.db"
    teacher_answers = Teacher()
    with ChatServer(teacher_answers) as srv:
        teacher = {"model": "teacher-x", "base_url": [srv.url], "max_retries": 0}
        values = {"teacher": teacher, "benchmark": "sample", "limit": 6, "shuffle_options": True,
                  "out": str(db)}  # fmt: skip
        gen = build(GenerateConfig, values, where="g")
        assert run_generate(gen, show_progress=False)["new_calls"] == 6
        with TraceStore(db) as store:  # concurrent calls: stored as they finished
            order = [q["question_id"] for q in store.questions()]
        q0, q1 = (next(q for q in QUESTIONS if q.id == i) for i in order[:2])
        teacher_answers.refuse = q1.id  # the first two questions: one rubric, one refused
        with caplog.at_level(logging.WARNING, logger="medistill"):
            summary = run_rubrics(build(RubricsConfig, {"teacher": teacher, "store": str(db)},
                                        where="r"))  # fmt: skip
        assert (summary["new_calls"], summary["new_valid"], summary["new_invalid"]) == (6, 5, 1)
        assert summary["invalid_by_reason"] == {"not_json": 1}
        assert (summary["with_valid_rubric"], summary["without_valid_rubric"]) == (5, 1)
        assert f"rubric for sample/{q1.id} refused: not_json" in caplog.text
        # A rerun (the command line) asks again only for the refused one.
        result = CliRunner().invoke(app, ["rubrics", str(db), "--teacher", "openai:teacher-x",
                                          "--base-url", srv.url, "--max-retries", "0"])  # fmt: skip
        assert result.exit_code == 0, result.output
        again = json.loads(result.stdout[result.stdout.index("{\n") :])
        assert (again["new_calls"], again["already_stored"], again["new_invalid"]) == (1, 5, 1)
        with TraceStore(db) as store:
            stored = {r["question_id"]: r for r in store.iter_rubrics()}
        first, refused = stored[q0.id], stored[q1.id]
        assert refused["criteria"] is None and refused["attempts"] == 2
        assert refused["raw"].startswith("A good answer") and refused["error"].startswith("not_j")
        assert first["error"] is None and first["raw"].startswith("[")
        assert [c["points"] for c in first["criteria"]] == [5, 5, 3, 1, -5]
        # The teacher saw the original lettering (the traces' option shuffle undone).
        asked = first["messages"][-1]["content"]
        assert f"## Correct answer\n{q0.gold}. {q0.options[q0.gold]}" in asked

        stats = run_curate(
            CurateConfig(store=str(db), out=str(tmp_path / "ds"), eval_benchmarks=[],
                         min_tokens=4, max_tokens=100_000, validation_fraction=0.0),
            show_progress=False,
        )  # fmt: skip
        assert stats["format_version"] == 3 and stats["kept_traces"] == 6
        assert stats["rubrics"] == {
            "rows_with_rubric": 5, "rows": 6, "questions_with_rubric": 5, "questions": 6,
            "questions_refused": 1, "questions_not_asked": 0, "in_store": 5,
        }  # fmt: skip
        card = (tmp_path / "ds" / "README.md").read_text()
        assert "## Per-question rubrics" in card
        assert "| questions with a rubric | 5 | 83.3% |" in card
        assert "| questions whose rubric reply was refused | 1 | 16.7% |" in card
        rows = [json.loads(x) for x in (tmp_path / "ds/prompt_completion/train.jsonl").open()]
        by_id = {r["question_id"]: r for r in rows}
        assert by_id[q0.id]["rubric"] == first["criteria"]
        assert by_id[q1.id]["rubric"] is None
        from datasets import load_from_disk

        hf = load_from_disk(str(tmp_path / "ds/hf/prompt_completion"))["train"]
        assert hf["rubric"] == [r["rubric"] for r in rows]

        # GRPO: one real step on the first two questions (one rubric of its own, one not).
        source = resolve_dataset(str(tmp_path / "ds"))
        assert [r["rubric"] is not None for r in prompt_rows(source, limit=2)] == [True, False]
        fallback = "States one final answer and the reason for it"
        reward = {"weight": 1.0, "model": "judge-x", "base_url": srv.url, "max_retries": 0,
                  "criteria": [{"criterion": fallback, "points": 3}]}  # fmt: skip
        out = tmp_path / "grpo"
        cfg = GRPORecipe(
            model=str(tiny_model_dir), dataset=str(tmp_path / "ds"), output_dir=str(out),
            rewards={"rubric": reward}, max_steps=1, max_prompts=2, num_generations=4,
            per_device_train_batch_size=8, max_completion_length=8, report_to="none",
            logging_steps=1, save_steps=1000, seed=0,
        )  # fmt: skip
        manifest = run_grpo(cfg)
    assert manifest["status"] == "finished" and manifest["metrics"]["global_step"] == 1
    judged = teacher_answers.judge_prompts
    assert len(judged) >= 2
    own = f"[+5] Identifies {q0.options[q0.gold]} as the best answer"
    assert any(own in p and q0.question in p for p in judged)
    assert any(f"[+3] {fallback}" in p and q1.question in p for p in judged)
    (step,) = [h for h in map(json.loads, (out / "log.jsonl").open()) if "rubric/from_row" in h]
    assert step["rubric/from_row"] == pytest.approx(0.5)
    assert step["rubric/from_recipe"] == pytest.approx(0.5)
    judge = next(iter(judge_mod._JUDGES.values()))
    bad = sum(judge.invalid_verdicts.values())
    assert bad >= 1 and bad == len(judged) // 2
    assert step["rubric/invalid_verdicts"] == bad  # one step: the whole count
    kinds = {k.rpartition("/")[2] for k in step if k.startswith("rubric/invalid_verdicts/")}
    assert kinds == set(judge.invalid_verdicts) <= {"not_json", "missing_ids", "wrong_types"}
    assert step["rubric/unscored"] > 0


def test_format_version_2_datasets_are_still_read(curated_dataset: Path, tmp_path: Path):
    old = tmp_path / "v2"
    shutil.copytree(curated_dataset, old)
    stats = json.loads((old / "stats.json").read_text())
    (old / "stats.json").write_text(json.dumps({**stats, "format_version": 2}))
    for path in old.glob("*/*.jsonl"):
        rows = [json.loads(x) for x in path.open()]
        path.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "rubric"}) + "\n"
                                for r in rows))  # fmt: skip
    rows = prompt_rows(resolve_dataset(str(old)))
    assert rows and all(r["rubric"] is None for r in rows)
    (old / "stats.json").write_text(json.dumps({**stats, "format_version": 1}))
    with pytest.raises(MedistillError, match="format_version 1"):
        resolve_dataset(str(old))


def test_rubric_judge_without_any_rubric_asks_nothing():
    judge = RubricJudge(None, model="judge-x", base_url="http://127.0.0.1:9/v1")
    assert asyncio.run(judge.score(["a"], ["p"])) == [None] and judge.requests == 0
