"""Multi-agent debate (Du et al. 2023): protocol variants and the comparison with single agents.

`debate_protocol` builds the built-in ``debate`` protocol with any number of debaters and
rounds (and, optionally, another question source). `compare_debate` plays the debate over a
question set, one episode per question, and scores the same transcripts three ways: one
agent alone (``debater_1``'s first answer), the majority vote of the independent first
answers (no debate), and the majority vote of the last round (debate).

Example:
    ```python
    import asyncio
    from pathlib import Path
    from sparring.protocols._debate import compare_debate

    report = asyncio.run(compare_debate("arithmetic", agents=3, rounds=2, model="hf:smollm2-135m",
                                        out_dir=Path("runs/debate"), n=20))
    print(report.single_agent, report.majority_vote, report.debate)
    ```
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml
from autogen_core.models import ChatCompletionClient

from ..errors import ArgumentError
from ..transcripts import Episode, episode_id, latest_by_id, read_transcripts
from ._answers import answers_match, extract_answer, majority_vote
from ._loader import BUILTIN_DIR, Protocol, load_protocol, parse_protocol
from ._play import play
from ._questions import ARITHMETIC, load_questions
from ._schema import RoleSpec

DEFAULT_AGENTS = 3
DEFAULT_ROUNDS = 2
_DEBATE = "debate"


def debater_names(agents: int) -> list[str]:
    """The role names of ``agents`` debaters: ``debater_1`` ... ``debater_N``."""
    return [f"debater_{i}" for i in range(1, agents + 1)]


def _majority_rule(names: list[str]) -> str:
    """The judging expression: the majority of each debater's last answer matches the gold answer."""
    answers = ",\n  ".join(
        f'extract_answer((messages | selectattr("role", "equalto", "{name}") | list | last).content)' for name in names
    )
    return f"answers_match(majority_vote([\n  {answers}\n]), item.answer)"


def debate_protocol(agents: int = DEFAULT_AGENTS, rounds: int = DEFAULT_ROUNDS, *, questions: str | None = None) -> Protocol:
    """The built-in ``debate`` protocol with ``agents`` debaters and ``rounds`` rounds.

    With the defaults (and no ``questions``) this is exactly ``load_protocol("debate")``. Any
    other variant is the built-in file with its roles, schedule, judging rule and rewards
    rewritten, validated again; its text (and so its hash in transcripts) differs per variant.

    Args:
        agents (`int`, defaults to 3): debaters, all with the same prompts and sampling.
        rounds (`int`, defaults to 2): rounds; round 0 answers independently, every later round
            sees the other debaters' answers of the round before.
        questions (`str | None`): a question source (``"arithmetic"``, ``"arithmetic:N"``, a
            ``.jsonl`` path or a Hugging Face dataset name) instead of the built-in arithmetic;
            episode ``i`` gets question ``i``.

    Returns:
        `Protocol`: the variant.

    Raises:
        `ValueError`: ``agents`` or ``rounds`` is below 1.

    Example:
        >>> p = debate_protocol(agents=5, rounds=3)
        >>> p.spec.schedule.order[-1], p.spec.schedule.rounds, p.hash != debate_protocol().hash
        ('debater_5', 3, True)
    """
    if agents < 1 or rounds < 1:
        raise ArgumentError(f"a debate needs at least 1 agent and 1 round, got agents={agents}, rounds={rounds}")
    builtin = load_protocol(_DEBATE)
    if agents == DEFAULT_AGENTS and rounds == DEFAULT_ROUNDS and questions is None:
        return builtin
    data = yaml.safe_load(builtin.text)
    names = debater_names(agents)
    template = data["roles"]["debater_1"]
    data["roles"] = {name: copy.deepcopy(template) for name in names}
    data["schedule"]["order"] = names
    data["schedule"]["rounds"] = rounds
    data["judge"]["final"][0]["when"] = _majority_rule(names)
    data["rewards"] = {name: "1 if reason == 'correct' else 0" for name in names}
    if questions is not None:
        local = Path(questions)
        source = str(local.resolve()) if questions.partition(":")[0] != ARITHMETIC and local.exists() else questions
        data["variables"]["item"] = {"questions": source, "order": "sequential"}
    data["description"] = (f"Du et al.'s multi-agent debate with {agents} agents and {rounds} rounds: round 0 answers "
                           "independently, every later round sees the others' previous answers; judged by the "
                           "majority vote of the last round against the gold answer.")
    header = (f"# The built-in debate protocol with agents={agents}, rounds={rounds}"
              f"{f', questions={questions}' if questions is not None else ''} (sparring.protocols._debate).\n")
    return parse_protocol(variant_text(data, header), Path(str(BUILTIN_DIR / f"{_DEBATE}.yaml")))


