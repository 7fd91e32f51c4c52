"""Decide episodes: a protocol's rules after each message and at the end, an opt-in Python hook, rewards."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from jinja2.exceptions import TemplateError

from ..errors import JudgeError
from ._expressions import compile_expression, render
from ._loader import Protocol


@dataclass(frozen=True)
class Outcome:
    """Who won (None for a tie) and why."""

    winner: str | None
    reason: str


class Judge:
    """Judges one protocol's episodes by its rules.

    Args:
        protocol (`Protocol`): the rules to apply.
        allow_hooks (`bool`, defaults to False): run the protocol's Python hook, if it names one.
            Loading a file never runs code unless this is set.
    """

    def __init__(self, protocol: Protocol, allow_hooks: bool = False):
        self.protocol = protocol
        judge = protocol.spec.judge
        self._rules = [(rule, compile_expression(rule.when)) for rule in judge.rules]
        self._final = [(rule, compile_expression(rule.when)) for rule in judge.final]
        self._rewards = {role: compile_expression(expr) for role, expr in protocol.spec.rewards.items()}
        self._hook = _import_hook(judge.hook) if judge.hook and allow_hooks else None
        if judge.hook and not allow_hooks:
            raise JudgeError(f"{protocol.name} names the Python hook {judge.hook!r}; pass --allow-hooks to run it")

    def after_message(self, variables: dict[str, Any], messages: list[dict]) -> Outcome | None:
        """The outcome the last of ``messages`` decides, or None when the episode goes on."""
        return self._first(self._rules, variables, messages, only_last_speaker=True)

    def final(self, variables: dict[str, Any], messages: list[dict]) -> Outcome:
        """The outcome of a finished episode whose messages decided nothing on the way."""
        if self._hook is not None:
            verdict = self._hook({"variables": variables, "messages": messages})
            if verdict is not None:
                return Outcome(verdict.get("winner"), verdict.get("reason", "hook"))
        decided = self._first(self._final, variables, messages, only_last_speaker=False)
        default = self.protocol.spec.judge.default
        return decided or Outcome(default.winner, default.reason)

    def judge(self, variables: dict[str, Any], messages: list[dict]) -> tuple[Outcome, int | None]:
        """Re-judge a whole logged episode: its outcome and the index of the deciding message (None at the end).

        As in play, the first deciding message decides, whether or not the episode stopped there.
        A logged LLM judge verdict (the last message, from the judge) is parsed again, not re-asked.
        """
        llm = self.protocol.spec.judge.llm
        verdict = messages[-1] if llm is not None and messages and messages[-1]["role"] == llm.role else None
        players = messages[:-1] if verdict is not None else messages
        for index in range(len(players)):
            outcome = self.after_message(variables, players[: index + 1])
            if outcome is not None:
                return outcome, index
        if verdict is not None:
            chosen = llm.verdicts[parse_verdict(verdict["content"], list(llm.verdicts))]
            return Outcome(chosen.winner, chosen.reason), len(players)
        return self.final(variables, players), None

    async def ask_model(self, variables: dict[str, Any], messages: list[dict], client) -> tuple[Outcome, dict]:
        """Ask the protocol's LLM judge for a verdict; return the outcome and the judge's message.

        Raises:
            `JudgeError`: the reply is not exactly one of the allowed verdicts.
        """
        from autogen_core.models import SystemMessage, UserMessage

        llm = self.protocol.spec.judge.llm
        context = {**variables, "messages": messages, "roles": list(self.protocol.spec.roles), "role": llm.role}
        prompt = [SystemMessage(content=render(llm.system, context)), UserMessage(content=render(llm.prompt, context), source="user")]
        result = await client.create(prompt)
        verdict = parse_verdict(result.content, list(llm.verdicts))
        chosen = llm.verdicts[verdict]
        return Outcome(chosen.winner, chosen.reason), {"role": llm.role, "content": result.content, "turn": len(messages)}

    def rewards(self, outcome: Outcome, variables: dict[str, Any]) -> dict[str, float]:
        """Each role's reward: the protocol's expressions, else 1 to the winner, -1 to the others, 0 on a tie."""
        rewards = {}
        for role in self.protocol.spec.roles:
            if role in self._rewards:
                context = {**variables, "role": role, "winner": outcome.winner, "reason": outcome.reason}
                rewards[role] = float(self._evaluate(self._rewards[role], context, f"rewards.{role}"))
            else:
                rewards[role] = 0.0 if outcome.winner is None else (1.0 if role == outcome.winner else -1.0)
        return rewards

    def _first(self, rules, variables, messages, only_last_speaker: bool) -> Outcome | None:
        if not messages:
            return None
        last = messages[-1]
        context = {**variables, "message": last["content"], "role": last["role"], "turn": last.get("turn", len(messages) - 1),
                   "round": last.get("round", 0), "messages": messages, "roles": list(self.protocol.spec.roles)}
        for index, (rule, check) in enumerate(rules):
            if only_last_speaker and rule.roles is not None and last["role"] not in rule.roles:
                continue
            if self._evaluate(check, context, f"judge rule {index} ({rule.when!r})"):
                return Outcome(rule.winner, rule.reason)
        return None

    @staticmethod
    def _evaluate(check: Callable, context: dict, what: str) -> Any:
        try:
            return check(**context)
        except (TemplateError, TypeError, ValueError, AttributeError) as error:
            raise JudgeError(f"{what} failed: {error}") from error


def parse_verdict(reply: str, verdicts: list[str]) -> str:
    """The verdict ``reply`` states: the whole reply, less quotes, emphasis and a final full stop,
    must be one of ``verdicts`` (case-insensitive).

    Raises:
        `JudgeError`: anything else; the judge is not second-guessed.

    Example:
        >>> parse_verdict(" **Defender.**", ["attacker", "defender", "tie"])
        'defender'
    """
    cleaned = reply.strip().strip("*`'\"").rstrip(".!").strip("*`'\" ").lower()
    matches = [v for v in verdicts if v.lower() == cleaned]
    if len(matches) != 1:
        raise JudgeError(f"the judge replied {reply!r}; expected exactly one of {verdicts}")
    return matches[0]


def _import_hook(path: str) -> Callable[[dict], dict | None]:
    module, _, name = path.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as error:
        raise JudgeError(f"judge.hook {path!r} cannot be imported: {error}") from error
