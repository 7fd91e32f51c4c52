"""Question sources for debate and SAIE: built-in arithmetic, JSONL files, Hugging Face datasets.

Every source gives a list of `Question` records. `load_questions` is the one entry point
protocols use: ``"arithmetic"``, ``"arithmetic:N"`` or ``"arithmetic:N:SEED"``, a ``.jsonl`` path, or a Hugging Face
dataset name optionally followed by ``:config:split`` (e.g. ``"openai/gsm8k:main:test"``).

GSM8K-style answers (``<rationale> #### <number>``) are split into `rationale` and `answer`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..errors import ArgumentError, ProtocolError
from ._answers import gsm8k_gold

ARITHMETIC = "arithmetic"
ARITHMETIC_DEFAULT_COUNT = 100  # Du et al. (2023) evaluate on 100 arithmetic problems
ARITHMETIC_MAX = 30  # operands are drawn from [0, 30)


class Question(BaseModel):
    """One question with its gold answer.

    Args:
        question (`str`): the question text.
        answer (`str`): the gold answer (a normalised number for GSM8K and arithmetic).
        rationale (`str | None`): a gold worked solution, when the source has one.
        choices (`list[str] | None`): the options of a multiple-choice question.
        id (`str`): an identifier, unique within its source.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    answer: str
    rationale: str | None = None
    choices: list[str] | None = None
    id: str


def arithmetic_questions(n: int, seed: int) -> list[Question]:
    """Du et al.'s arithmetic problems ``a+b*c+d-e*f`` with six integers drawn from [0, 30).

    Args:
        n (`int`): how many questions.
        seed (`int`): the seed of a private `random.Random`; one seed always gives the same list.

    Returns:
        `list[Question]`: questions whose `answer` is the exact integer result.

    Example:
        >>> q = arithmetic_questions(1, seed=0)[0]
        >>> q.question.startswith("What is the result of "), q.id
        (True, 'arithmetic-0-0')
    """
    if n < 0:
        raise ArgumentError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    questions = []
    for i in range(n):
        a, b, c, d, e, f = (rng.randrange(ARITHMETIC_MAX) for _ in range(6))
        bc, ef = b * c, e * f
        result = a + bc + d - ef
        questions.append(
            Question(
                question=f"What is the result of {a}+{b}*{c}+{d}-{e}*{f}?",
                answer=str(result),
                rationale=f"{b}*{c} = {bc} and {e}*{f} = {ef}, so {a}+{bc}+{d}-{ef} = {result}.",
                id=f"{ARITHMETIC}-{seed}-{i}",
            )
        )
    return questions


def _to_question(
    record: Any,
    where: str,
    default_id: str,
    question_field: str = "question",
    answer_field: str = "answer",
) -> Question:
    """Build a `Question` from one record; `where` (file and line, or dataset row) prefixes errors."""
    if not isinstance(record, dict):
        raise ProtocolError(
            f"{where}: expected a JSON object with {question_field!r} and {answer_field!r}"
        )
    question = record.get(question_field)
    if not isinstance(question, str) or not question.strip():
        state = "missing" if question is None else "not a non-empty string"
        raise ProtocolError(
            f"{where}: field {question_field!r} is {state}; each record needs the question text"
        )
    answer = record.get(answer_field)
    if isinstance(answer, (int, float)) and not isinstance(answer, bool):
        answer = str(answer)
    if not isinstance(answer, str) or not answer.strip():
        state = "missing" if answer is None else "not a non-empty string or number"
        raise ProtocolError(
            f"{where}: field {answer_field!r} is {state}; each record needs the gold answer"
        )
    rationale = record.get("rationale")
    if rationale is not None and not isinstance(rationale, str):
        raise ProtocolError(f"{where}: field 'rationale' must be a string")
    if "####" in answer:
        try:
            gold = gsm8k_gold(answer)
        except ValueError as e:
            raise ProtocolError(
                f"{where}: field {answer_field!r}: {e}; GSM8K answers end with '#### <number>'"
            ) from e
        rationale = rationale if rationale is not None else answer.rpartition("####")[0].strip() or None
        answer = gold
    choices = record.get("choices")
    if choices is not None and not (
        isinstance(choices, list) and all(isinstance(c, str) for c in choices)
    ):
        raise ProtocolError(f"{where}: field 'choices' must be a list of strings")
    qid = record.get("id", default_id)
    if isinstance(qid, bool) or not isinstance(qid, (str, int)):
        raise ProtocolError(f"{where}: field 'id' must be a string or an integer")
    return Question(
        question=question, answer=answer.strip(), rationale=rationale, choices=choices, id=str(qid)
    )


def load_jsonl_questions(path: str | Path) -> list[Question]:
    """Read questions from a JSONL file, one JSON object per line; blank lines are skipped.

    Each object has ``question`` and ``answer`` (a GSM8K answer ``... #### 42`` gives
    ``rationale`` and ``answer="42"``), and optionally ``rationale``, ``choices`` and ``id``
    (default ``<file stem>-<line>``).

    Args:
        path (`str | Path`): the file.

    Returns:
        `list[Question]`: the questions in file order.

    Raises:
        `ProtocolError`: naming the file, the line and the field when a line is invalid.

    Example:
        >>> load_jsonl_questions("../shared/datasets/gsm8k/test.jsonl")[0].answer  # doctest: +SKIP
        '18'
    """
    path = Path(path)
    if not path.is_file():
        raise ProtocolError(
            f"{path}: no such question file; give a JSONL file with 'question' and 'answer' fields"
        )
    questions: list[Question] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}, line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ProtocolError(f"{where}: invalid JSON ({e.msg} at column {e.colno})") from e
            question = _to_question(record, where, default_id=f"{path.stem}-{lineno}")
            if question.id in seen:
                raise ProtocolError(f"{where}: field 'id' {question.id!r} repeats line {seen[question.id]}")
            seen[question.id] = lineno
            questions.append(question)
    if not questions:
        raise ProtocolError(f"{path}: no questions in the file; write one JSON object per line")
    return questions