def variant_text(data: dict, header: str) -> str:
    """The YAML text of a protocol variant built from a loaded file's data: ``header`` (comment lines),
    then the data with multi-line strings (prompts, rules) as literal blocks, so it stays readable."""
    return header + yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (prompts, rules) as literal blocks, so a variant's text stays readable."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _represent_str)


@dataclass
class DebateReport:
    """Accuracies of one debate run, all on the same questions (its ``ok`` episodes).

    Args:
        agents (`int`), rounds (`int`): the debate played.
        questions (`int`): questions scored (episodes that ended ``ok``).
        errors (`int`): episodes that failed (not scored).
        single_agent_correct (`int`): ``debater_1``'s first (independent) answer was right.
        majority_vote_correct (`int`): the majority of the first-round answers was right.
        debate_correct (`int`): the majority of the last round's answers was right.
        reflection_correct (`int | None`): Du et al.'s reflection baseline: one agent alone, answering
            and then for ``rounds - 1`` rounds examining its own previous answer; its last answer was
            right (same questions; a failed reflection episode counts as wrong). None when not played.
        path (`Path | None`): the transcripts.
    """

    agents: int
    rounds: int
    questions: int = 0
    errors: int = 0
    single_agent_correct: int = 0
    majority_vote_correct: int = 0
    debate_correct: int = 0
    reflection_correct: int | None = None
    path: Path | None = None

    def _rate(self, correct: int) -> float:
        return correct / self.questions if self.questions else 0.0

    @property
    def single_agent(self) -> float:
        """Accuracy of one agent alone (``debater_1`` in round 0)."""
        return self._rate(self.single_agent_correct)

    @property
    def majority_vote(self) -> float:
        """Accuracy of the majority vote of the independent round-0 answers (no debate)."""
        return self._rate(self.majority_vote_correct)

    @property
    def debate(self) -> float:
        """Accuracy of the majority vote of the last round (after debate)."""
        return self._rate(self.debate_correct)

    @property
    def reflection(self) -> float | None:
        """Accuracy of one agent reflecting on its own answers for the same rounds (None when not played)."""
        return None if self.reflection_correct is None else self._rate(self.reflection_correct)

    def add(self, episode: Episode, names: list[str]) -> None:
        """Score one episode's messages."""
        if episode.status != "ok":
            self.errors += 1
            return
        gold = str(episode.variables["item"]["answer"])
        first = _answers(episode, names, 0)
        last = _answers(episode, names, max((m.round for m in episode.messages), default=0))
        self.questions += 1
        self.single_agent_correct += answers_match(first.get(names[0]), gold)
        self.majority_vote_correct += answers_match(majority_vote([first.get(n) for n in names]), gold)
        self.debate_correct += answers_match(majority_vote([last.get(n) for n in names]), gold)


def _answers(episode: Episode, names: list[str], round_number: int) -> dict[str, str | None]:
    """Each debater's extracted answer in one round (None where it gave none)."""
    return {m.role: extract_answer(m.content) for m in episode.messages if m.round == round_number and m.role in names}


