"""Re-judge logged episodes under a protocol's current rules (`sparring judge`)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from ..transcripts import ProtocolRef, TranscriptWriter, read_transcripts
from ..transcripts import Outcome as OutcomeRecord
from ._judges import Judge
from ._loader import Protocol
from ._play import PlaySummary


def rejudge(protocol: Protocol, source: Path, out: Path | None = None, allow_hooks: bool = False) -> PlaySummary:
    """Judge every episode of ``source`` again; write them with their new outcomes to ``out``.

    Records from other tools need only ``id``, ``protocol.name``, ``variables`` and ``messages``
    (``role``, ``content``); malformed lines are skipped and counted in ``summary.skipped``.
    Episodes logged with ``status: error`` are kept as they are.
    """
    judge = Judge(protocol, allow_hooks)
    summary = PlaySummary(protocol.name, list(protocol.spec.roles), path=out)
    reader = read_transcripts(source)
    with TranscriptWriter(out) if out is not None else contextlib.nullcontext() as writer:
        for episode in reader:
            if episode.status == "ok":
                outcome, _ = judge.judge(episode.variables, [m.model_dump() for m in episode.messages])
                episode = episode.model_copy(update={
                    "protocol": ProtocolRef(name=protocol.name, hash=protocol.hash),
                    "outcome": OutcomeRecord(winner=outcome.winner, reason=outcome.reason),
                    "rewards": judge.rewards(outcome, episode.variables),
                })
            summary.add(episode)
            if writer is not None:
                writer.write(episode)
    summary.skipped = len(reader.skipped)
    return summary

