"""What a role saw before each of its turns: the chat its model was sent, rebuilt from a transcript.

`EpisodeTeam` hands each speaker, before its turn, the new messages it may see (others' as user
messages), then the protocol's per-turn prompt; AutoGen's `AssistantAgent` keeps its own replies
as assistant messages and puts the system prompt first. `episode_views` replays that from a
logged episode, so a view's `chat()` equals what the embedded model was sent (the logged
``usage.prompt_tokens`` equals the tokenized length of the view without its last message).

For an episode of an unknown protocol (a foreign record), `episode_views(None, episode)` gives a
plain view: no system prompt, every earlier message visible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage

from ..agents._embedded_client import to_chat_messages
from ..transcripts import Episode, TranscriptMessage
from ._expressions import render
from ._loader import Protocol


@dataclass(frozen=True)
class TurnView:
    """One message of an episode and what its speaker saw before writing it.

    Args:
        index (`int`): the message's position in ``episode.messages``.
        role (`str`): the speaker.
        system (`str | None`): the rendered system prompt (None in a plain view).
        context (`list[LLMMessage]`): the earlier model context, after the system prompt: visible
            messages of others (user), the speaker's own replies (assistant) and earlier prompts.
        prompt (`str | None`): the per-turn prompt handed just before this turn.
        history (`list[TranscriptMessage]`): the earlier messages the speaker saw, its own included.
        target (`str`): the message's text.
    """

    index: int
    role: str
    system: str | None
    context: list[LLMMessage]
    prompt: str | None
    history: list[TranscriptMessage]
    target: str

    def llm_messages(self, with_target: bool = True) -> list[LLMMessage]:
        """The AutoGen messages the model was sent, and (``with_target``) the reply as an assistant message."""
        messages: list[LLMMessage] = [SystemMessage(content=self.system)] if self.system is not None else []
        messages += self.context
        if self.prompt is not None:
            messages.append(UserMessage(content=self.prompt, source="user"))
        if with_target:
            messages.append(AssistantMessage(content=self.target, source=self.role))
        return messages

    def chat(self, with_target: bool = True) -> list[dict]:
        """`llm_messages` as ``{"role", "content"}`` dicts (the target, if included, is last)."""
        return to_chat_messages(self.llm_messages(with_target))


def role_params(protocol: Protocol, variables: dict[str, Any], role: str) -> dict[str, Any]:
    """A role's ``params``, rendered over the variables as `EpisodeTeam` renders them."""
    params = protocol.spec.roles[role].params
    return {k: render(v, variables) if isinstance(v, str) else v for k, v in params.items()}


def turn_context(protocol: Protocol, variables: dict[str, Any], role: str, round_number: int = 0,
                 messages: list[dict] | None = None) -> dict[str, Any]:
    """The template context of ``role`` (as `EpisodeTeam._context` builds it): variables, role, roles, params, ..."""
    messages = messages or []
    return {**variables, "role": role, "roles": list(protocol.spec.roles),
            "params": role_params(protocol, variables, role), "round": round_number, "turn": len(messages),
            "messages": messages}


def system_prompt(protocol: Protocol, variables: dict[str, Any], role: str, template: str | None = None) -> str:
    """``role``'s system prompt for these variables (or ``template``, a variant, rendered in the same context)."""
    source = template if template is not None else protocol.spec.roles[role].system
    return render(source, turn_context(protocol, variables, role))


def _visible(protocol: Protocol, role: str, speaker: str, spoken_in: int, round_number: int) -> bool:
    """`EpisodeTeam.visible`: others' messages, of roles in ``sees``, of earlier rounds under ``previous_rounds``."""
    spec = protocol.spec.roles[role]
    if speaker == role:
        return False
    if spec.sees != "all" and speaker not in spec.sees:
        return False
    return not (spec.history == "previous_rounds" and spoken_in >= round_number)


def _rounds(protocol: Protocol | None, messages: list[TranscriptMessage]) -> list[int]:
    """Each message's round: as logged, or (a foreign record that logged none) as the schedule makes them."""
    logged = [m.round for m in messages]
    if len(messages) < 2 or any(logged) or protocol is None:
        return logged
    schedule = protocol.spec.schedule
    if schedule.type == "simultaneous":
        return [i // len(schedule.order) for i in range(len(messages))]
    return list(range(len(messages)))


def fits(protocol: Protocol, episode: Episode) -> bool:
    """Whether every message's speaker is a role of ``protocol`` (or its LLM judge)."""
    judge = protocol.spec.judge.llm
    known = set(protocol.spec.roles) | ({judge.role} if judge is not None else set())
    return all(m.role in known for m in episode.messages)


def episode_views(protocol: Protocol | None, episode: Episode) -> list[TurnView]:
    """The view of every message spoken by a role, in order (an LLM judge's verdict has none).

    Args:
        protocol (`Protocol | None`): the protocol the episode was played under; None for a plain
            view (no system prompt, every earlier message visible, own messages as assistant).
        episode (`Episode`): the logged episode.

    Returns:
        `list[TurnView]`: one view per role message.

    Example:
        >>> from sparring.transcripts import ProtocolRef
        >>> ep = Episode(id="x", protocol=ProtocolRef(name="p"), variables={}, messages=[
        ...     TranscriptMessage(role="a", content="Hi"), TranscriptMessage(role="b", content="Yo", turn=1)])
        >>> episode_views(None, ep)[1].chat()
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}]
    """
    messages = episode.messages
    rounds = _rounds(protocol, messages)
    speakers = set(protocol.spec.roles) if protocol is not None else {m.role for m in messages}
    seen = {role: 0 for role in speakers}  # how far into `messages` each role was handed
    context: dict[str, list[LLMMessage]] = {role: [] for role in speakers}
    history: dict[str, list[TranscriptMessage]] = {role: [] for role in speakers}
    systems: dict[str, str] = {}
    views: list[TurnView] = []
    for index, message in enumerate(messages):
        role = message.role
        if role not in speakers:
            continue  # the LLM judge's verdict
        now = rounds[index]
        # the messages logged when it spoke: a simultaneous round's speakers do not see each other
        end = next((i for i in range(index) if rounds[i] >= now), index) if protocol is not None else index
        for i in range(seen[role], end):
            other = messages[i]
            if other.role != role and other.role in speakers and (
                    protocol is None or _visible(protocol, role, other.role, rounds[i], now)):
                context[role].append(UserMessage(content=other.content, source=other.role))
                history[role].append(other)
        seen[role] = max(seen[role], end)
        prompt = message.prompt
        if prompt is None and protocol is not None and protocol.spec.roles[role].prompt is not None:
            logged = [messages[i].model_dump(exclude_none=True) for i in range(end)]
            prompt = render(protocol.spec.roles[role].prompt, turn_context(protocol, episode.variables, role, now, logged))
            prompt = prompt if prompt.strip() else None  # as in play: an empty prompt is not handed
        if protocol is not None and role not in systems:
            systems[role] = system_prompt(protocol, episode.variables, role)
        views.append(TurnView(index, role, systems.get(role), list(context[role]), prompt, list(history[role]),
                              message.content))
        if prompt is not None:
            context[role].append(UserMessage(content=prompt, source="user"))
        context[role].append(AssistantMessage(content=message.content, source=role))
        history[role].append(message)
    return views

__all__ = ["TurnView", "episode_views", "fits", "role_params", "system_prompt", "turn_context"]
