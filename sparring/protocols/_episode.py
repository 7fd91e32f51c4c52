"""Play one episode: the protocol's roles as AutoGen agents, in a small team of our own.

AutoGen's group chats broadcast every message to every participant and judge only through
termination conditions; a protocol needs per-role visibility, a judge after each message and
simultaneous rounds. `EpisodeTeam` drives `AssistantAgent`s directly: before each turn it hands
the speaker, through `on_messages`, exactly the new messages that role may see, so a hidden
message never reaches the speaker's model context, and it runs a simultaneous round's speakers
concurrently.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import TextMessage
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

from ._expressions import render
from ._judges import Judge, Outcome
from ._loader import Protocol
from ._schema import LLMJudgeSpec, RoleSpec

ClientFactory = Callable[[str, RoleSpec | LLMJudgeSpec], ChatCompletionClient]
"""Makes the model client of one role (or the LLM judge) for one episode: ``factory(name, spec)``."""


class EpisodeTeam:
    """The agents of one episode and the loop that makes them speak.

    Args:
        protocol (`Protocol`): what is played.
        variables (`dict`): this episode's variables.
        clients (`dict[str, ChatCompletionClient]`): one model client per role.
        judge (`Judge`): decides the episode.
    """

    def __init__(self, protocol: Protocol, variables: dict[str, Any], clients: dict[str, ChatCompletionClient], judge: Judge):
        """``clients`` also holds the LLM judge's client, under its role name, when the protocol has one."""
        self.protocol, self.variables, self.clients, self.judge = protocol, variables, clients, judge
        spec = protocol.spec
        self.messages: list[dict] = []
        self._seen = {name: 0 for name in spec.roles}  # how much of self.messages each role was handed
        self.params = {name: {k: render(v, variables) if isinstance(v, str) else v for k, v in role.params.items()}
                       for name, role in spec.roles.items()}
        self.agents = {
            name: AssistantAgent(name, model_client=clients[name],
                                 system_message=render(role.system, self._context(name)), description=name)
            for name, role in spec.roles.items()
        }

    async def run(self) -> Outcome:
        """Play until an outcome ends the episode or the schedule runs out; return the outcome."""
        decided = None
        for round_number, speakers in enumerate(self._rounds()):
            replies = await asyncio.gather(*(self._speak(role, round_number) for role in speakers))
            for reply in replies:
                self.messages.append(reply)
                decided = decided or self.judge.after_message(self.variables, self.messages)
                if decided is not None and self.protocol.spec.stop_on_outcome:
                    return decided
            if self._over_budget():
                break
        llm = self.protocol.spec.judge.llm
        if decided is None and llm is not None:
            decided, verdict = await self.judge.ask_model(self.variables, self.messages, self.clients[llm.role])
            self.messages.append(verdict)
        return decided or self.judge.final(self.variables, self.messages)

    def _rounds(self) -> list[list[str]]:
        """Speakers per round: all roles at once for simultaneous schedules, else one speaker a round."""
        schedule = self.protocol.spec.schedule
        if schedule.type == "simultaneous":
            return [list(schedule.order) for _ in range(schedule.rounds)]
        if schedule.type == "round_robin" and schedule.max_turns is not None:
            turns = [schedule.order[i % len(schedule.order)] for i in range(schedule.max_turns)]
        else:
            turns = list(schedule.order) * schedule.rounds
        return [[role] for role in turns]

    def _over_budget(self) -> bool:
        budget = self.protocol.spec.max_total_tokens
        return budget is not None and sum(len(m.get("token_ids") or ()) for m in self.messages) >= budget

    def visible(self, role: str, message: dict, round_number: int) -> bool:
        """Whether ``role`` may see ``message`` when speaking in ``round_number``."""
        spec = self.protocol.spec.roles[role]
        if message["role"] == role:
            return False  # its own messages are already in its model context
        if spec.sees != "all" and message["role"] not in spec.sees:
            return False
        return not (spec.history == "previous_rounds" and message["round"] >= round_number)

    async def _speak(self, role: str, round_number: int) -> dict:
        spec = self.protocol.spec.roles[role]
        new = [m for m in self.messages[self._seen[role]:] if self.visible(role, m, round_number)]
        self._seen[role] = len(self.messages)
        handed = [TextMessage(content=m["content"], source=m["role"]) for m in new]
        prompt = render(spec.prompt, self._context(role, round_number)) if spec.prompt is not None else None
        prompt = prompt if prompt and prompt.strip() else None  # a template that renders empty hands nothing
        if prompt is not None:
            handed.append(TextMessage(content=prompt, source="user"))
        started = time.perf_counter()
        response = await self.agents[role].on_messages(handed, CancellationToken())
        result = getattr(self.clients[role], "last_result", None)
        message = {"role": role, "content": response.chat_message.content, "turn": len(self.messages),
                   "round": round_number, "seconds": round(time.perf_counter() - started, 3)}
        if prompt is not None:
            message["prompt"] = prompt
        if result is not None:
            message.update(token_ids=result.token_ids, logprobs=[lp.logprob for lp in result.logprobs or []],
                           finish_reason=result.finish_reason)
        usage = response.chat_message.models_usage
        if usage is not None:
            message["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        return message

    def _context(self, role: str, round_number: int = 0) -> dict[str, Any]:
        return {**self.variables, "role": role, "roles": list(self.protocol.spec.roles), "params": self.params[role],
                "round": round_number, "turn": len(self.messages), "messages": self.messages}
