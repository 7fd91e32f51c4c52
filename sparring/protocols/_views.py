"""What a role saw before each of its turns: the chat its model was sent, rebuilt from a transcript.

`EpisodeTeam` builds each speaker's model context, before its turn, with `_visibility`: its
system prompt, the messages it may see (others' as user messages, with their speaker labels; its
own as assistant messages) and its per-turn prompt, then, when it retries after an invalid reply,
each rejected reply and the error it was sent back. `episode_views` builds every turn of a logged
episode with the same functions, so a view's `chat()` equals what the model was sent (the logged
``usage.prompt_tokens`` equals the tokenized length of the view without its last message). A
scripted role has no model, so its messages get no view (they are context in others' views).

For an episode of an unknown protocol (a foreign record), `episode_views(None, episode)` gives a
plain view: no system prompt, every earlier message visible, no labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage

from ..agents.clients._messages import to_chat_messages
from ..transcripts import Episode, TranscriptMessage
from ._loader import Protocol
from ._visibility import model_context, seen, system_prompt, turn_prompt


@dataclass(frozen=True)
class TurnView:
    """One message of an episode and what its speaker saw before writing it.

    Args:
        index (`int`): the message's position in ``episode.messages``.
        role (`str`): the speaker.
        system (`str | None`): the rendered system prompt (None in a plain view).
        context (`list[LLMMessage]`): the model context after the system prompt (`model_context`):
            visible messages of others (user, labelled), the speaker's own replies (assistant) and
            the prompts they answered.
        prompt (`str | None`): the per-turn prompt handed just before this turn.
        history (`list[TranscriptMessage]`): the earlier messages the speaker saw (`seen`), its own
            included, in the order it received them; as logged, without labels.
        target (`str`): the message's text (or, in an ``invalid`` view, the rejected reply's).
        retries (`list[LLMMessage]`): after the prompt, the turn's earlier rejected replies (assistant)
            each followed by the error it was sent back (user), as the model was sent them.
        invalid (`bool`): the target is a reply its role's ``valid`` expression rejected.
    """

    index: int
    role: str
    system: str | None
    context: list[LLMMessage]
    prompt: str | None
    history: list[TranscriptMessage]
    target: str
    retries: list[LLMMessage] = field(default_factory=list)
    invalid: bool = False

    def llm_messages(self, with_target: bool = True) -> list[LLMMessage]:
        """The AutoGen messages the model was sent, and (``with_target``) the reply as an assistant message."""
        messages: list[LLMMessage] = [SystemMessage(content=self.system)] if self.system is not None else []
        messages += self.context
        if self.prompt is not None:
            messages.append(UserMessage(content=self.prompt, source="user"))
        messages += self.retries
        if with_target:
            messages.append(AssistantMessage(content=self.target, source=self.role))
        return messages

    def chat(self, with_target: bool = True) -> list[dict]:
        """`llm_messages` as ``{"role", "content"}`` dicts (the target, if included, is last)."""
        return to_chat_messages(self.llm_messages(with_target))


def _rounds(protocol: Protocol | None, messages: list[TranscriptMessage]) -> list[int]:
    """Each message's round: as logged, or (a foreign record that logged none) as the schedule makes them.

    A plain view (no protocol) makes every message a round of its own: each sees all earlier ones.
    """
    if protocol is None:
        return list(range(len(messages)))
    logged = [m.round for m in messages]
    if len(messages) < 2 or any(logged):
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


def _scripted(protocol: Protocol | None, message: TranscriptMessage) -> bool:
    """Whether ``message`` (of a role) is a scripted role's: marked so, or its role is scripted in ``protocol``."""
    return bool(message.scripted) or (protocol is not None and protocol.spec.roles[message.role].scripted)


def episode_views(protocol: Protocol | None, episode: Episode, include_invalid: bool = False) -> list[TurnView]:
    """The view of every message a role's model wrote, in order (an LLM judge's verdict and a scripted
    role's message have none).

    Args:
        protocol (`Protocol | None`): the protocol the episode was played under; None for a plain
            view (no system prompt, every earlier message visible, own messages as assistant).
        episode (`Episode`): the logged episode.
        include_invalid (`bool`, defaults to False): also the views of rejected replies (``invalid``:
            each of a message's ``attempts``, before the message's own view, and a message that was
            rejected with no retry left); without it those get none.

    Returns:
        `list[TurnView]`: one view per model reply: per accepted message, and with ``include_invalid``
        per rejected one.

    Example:
        >>> from sparring.transcripts import ProtocolRef
        >>> ep = Episode(id="x", protocol=ProtocolRef(name="p"), variables={}, messages=[
        ...     TranscriptMessage(role="a", content="Hi"), TranscriptMessage(role="b", content="Yo", turn=1)])
        >>> episode_views(None, ep)[1].chat()
        [{'role': 'user', 'content': 'Hi'}, {'role': 'assistant', 'content': 'Yo'}]
    """
    messages = episode.messages
    speakers = set(protocol.spec.roles) if protocol is not None else {m.role for m in messages}
    played = [i for i, m in enumerate(messages) if m.role in speakers]  # not the LLM judge's replies
    rounds = _rounds(protocol, [messages[i] for i in played])
    # the player messages as the engine keeps them while playing (it never holds the judge's replies)
    logged = [{**messages[i].model_dump(exclude_none=True), "round": r} for i, r in zip(played, rounds)]
    systems: dict[str, str] = {}
    views: list[TurnView] = []
    for k, index in enumerate(played):
        message, role, now = messages[index], messages[index].role, rounds[k]
        if _scripted(protocol, message):
            continue
        before = logged[:next((j for j in range(k) if rounds[j] >= now), k)]  # posted when its round began
        prompt = message.prompt
        if prompt is None and protocol is not None:  # not logged: the prompt the engine would have handed
            prompt = turn_prompt(protocol, episode.variables, role, now, before, message.phase)
            if prompt is not None:
                logged[k]["prompt"] = prompt  # later turns' contexts hold it
        if protocol is not None and role not in systems:
            systems[role] = system_prompt(protocol, episode.variables, role)
        context = model_context(protocol, role, before, now)
        history = [messages[played[j]] for j in seen(protocol, role, before, now)]
        retries: list[LLMMessage] = []
        for attempt in message.attempts or []:
            if include_invalid:
                views.append(TurnView(index, role, systems.get(role), context, prompt, history, attempt.content,
                                      list(retries), invalid=True))
            retries += [AssistantMessage(content=attempt.content, source=role),
                        UserMessage(content=attempt.error, source="user")]
        if include_invalid or not message.invalid:
            views.append(TurnView(index, role, systems.get(role), context, prompt, history, message.content, retries,
                                  invalid=bool(message.invalid)))
    return views


__all__ = ["TurnView", "episode_views", "fits"]
