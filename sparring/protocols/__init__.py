"""Declarative protocols: YAML games and discussions played by AutoGen agents, judged by rules."""

from ._episode import EpisodeTeam
from ._judges import Judge, Outcome
from ._loader import Protocol, builtin_names, load_protocol, named_protocol, parse_protocol
from ._play import PlaySummary, check_play, is_protocol_error, play, role_models, too_many_errors, what_to_fix
from ._rejudge import rejudge
from ._schema import ProtocolSpec
from ._variables import check_variable_names
from ._views import TurnView, episode_views

__all__ = [
    "EpisodeTeam",
    "Judge",
    "Outcome",
    "PlaySummary",
    "Protocol",
    "ProtocolSpec",
    "TurnView",
    "builtin_names",
    "check_play",
    "check_variable_names",
    "episode_views",
    "is_protocol_error",
    "load_protocol",
    "named_protocol",
    "parse_protocol",
    "play",
    "rejudge",
    "role_models",
    "too_many_errors",
    "what_to_fix",
]
