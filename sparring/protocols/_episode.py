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
from ._schedule import schedule_rounds
from ._schema import LLMJudgeSpec, RoleSpec
from ._seats import seat_of
from ._state import initial_state, next_state
from ._visibility import addressed_to, invalid_prompt, model_context, script_message, system_prompt, turn_prompt, valid_reply

ClientFactory = Callable[[str, RoleSpec | LLMJudgeSpec], ChatCompletionClient]
"""Makes the model client of one role (or the LLM judge) for one episode: ``factory(name, spec)``, ``name``
being the role, or the seat it plays from in a protocol with seats (models sit in seats), and
``spec`` the role's (the judge's) settings."""


class EpisodeTeam:
    """The agents of one episode and the loop that makes them speak.

    Args:
        protocol (`Protocol`): what is played.
        variables (`dict`): this episode's variables.
        clients (`dict[str, ChatCompletionClient]`): one model client per role (a scripted role has none).
        judge (`Judge`): decides the episode.
    """

    def __init__(self, protocol: Protocol, variables: dict[str, Any], clients: dict[str, ChatCompletionClient], judge: Judge):
        """``clients`` also holds the LLM judge's client, under its role name, when the protocol has one."""
        self.protocol, self.variables, self.clients, self.judge = protocol, variables, clients, judge
        spec = protocol.spec
        self.messages: list[dict] = []
        self.state = initial_state(protocol, variables)  # after the last message (read-only: each update makes a new one)
        self.agents = {
            name: AssistantAgent(name, model_client=clients[name],
                                 system_message=system_prompt(protocol, variables, name), description=name)
            for name, role in spec.roles.items() if not role.scripted
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
            rounds = schedule_rounds(self.protocol, self.variables,
                                     lambda: self.judge.rule_context(self.variables, self.messages))
            for round_number, (phase, speakers) in enumerate(rounds):
                replies = await asyncio.gather(*(self._speak(role, round_number, phase) for role in speakers))
                for reply in replies:
                    if phase is not None:
                        reply["phase"] = phase
                    self.messages.append(reply)
                    if self.protocol.spec.roles[reply["role"]].to is not None:
                        context = self.judge.rule_context(self.variables, self.messages)
                        reply["to"] = addressed_to(self.protocol, reply["role"], context)
                    if reply.get("invalid"):  # its role ran out of retries (`_speak`): its on_invalid decides
                        return await self.judge.end_outcome(self.variables, self.messages, ask,
                                                            self.judge.invalid_outcome(reply["role"]))
                    if self.protocol.spec.state or self.protocol.spec.update:
                        self.state = reply["state"] = next_state(self.protocol, self.state, self.variables, self.messages)
                    decided = await self.judge.message_outcome(self.variables, self.messages, ask)
                    if decided is not None:
                        return await self.judge.end_outcome(self.variables, self.messages, ask, decided)
                if self._over_budget():
                    break
            return await self.judge.end_outcome(self.variables, self.messages, ask)
        finally:
            for position, reply in reversed(judged):
                self.messages.insert(position, reply)

    def _over_budget(self) -> bool:
        budget = self.protocol.spec.max_total_tokens
        calls = [call for m in self.messages for call in (m, *(m.get("attempts") or ()))]  # rejected replies count
        return budget is not None and sum(len(call.get("token_ids") or ()) for call in calls) >= budget

    async def _speak(self, role: str, round_number: int, phase: str | None = None) -> dict:
        """``role``'s turn in round ``round_number``; the new message.

        A scripted role's message is its script rendered (``scripted: true``). A model's turn: its
        model context rebuilt, its prompt handed, its reply taken. A reply its ``valid`` expression
        rejects is answered, in the same model context, with its ``invalid_prompt`` and the model
        asked again, up to ``retries`` times; the rejected replies and their errors go to the
        message's ``attempts`` (no other role, and no later turn, sees them). When the last retry is
        rejected too, the message is that reply with ``invalid: true``: `run` ends the episode with
        the role's ``on_invalid`` outcome (`Judge.invalid_outcome`).
        """
        spec = self.protocol.spec.roles[role]
        turn = {"role": role, "turn": len(self.messages), "round": round_number}
        if self.protocol.spec.seats:
            turn["seat"] = seat_of(self.protocol, self.variables, role)
        if spec.scripted:
            content = script_message(self.protocol, self.variables, role, round_number, self.messages, phase)
            return {**turn, "content": content, "scripted": True}
        agent = self.agents[role]
        await agent.on_reset(CancellationToken())  # empties the model context; the system prompt stays
        for item in model_context(self.protocol, role, self.messages, round_number):
            await agent.model_context.add_message(item)
        prompt = turn_prompt(self.protocol, self.variables, role, round_number, self.messages, phase)
        handed = [TextMessage(content=prompt, source="user")] if prompt is not None else []
        attempts: list[dict] = []
        while True:
            reply = await self._reply(role, handed)  # the model context keeps what was handed and the reply
            if valid_reply(self.protocol, self.variables, role, round_number, self.messages, reply["content"], phase):
                break
            if len(attempts) == spec.retries:
                reply["invalid"] = True
                break
            error = invalid_prompt(self.protocol, self.variables, role, round_number, self.messages, reply["content"],
                                   phase)
            attempts.append({**reply, "error": error})
            handed = [TextMessage(content=error, source="user")]
        message = {**turn, **reply}
        if prompt is not None:
            message["prompt"] = prompt
        if attempts:
            message["attempts"] = attempts
        return message

    async def _reply(self, role: str, handed: list[TextMessage]) -> dict:
        return await model_reply(self.agents[role], self.clients[role], handed)


async def model_reply(agent: AssistantAgent, client: ChatCompletionClient, handed: list[TextMessage]) -> dict:
    """One model call of ``agent`` (on ``client``) on ``handed``: the reply's ``content`` and what the backend
    said of it (token ids, logprobs, finish reason, usage, seconds)."""
    started = time.perf_counter()
    response = await agent.on_messages(handed, CancellationToken())
    result = getattr(client, "last_result", None)
    reply = {"content": response.chat_message.content, "seconds": round(time.perf_counter() - started, 3)}
    if result is not None:
        reply.update(token_ids=result.token_ids, logprobs=[lp.logprob for lp in result.logprobs or []],
                     finish_reason=result.finish_reason)
    usage = response.chat_message.models_usage
    if usage is not None:
        reply["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    return reply