def load_hf_questions(
    name: str,
    split: str = "test",
    config: str | None = None,
    question_field: str = "question",
    answer_field: str = "answer",
    cache_dir: str | None = None,
) -> list[Question]:
    """Load questions from a Hugging Face dataset, or from a local data file or directory.

    Args:
        name (`str`): a dataset name (``"openai/gsm8k"``), or an existing JSON/JSONL file or a
            directory of them (split by file name, e.g. ``train.jsonl`` and ``test.jsonl``),
            loaded with the ``json`` builder.
        split (`str`, defaults to ``"test"``): the split.
        config (`str | None`): the dataset configuration (``"main"`` for GSM8K).
        question_field (`str`, defaults to ``"question"``): the column holding the question.
        answer_field (`str`, defaults to ``"answer"``): the column holding the gold answer.
        cache_dir (`str | None`): where `datasets` caches; its default when `None`.

    Returns:
        `list[Question]`: the split's questions, with ids ``<name>-<split>-<row>`` unless the
        dataset has an ``id`` column.

    Raises:
        `ProtocolError`: when the dataset cannot be loaded (e.g. the hub is unreachable) or a
        row lacks a field.

    Example:
        >>> load_hf_questions("openai/gsm8k", config="main")[0].answer  # doctest: +SKIP
        '18'
    """
    import datasets  # slow to import: only here

    local = Path(name)
    try:
        if local.is_dir():
            dataset = datasets.load_dataset(
                "json", data_dir=str(local), split=split, cache_dir=cache_dir
            )
        elif local.is_file():
            dataset = datasets.load_dataset(
                "json", data_files={split: str(local)}, split=split, cache_dir=cache_dir
            )
        else:
            dataset = datasets.load_dataset(name, config, split=split, cache_dir=cache_dir)
    except (OSError, ValueError, datasets.exceptions.DatasetsError) as e:  # ConnectionError is an OSError
        raise ProtocolError(
            f"dataset {name!r} (config {config!r}, split {split!r}) could not be loaded: {e}. "
            "Without access to the Hugging Face hub, give a local JSONL path instead "
            "(e.g. 'path/to/gsm8k/test.jsonl'); set HF_HUB_OFFLINE=1 to fail fast offline"
        ) from e
    missing = [f for f in (question_field, answer_field) if f not in dataset.column_names]
    if missing:
        raise ProtocolError(
            f"dataset {name!r} split {split!r}: no column {missing[0]!r}; its columns are "
            f"{', '.join(dataset.column_names)} (set question_field/answer_field)"
        )
    stem = local.stem if local.exists() else name.replace("/", "_")
    where = f"dataset {name!r} split {split!r}, row"
    return [
        _to_question(row, f"{where} {i}", f"{stem}-{split}-{i}", question_field, answer_field)
        for i, row in enumerate(dataset)
    ]


def load_questions(source: str, n: int | None = None, seed: int = 0) -> list[Question]:
    """Load questions from any source named by one string.

    Args:
        source (`str`): ``"arithmetic"`` (100 problems unless `n` says), ``"arithmetic:N"`` or
            ``"arithmetic:N:SEED"`` (another generator seed: other problems, e.g. held out);
            an existing ``.jsonl`` file; otherwise a Hugging Face dataset name or local
            dataset path, optionally ``name:config:split`` (split defaults to ``test``).
        n (`int | None`): keep only the first `n` questions; all when `None`.
        seed (`int`, defaults to 0): the seed of the arithmetic generator.

    Returns:
        `list[Question]`: the questions.

    Example:
        >>> len(load_questions("arithmetic:20", n=5))
        5
    """
    if n is not None and n < 0:
        raise ArgumentError(f"n must be >= 0 or None, got {n}")
    head, sep, rest = source.partition(":")
    if head == ARITHMETIC:
        count, _, seed_text = rest.partition(":")
        if sep and not (count.isdigit() and (not seed_text or seed_text.isdigit())):
            raise ProtocolError(
                f"question source {source!r}: expected 'arithmetic', 'arithmetic:N' or 'arithmetic:N:SEED' "
                "(N a count, SEED a whole number)"
            )
        total = int(count) if sep else (n if n is not None else ARITHMETIC_DEFAULT_COUNT)
        questions = arithmetic_questions(total, int(seed_text) if seed_text else seed)
    elif source.endswith(".jsonl"):
        questions = load_jsonl_questions(source)
    elif Path(source).exists():
        questions = load_hf_questions(source)
    else:
        name, _, rest = source.partition(":")
        config, _, split = rest.partition(":")
        questions = load_hf_questions(name, split=split or "test", config=config or None)
    return questions if n is None else questions[:n]