def score_debate(path: Path, agents: int, rounds: int, ids: list[str] | None = None) -> DebateReport:
    """Score a debate transcript file: single agent, majority without debate, debate.

    Args:
        path (`Path`): the transcripts (``transcripts.jsonl``).
        agents (`int`), rounds (`int`): the debate that was played (roles ``debater_1..N``).
        ids (`list[str] | None`): score only these episodes (default: every episode in the file).
    """
    report = DebateReport(agents=agents, rounds=rounds, path=path)
    names = debater_names(agents)
    latest = latest_by_id(read_transcripts(path))
    for episode_key in ids if ids is not None else list(latest):
        if episode_key in latest:
            report.add(latest[episode_key], names)
    return report


async def compare_debate(
    questions: str,
    agents: int,
    rounds: int,
    model: str,
    out_dir: Path,
    n: int | None = None,
    seed: int = 0,
    concurrency: int = 32,
    clients: Callable[[str, RoleSpec], ChatCompletionClient] | None = None,
    resume: bool = False,
    reflection: bool = True,
    on_start: Callable[[int], None] | None = None,
    on_episode: Callable[[Episode], None] | None = None,
) -> DebateReport:
    """Play the debate over a question set and compare it with single agents on the same questions.

    One episode per question (episode ``i`` gets question ``i``); the transcripts go to
    ``out_dir/transcripts.jsonl``. The single-agent, majority and debate accuracies come from
    those transcripts; with ``reflection`` (and ``rounds`` > 1) Du et al.'s reflection baseline, one
    agent examining its own previous answer each later round, plays the same questions into
    ``out_dir/reflection/``.

    Args:
        questions (`str`): the question source (see `load_questions`).
        agents (`int`), rounds (`int`): debaters and rounds (Du et al.: 3 and 2).
        model (`str`): the model spec of every debater.
        out_dir (`Path`): where the transcripts go.
        n (`int | None`): the first ``n`` questions only (default: all).
        seed (`int`, defaults to 0): the run's seed (episode ids, sampling).
        concurrency (`int`, defaults to 32): episodes in flight at once.
        clients: a role client factory instead of `model` (tests pass replay clients).
        resume (`bool`, defaults to False): continue a run already in ``out_dir``.
        reflection (`bool`, defaults to True): also play the reflection baseline.
        on_start: called once, before any episode, with the number of episodes to play in all
            (debates and reflections; progress bars).
        on_episode: called with each episode as it is written.

    Returns:
        `DebateReport`: the accuracies and counts.
    """
    if questions == ARITHMETIC and n is not None:
        questions = f"{ARITHMETIC}:{n}"  # the built-in generator makes 100 unless told
    count = len(load_questions(questions, n=n))
    protocol = debate_protocol(agents, rounds, questions=questions)
    models = {role: model for role in protocol.spec.roles}
    reflect = reflection and rounds > 1
    if on_start is not None:
        on_start(count * (2 if reflect else 1))
    summary = await play(protocol, count, Path(out_dir), models, clients=clients, concurrency=concurrency,
                         seed=seed, resume=resume, on_episode=on_episode)
    ids = [episode_id(protocol.name, i, seed) for i in range(count)]
    report = score_debate(summary.path, agents, rounds, ids)
    if reflect:
        alone = debate_protocol(1, rounds, questions=questions)
        reflected = await play(alone, count, Path(out_dir) / "reflection", {role: model for role in alone.spec.roles},
                               clients=clients, concurrency=concurrency, seed=seed, resume=resume,
                               on_episode=on_episode)
        debated = latest_by_id(read_transcripts(summary.path))
        scored = [i for i in ids if i in debated and debated[i].status == "ok"]  # the debate's questions
        report.reflection_correct = score_debate(reflected.path, 1, rounds, scored).debate_correct
    return report


__all__ = ["DebateReport", "compare_debate", "debate_protocol", "debater_names", "score_debate"]
