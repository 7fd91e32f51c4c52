"""Play one episode: the protocol's roles as AutoGen agents, in a small team of our own.

AutoGen's group chats broadcast every message to every participant and judge only through
termination conditions; a protocol needs per-role visibility, a judge after each message and
simultaneous rounds. `EpisodeTeam` drives `AssistantAgent`s directly: before each turn it rebuilds
the speaker's model context from the episode's messages with `_visibility` (the rule
`episode_views` also uses), so a hidden message never reaches the speaker's model, then hands it
its per-turn prompt through `on_messages`; it runs a simultaneous round's speakers concurrently.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import TextMessage
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

from ._judges import Judge, Outcome, Verdict
from ._loader import Protocol
from ._schema import LLMJudgeSpec, RoleSpec
from ._visibility import model_context, system_prompt, turn_prompt

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
        self.agents = {
            name: AssistantAgent(name, model_client=clients[name],
                                 system_message=system_prompt(protocol, variables, name), description=name)
            for name in spec.roles
        }

    async def run(self) -> Outcome:
        """Play until a message decides the episode or the schedule (or token budget) runs out; return the outcome.

        The judge decides after each message (`Judge.message_outcome`) and at the end (`Judge.end_outcome`).
        While playing, `messages` holds the player messages only, so no player ever receives the LLM
        judge's replies; when the episode ends, also by an error, every reply of the judge (a rejected
        one too) is put into `messages` right after the message it judged.
        """
        llm = self.protocol.spec.judge.llm
        judged: list[tuple[int, dict]] = []  # (player messages before it, a reply of the LLM judge)

        async def ask(players: list[dict]) -> Verdict:
            position = len(players)
            return await self.judge.ask_model(self.variables, list(players), self.clients[llm.role],
                                              lambda reply: judged.append((position, reply)))

        try:
            for round_number, speakers in enumerate(self._rounds()):
                replies = await asyncio.gather(*(self._speak(role, round_number) for role in speakers))
                for reply in replies:
                    self.messages.append(reply)
                    decided = await self.judge.message_outcome(self.variables, self.messages, ask)
                    if decided is not None:
                        return await self.judge.end_outcome(self.variables, self.messages, ask, decided)
                if self._over_budget():
                    break
            return await self.judge.end_outcome(self.variables, self.messages, ask)
        finally:
            for position, reply in reversed(judged):
                self.messages.insert(position, reply)

    def _rounds(self) -> list[list[str]]:
        """Speakers per round (see `ScheduleSpec.speaking_rounds`)."""
        return self.protocol.spec.schedule.speaking_rounds()

    def _over_budget(self) -> bool:
        budget = self.protocol.spec.max_total_tokens
        return budget is not None and sum(len(m.get("token_ids") or ()) for m in self.messages) >= budget

    async def _speak(self, role: str, round_number: int) -> dict:
        """``role``'s turn in round ``round_number``: its model context rebuilt, its prompt handed; the new message."""
        agent = self.agents[role]
        await agent.on_reset(CancellationToken())  # empties the model context; the system prompt stays
        for item in model_context(self.protocol, role, self.messages, round_number):
            await agent.model_context.add_message(item)
        prompt = turn_prompt(self.protocol, self.variables, role, round_number, self.messages)
        handed = [TextMessage(content=prompt, source="user")] if prompt is not None else []
        started = time.perf_counter()
        response = await agent.on_messages(handed, CancellationToken())
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
