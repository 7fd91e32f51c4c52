"""`sparring eval compare`: McNemar's exact test between two learner-alone evaluations (replay clients)."""

from __future__ import annotations

import json

import pytest
from autogen_ext.models.replay import ReplayChatCompletionClient
from typer.testing import CliRunner

from sparring.cli import app
from sparring.errors import ArgumentError
from sparring.evaluation import compare_learner_evals, eval_learner, eval_qa, learner_eval_folder

# Ten questions whose answer is 7 and two whose answer is 8: a learner that always says 7 is right
# on ten, one that always says 8 on two, and they disagree on all twelve.
ANSWERS = [7] * 10 + [8] * 2


def _questions(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps({"question": f"What is {a}+0? (#{i})", "answer": str(a)}) + "\n"
                            for i, a in enumerate(ANSWERS)))
    return str(path)


async def _evaluate(tmp_path, name, says):
    folder = tmp_path / name / "epoch_1" / "eval"
    await eval_learner("saie", "replay", _questions(tmp_path), folder, limit=len(ANSWERS), concurrency=4,
                       clients=lambda role, spec: ReplayChatCompletionClient([f"So: 3+4. The answer is {says}."]))
    return folder


async def test_compare_pairs_the_questions_and_names_the_better_run(tmp_path):
    sevens, eights = await _evaluate(tmp_path, "sevens", 7), await _evaluate(tmp_path, "eights", 8)
    result = compare_learner_evals(tmp_path / "sevens", tmp_path / "eights")  # run folders: their last epoch
    assert result["first"] == str(sevens) and result["second"] == str(eights)
    assert (result["questions"], result["trained_correct"], result["baseline_correct"]) == (12, 10, 2)
    assert (result["only_trained"], result["only_baseline"]) == (10, 2)
    assert result["p_value"] == pytest.approx(79 / 2048)  # two-sided exact binomial, 10 of 12
    assert result["verdict"].startswith(f"better than {eights} on held-out questions (accuracy 83% vs 17%")
    assert compare_learner_evals(eights, sevens)["verdict"].startswith("worse than")
    with pytest.raises(ArgumentError, match=r"--role lerner: no episode in .* has that role \(did you mean 'learner'"):
        compare_learner_evals(sevens, eights, role="lerner")

    printed = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "sevens" / "epoch_1"), str(eights)])
    assert printed.exit_code == 0, printed.output
    assert f"first: {sevens}" in printed.output and "McNemar exact p = 0.039" in printed.output


async def test_bad_folders_are_named(tmp_path):
    with pytest.raises(ArgumentError, match="no evaluation here"):
        learner_eval_folder(tmp_path)
    await eval_qa(_questions(tmp_path), "replay", tmp_path / "qa", limit=2,
                  clients=lambda role, spec: ReplayChatCompletionClient(["The answer is 7."]))
    with pytest.raises(ArgumentError, match="not a learner-alone evaluation"):
        learner_eval_folder(tmp_path / "qa")
    sevens = await _evaluate(tmp_path, "sevens", 7)
    other = tmp_path / "other" / "eval"
    await eval_learner("saie", "replay", "arithmetic:3:1", other, limit=3,
                       clients=lambda role, spec: ReplayChatCompletionClient(["The answer is 1."]))
    with pytest.raises(ArgumentError, match="share no question"):
        compare_learner_evals(sevens, other)
    printed = CliRunner().invoke(app, ["eval", "compare", str(tmp_path / "nowhere"), str(sevens)])
    assert printed.exit_code != 0 and "no evaluation here" in printed.output
