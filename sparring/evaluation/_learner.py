"""Accuracy of a discussion's learner answering alone, with its own prompt (SAIE's evaluation).

SAIE trains a learner on discussions, but the trained model is used without a partner: it is
scored on held-out questions with the very prompt it answers with in the discussion's first turn
(its system prompt and first-turn prompt from the protocol), one turn, judged by the protocol's
own rule. `learner_alone` builds that one-turn variant of the protocol; `eval_learner` plays it.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import ArgumentError, ProtocolError, did_you_mean
from ..protocols import Protocol, load_protocol, parse_protocol, play
from ..protocols._episode import ClientFactory
from ..protocols._debate import variant_text
from ..runs import (ACCURACY_FILE, EVAL_DIR, TRANSCRIPTS_FILE as TRANSCRIPTS, AccuracyFile, epoch_dirs, read_record,
                    write_record)
from ..transcripts import latest_by_id, read_transcripts
from ._qa import MethodScore, QAResult
from ._significance import compare_accuracy

LEARNER_PROMPT = "learner_prompt"
"""The method name of this evaluation in ``accuracy.json``."""


def learner_alone(protocol: Protocol | str | Path, questions: str, role: str = "learner") -> Protocol:
    """The protocol with ``role`` alone answering ``questions`` in one turn, with its own prompts and judge.

    Args:
        protocol (`Protocol | str | Path`): a discussion with a question variable ``item`` (e.g. ``saie``).
        questions (`str`): the question source of ``item`` (``"arithmetic:N:SEED"``, a ``.jsonl``, a
            dataset name); episode ``i`` gets question ``i``.
        role (`str`, defaults to ``"learner"``): the role that answers.

    Raises:
        `ProtocolError`: the protocol has no such role or no ``item`` variable.

    Example:
        >>> learner_alone("saie", "arithmetic:10:7").spec.schedule.order
        ['learner']
    """
    loaded = protocol if isinstance(protocol, Protocol) else load_protocol(protocol)
    data = yaml.safe_load(loaded.text)
    if role not in data.get("roles", {}) or "item" not in data.get("variables", {}):
        raise ProtocolError(f"{loaded.name}: evaluating the {role!r} alone needs a role {role!r} and a question "
                            f"variable `item`; it has roles {sorted(data.get('roles', {}))}")
    local = Path(questions)
    source = str(local.resolve()) if local.suffix == ".jsonl" and local.exists() else questions
    data["variables"]["item"] = {"questions": source, "order": "sequential"}
    data["schedule"] = {"type": "sequence", "order": [role]}
    data["name"] = f"{loaded.name}_{role}_alone"
    data["description"] = f"The {role} of {loaded.name} answering alone in one turn, with its own prompts."
    header = f"# {loaded.name} with the {role} alone, questions={questions} (sparring.evaluation._learner).\n"
    return parse_protocol(variant_text(data, header), loaded.path)


async def eval_learner(protocol: Protocol | str | Path, model: str, questions: str, out_dir: Path, *,
                       limit: int, seed: int = 0, concurrency: int = 32, resume: bool = False,
                       role: str = "learner", clients: ClientFactory | None = None) -> QAResult:
    """Score ``model`` as the protocol's ``role`` answering alone on ``limit`` questions.

    Writes ``out_dir/transcripts.jsonl`` and ``out_dir/accuracy.json`` (method ``learner_prompt``);
    ``clients`` is a role client factory instead of ``model`` (tests pass replay clients).

    Returns:
        `QAResult`: the accuracy with its Wilson interval; episodes that failed are not scored.
    """
    alone = learner_alone(protocol, questions, role)
    out_dir = Path(out_dir)
    models = {name: model for name in alone.spec.model_roles}
    await play(alone, limit, out_dir, models, clients=clients, concurrency=concurrency, seed=seed, resume=resume)
    outcomes = correct_by_question(out_dir, role)
    result = QAResult(model, questions, len(outcomes), limit - len(outcomes), path=out_dir / TRANSCRIPTS)
    result.methods[LEARNER_PROMPT] = MethodScore(sum(outcomes.values()), len(outcomes))
    write_record(out_dir / ACCURACY_FILE, AccuracyFile, result.to_dict())
    return result


def correct_by_question(out_dir: Path, role: str = "learner") -> dict[str, bool]:
    """Question -> whether ``role`` won (answered right), for the episodes of ``out_dir`` that ended ok.

    Questions are keyed by their text (two runs with other seeds still pair up question by question).
    """
    episodes = latest_by_id(read_transcripts(Path(out_dir) / TRANSCRIPTS, strict=False)).values()
    played = sorted({name for e in episodes for name in e.models})
    if played and role not in played:
        raise ArgumentError(f"--role {role}: no episode in {out_dir} has that role" + did_you_mean(role, played)
                            + f"; its roles are {played}")
    return {_question(e.variables.get("item"), e.id): e.outcome.winner == role
            for e in episodes if e.status == "ok" and e.outcome is not None}


def learner_eval_folder(path: Path) -> Path:
    """The folder of a learner-alone evaluation that ``path`` names.

    ``path`` is the folder itself (a self-play epoch's ``eval/`` or the run's ``baseline/``), an
    ``epoch_K`` folder (its ``eval/``), or a self-play run (its last epoch with an evaluation).

    Raises:
        `ArgumentError`: ``path`` holds no learner-alone evaluation (``accuracy.json`` with the
            ``learner_prompt`` method beside ``transcripts.jsonl``).
    """
    path = Path(path)
    candidates = [path, path / EVAL_DIR]
    if path.is_dir():
        candidates += [folder / EVAL_DIR for _, folder in reversed(epoch_dirs(path))]
    for folder in candidates:
        if (folder / ACCURACY_FILE).is_file() and (folder / TRANSCRIPTS).is_file():
            if LEARNER_PROMPT not in read_record(folder / ACCURACY_FILE, AccuracyFile).methods:
                raise ArgumentError(f"{folder / ACCURACY_FILE}: not a learner-alone evaluation (no method "
                                    f"{LEARNER_PROMPT!r}); compare the eval/ or baseline/ folders of SAIE-style "
                                    "self-play runs (`sparring selfplay -p saie`)")
            return folder
    raise ArgumentError(f"{path}: no evaluation here; give a self-play run of the SAIE kind, one of its epoch_K "
                        f"folders, or a folder with {ACCURACY_FILE} and {TRANSCRIPTS}")


def compare_learner_evals(first: Path, second: Path, role: str = "learner") -> dict[str, object]:
    """McNemar's exact test of two learner-alone evaluations on the questions both answered.

    Answers: does the model evaluated in ``first`` (e.g. SAIE's last epoch) answer held-out
    questions better than the one in ``second`` (e.g. plain SFT's last epoch, or a start model)?
    Either may be any path `learner_eval_folder` takes.

    Returns:
        `dict`: ``first`` and ``second`` (the folders compared) and `compare_accuracy`'s fields, its
        verdict naming ``second``.

    Raises:
        `ArgumentError`: a path holds no such evaluation, or the two share no question.
    """
    folders = learner_eval_folder(first), learner_eval_folder(second)
    answers = [correct_by_question(folder, role) for folder in folders]
    if not set(answers[0]) & set(answers[1]):
        raise ArgumentError(f"{folders[0]} and {folders[1]} share no question: evaluate both on the same "
                            "held-out questions (selfplay --eval-questions)")
    return {"first": str(folders[0]), "second": str(folders[1]),
            **compare_accuracy(answers[0], answers[1], start=str(folders[1]))}


def _question(item: object, fallback: str) -> str:
    return str(item["question"]) if isinstance(item, dict) and "question" in item else fallback


__all__ = ["LEARNER_PROMPT", "compare_learner_evals", "correct_by_question", "eval_learner", "learner_alone",
           "learner_eval_folder"]
