"""TextArena environments as protocols, and the loop that plays one episode of them.

A protocol with ``environment: {textarena: ENV_ID}`` (the source ``textarena:ENV_ID`` writes one)
is played by TextArena's own environment (the ``textarena`` package, an optional extra): its
players are the protocol's roles in file order, and at each step the environment names the
player to move and hands it what it observed since its last move. That observation is the
turn's prompt (``prompt`` in the transcript) and the player's model keeps its own earlier
prompts and replies, so a transcript holds each observation once, and the chat a model was sent
is rebuilt for training by `episode_views` like any protocol's (a player sees only its own
messages). The environment decides the game and scores it; the transcript's rewards are its.

Observations are read raw, as TextArena's ``LLMObservationWrapper`` formats each message
(``[GAME] ...``, ``[Player 1] ...``), without the player's own move echoed back (its reply is
already in its context); the environment's registered action wrappers (e.g. the brackets of
``ActionFormattingWrapper``) apply to the replies, as in TextArena.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from importlib.metadata import version
from typing import Any

import yaml
from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import TextMessage
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient

from ..errors import ProtocolError
from ._episode import model_reply
from ._judges import Outcome
from ._loader import Protocol, parse_protocol
from ._visibility import model_context, system_prompt

SOURCE = "textarena:"
"""The prefix of a protocol source that names a TextArena environment: ``textarena:TicTacToe-v0``."""

NAME = "textarena."
"""The prefix of such a protocol's name (the one transcripts record): ``textarena.TicTacToe-v0``."""

ENV_SEED = "env_seed"
"""The episode variable holding the seed its environment was reset with."""

SYSTEM = ("You are Player {player} in the game {env_id}. Each message you receive is what the game showed you since "
          "your last move. Reply with your next move, in the format the game asks for.")
MAX_TOKENS = 128
_MAX_PLAYERS = 16


def _textarena():
    try:
        import textarena
    except ImportError as error:
        raise ProtocolError("TextArena games need the textarena package: pip install 'sparring[textarena]'") from error
    return textarena


