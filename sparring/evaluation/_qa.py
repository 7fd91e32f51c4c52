"""Accuracy on a question set: a single agent, and with ``debate`` the majority vote and the debate.

It plays the built-in ``debate`` protocol (`sparring.protocols._debate`): one debater and one
round for the single agent alone; ``agents`` debaters and ``rounds`` rounds with ``debate``,
scored three ways on the same questions (``debater_1``'s first answer, the majority of the
first answers, the majority of the last round).

Example:
    ```python
    import asyncio
    from pathlib import Path
    from sparring.evaluation import eval_qa

    result = asyncio.run(eval_qa("arithmetic:20", "hf:smollm2-135m", Path("runs/qa"), debate=True))
    print(result.methods["debate"].accuracy, result.methods["debate"].ci)
    ```
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from autogen_core.models import ChatCompletionClient

from ..protocols._debate import compare_debate
from ..protocols._schema import RoleSpec
from ..runs import ACCURACY_FILE, AccuracyFile, write_record
from ..settings import QAConfig
from ..transcripts import Episode
from ._wilson import rate, wilson_interval

SINGLE, MAJORITY, DEBATE, REFLECTION = "single_agent", "majority_vote", "debate", "reflection"


@dataclass
class MethodScore:
    """Correct answers of one method, with the accuracy's Wilson 95% interval."""

    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return rate(self.correct, self.total)

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.total)

    def to_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "total": self.total, "accuracy": self.accuracy, "ci": list(self.ci)}


@dataclass
class QAResult:
    """Accuracies of one model on one question set, per method (all on the same questions).

    Args:
        model (`str`), source (`str`): the model and the question source.
        questions (`int`): questions scored (episodes that ended without an error).
        errors (`int`): episodes that failed (not scored).
        agents (`int`), rounds (`int`): the debate played (1 and 1 without ``debate``).
        methods (`dict[str, MethodScore]`): ``single_agent``, and with debate ``majority_vote``,
            ``debate`` and (with more than one round) ``reflection``, Du et al.'s single agent
            examining its own previous answers for the same rounds.
        path (`Path | None`): the transcripts.
    """

    model: str
    source: str
    questions: int = 0
    errors: int = 0
    agents: int = 1
    rounds: int = 1
    methods: dict[str, MethodScore] = field(default_factory=dict)
    path: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record written to ``accuracy.json``."""
        return {"questions": self.questions, "methods": {k: v.to_dict() for k, v in self.methods.items()},
                "model": self.model, "source": self.source, "errors": self.errors,
                "agents": self.agents, "rounds": self.rounds}


async def eval_qa(
    questions: str,
    model: str,
    out_dir: Path,
    *,
    debate: bool = False,
    agents: int = QAConfig.agents,
    rounds: int = QAConfig.rounds,
    limit: int | None = None,
    seed: int = 0,
    concurrency: int = QAConfig.concurrency,
    resume: bool = False,
    clients: Callable[[str, RoleSpec], ChatCompletionClient] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_episode: Callable[[Episode], None] | None = None,
) -> QAResult:
    """Score ``model`` on a question set; with ``debate``, also the majority vote and the debate.

    Args:
        questions (`str`): ``"arithmetic"``, ``"arithmetic:N"``, a ``.jsonl`` file (question and
            answer fields, e.g. GSM8K) or a Hugging Face dataset name.
        model (`str`): the model spec (every debater).
        out_dir (`Path`): where ``transcripts.jsonl`` and ``accuracy.json`` go.
        debate (`bool`, defaults to False): also play ``agents`` debaters for ``rounds`` rounds.
        agents (`int`, defaults to 3), rounds (`int`, defaults to 2): the debate (Du et al.).
        limit (`int | None`): the first ``limit`` questions only.
        seed (`int`, defaults to 0): the run's seed (sampling and episode ids).
        concurrency (`int`, defaults to 32): questions in flight at once.
        resume (`bool`, defaults to False): continue a run already in ``out_dir``.
        clients: a role client factory instead of ``model`` (tests pass replay clients).
        on_start, on_episode: progress hooks (see `compare_debate`).

    Returns:
        `QAResult`: per-method accuracies; ``.to_dict()`` is what ``accuracy.json`` holds.

    Raises:
        `ProtocolError`: the question source is unusable, or ``out_dir`` already holds transcripts
            and ``resume`` is not set.
    """
    played_agents, played_rounds = (agents, rounds) if debate else (1, 1)
    report = await compare_debate(questions, played_agents, played_rounds, model, Path(out_dir), n=limit, seed=seed,
                                  concurrency=concurrency, clients=clients, resume=resume, on_start=on_start,
                                  on_episode=on_episode)
    result = QAResult(model, questions, report.questions, report.errors, played_agents, played_rounds, path=report.path)
    result.methods[SINGLE] = MethodScore(report.single_agent_correct, report.questions)
    if debate:
        result.methods[MAJORITY] = MethodScore(report.majority_vote_correct, report.questions)
        result.methods[DEBATE] = MethodScore(report.debate_correct, report.questions)
        if report.reflection_correct is not None:
            result.methods[REFLECTION] = MethodScore(report.reflection_correct, report.questions)
    write_record(Path(out_dir) / ACCURACY_FILE, AccuracyFile, result.to_dict())
    return result