@functools.lru_cache(maxsize=None)
def player_counts(env_id: str) -> tuple[int, ...]:
    """The numbers of players TextArena environment ``env_id`` can be reset with.

    Raises:
        `ProtocolError`: textarena is not installed, or it has no such environment (with close ids).
    """
    ta = _textarena()
    registry = ta.envs.registration.ENV_REGISTRY
    if env_id not in registry:
        close = difflib.get_close_matches(env_id, list(registry), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ProtocolError(f"{env_id!r} is no TextArena environment{hint}; textarena {version('textarena')} has "
                            f"{len(registry)}, e.g. TicTacToe-v0, SimpleNegotiation-v0")
    counts = []
    for players in range(1, _MAX_PLAYERS + 1):
        env = _raw(ta.make(env_id))
        try:
            env.reset(num_players=players, seed=0)
        except Exception:  # noqa: BLE001 - environments refuse a player count each in their own way
            continue
        counts.append(players)
    if not counts:
        raise ProtocolError(f"TextArena environment {env_id!r} cannot be reset here (with 1 to {_MAX_PLAYERS} players): "
                            "it may need data it downloads on first use")
    return tuple(counts)


def _raw(env):
    """The environment inside its wrappers."""
    import textarena as ta

    while isinstance(env, ta.Wrapper):
        env = env.env
    return env


def make_env(env_id: str):
    """Environment ``env_id`` with its registered action wrappers only (observations are read raw)."""
    ta = _textarena()
    env, actions = ta.make(env_id), []
    while isinstance(env, ta.Wrapper):
        if isinstance(env, ta.ActionWrapper):
            actions.append(type(env))
        env = env.env
    for wrapper in reversed(actions):  # innermost first, as registered
        env = wrapper(env)
    return env


def check_environment(protocol: Protocol) -> None:
    """Raise `ProtocolError` unless the protocol's environment exists and takes as many players as it has roles."""
    env_id, players = protocol.spec.environment.textarena, len(protocol.spec.roles)
    try:
        counts = player_counts(env_id)
    except ProtocolError as error:
        raise ProtocolError(f"{protocol.where('environment.textarena')}: {error}") from error
    if players not in counts:
        raise ProtocolError(f"{protocol.where('roles')}: {env_id} is played by {' or '.join(map(str, counts))} "
                            f"players, and the protocol has {players} roles (one per player, in order)")


def textarena_protocol(env_id: str) -> Protocol:
    """The protocol of TextArena environment ``env_id``: roles ``player_0``, ``player_1``, ... (two where
    the environment takes two, else the fewest it takes), each with a short system prompt; the
    environment's first observation carries the game's rules.

    `sparring protocols show textarena:ENV_ID` prints it: save it as a file to change the prompts,
    the sampling or the number of players.

    Raises:
        `ProtocolError`: textarena is not installed, or it has no such environment.
    """
    counts = player_counts(env_id)
    players = 2 if 2 in counts else counts[0]
    spec = {
        "name": f"{NAME}{env_id}",
        "description": f"TextArena's {env_id} (textarena {version('textarena')}), played by sparring models: each "
                       "turn its environment hands the player to move what it observed since its last move.",
        "environment": {"textarena": env_id},
        "roles": {f"player_{i}": {"system": SYSTEM.format(player=i, env_id=env_id), "sampling": {"max_tokens": MAX_TOKENS}}
                  for i in range(players)},
    }
    return parse_protocol(yaml.safe_dump(spec, sort_keys=False, width=120))


def arena_variables(ident: str) -> dict[str, Any]:
    """An episode's variables: the seed its environment is reset with, drawn from its id (so a resumed run
    plays it again alike)."""
    return {ENV_SEED: int.from_bytes(hashlib.sha256(ident.encode()).digest()[:4], "big")}


def observation_text(env, player: int, observation: list) -> str:
    """What ``player`` observed since its last move, one ``[SENDER] message`` per line (its own moves left out)."""
    import textarena as ta

    names = env.state.role_mapping
    lines = [f"[{'GAME' if sender == ta.GAME_ID else names.get(sender, f'Player {sender}')}] {message}"
             for sender, message, kind in observation
             if not (sender == player and kind == ta.ObservationType.PLAYER_ACTION)]
    return "\n".join(lines) or "[GAME] Your move."


class ArenaTeam:
    """The players of one episode of an environment protocol, and the loop that asks them for moves.

    Args:
        protocol (`Protocol`): a protocol with ``environment``.
        variables (`dict`): the episode's (`arena_variables`).
        clients (`dict[str, ChatCompletionClient]`): one model client per role.
    """

    def __init__(self, protocol: Protocol, variables: dict[str, Any], clients: dict[str, ChatCompletionClient]):
        self.protocol, self.variables, self.clients = protocol, variables, clients
        self.roles = list(protocol.spec.roles)  # player i is the i-th role
        self.messages: list[dict] = []
        self.rewards: dict[str, float] = {}  # the environment's, once it ends the game
        self.agents = {name: AssistantAgent(name, model_client=clients[name],
                                            system_message=system_prompt(protocol, variables, name), description=name)
                       for name in self.roles}

    async def run(self) -> Outcome:
        """Play until the environment ends the game (or ``max_steps`` moves); its outcome."""
        environment = self.protocol.spec.environment
        env = make_env(environment.textarena)
        env.reset(num_players=len(self.roles), seed=self.variables[ENV_SEED])
        done = False
        while not done:
            if len(self.messages) == environment.max_steps:
                return Outcome(None, "step limit")
            player, observation = env.get_observation()
            role, turn = self.roles[player], len(self.messages)
            prompt = observation_text(env, player, observation)
            agent = self.agents[role]
            await agent.on_reset(CancellationToken())  # its context is rebuilt, as `episode_views` rebuilds it
            for item in model_context(self.protocol, role, self.messages, turn):
                await agent.model_context.add_message(item)
            reply = await model_reply(agent, self.clients[role], [TextMessage(content=prompt, source="user")])
            self.messages.append({"role": role, "turn": turn, "round": turn, **reply, "prompt": prompt})
            done, _ = env.step(reply["content"])
        return self._outcome(*env.close())

    def _outcome(self, rewards: dict[int, float] | None, info: dict[int, dict]) -> Outcome:
        """The environment's result: the one player with the highest reward wins (a lone player: a positive
        one); equal rewards, or several players sharing the highest, are a tie."""
        reasons = [entry["reason"] for entry in (info or {}).values() if isinstance(entry, dict) and entry.get("reason")]
        reason = " ".join(str(reasons[0]).split()) if reasons else "game over"
        if rewards is None:
            return Outcome(None, reason if reasons else "no result")
        self.rewards = {self.roles[player]: float(value) for player, value in rewards.items()}
        best = max(self.rewards.values())
        top = [role for role, value in self.rewards.items() if value == best]
        if len(self.rewards) == 1:
            return Outcome(top[0] if best > 0 else None, reason)
        return Outcome(top[0] if len(top) == 1 else None, reason)
