"""Transcript records and JSONL files: round trip, foreign records, torn tails, resume, concurrency."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from pydantic import ValidationError

from sparring.errors import SparringError, TranscriptError
from sparring.transcripts import (
    TRANSCRIPT_SCHEMA,
    Episode,
    Outcome,
    ProtocolRef,
    TranscriptMessage,
    TranscriptWriter,
    completed_ids,
    episode_id,
    latest_by_id,
    read_transcripts,
)


def make_episode(i: int = 0, status: str = "ok", content: str = "hello") -> Episode:
    error = "backend timed out" if status == "error" else None
    return Episode(
        id=episode_id("taboo", i, seed=1),
        protocol=ProtocolRef(name="taboo", hash="sha256:abc"),
        variables={"word": "apple", "nested": {"k": [1, 2.5, None, "ü"]}},
        models={"attacker": "hf:smollm2-135m", "defender": "openai:gpt-4o-mini"},
        messages=[
            TranscriptMessage(role="system", content="Rules: do not say the word."),
            TranscriptMessage(role="attacker", content=content, turn=1, token_ids=[1, 2], logprobs=[-0.5, -math.inf]),
            TranscriptMessage(role="defender", content="Is it a fruit? 🍎\n\"quoted\"", turn=1),
        ],
        outcome=Outcome(winner=None, reason="max turns reached (tie)"),
        rewards={"attacker": 0.0, "defender": -1.5},
        status=status,
        error=error,
        timings={"started": 1700000000.25, "finished": 1700000003.75, "seconds": 3.5},
        usage={"prompt_tokens": 120, "completion_tokens": 34},
    )


def write_lines(path, *lines: str, end: str = "\n") -> None:
    path.write_text("\n".join(lines) + end, encoding="utf-8")


def test_round_trip_is_stable(tmp_path):
    path = tmp_path / "run.jsonl"
    episodes = [make_episode(0), make_episode(1, status="error")]
    with TranscriptWriter(path) as out:
        for ep in episodes:
            out.write(ep)
    assert out.written == 2

    reader = read_transcripts(path, strict=True)
    loaded = list(reader)
    assert loaded == episodes and reader.skipped == [] and not reader.torn_tail
    assert loaded[0].messages[1].logprobs[1] == -math.inf
    assert loaded[0].schema_ == TRANSCRIPT_SCHEMA
    # dump -> load -> dump gives the same bytes as the file holds
    assert path.read_text(encoding="utf-8") == "".join(ep.to_json_line() + "\n" for ep in loaded)
    again = Episode.model_validate_json(loaded[0].to_json_line())
    assert again.to_json_line() == episodes[0].to_json_line()
    assert json.loads(loaded[0].to_json_line())["schema"] == TRANSCRIPT_SCHEMA


def test_foreign_minimal_record_with_unknown_keys_is_read(tmp_path):
    path = tmp_path / "foreign.jsonl"
    record = {
        "id": "ext-1",
        "protocol": {"name": "debate", "source_repo": "elsewhere"},
        "variables": {"question": "2+2?"},
        "messages": [{"role": "user", "content": "2+2?", "timestamp": 5}, {"role": "assistant", "content": "4"}],
        "dataset": "somewhere",
    }
    write_lines(path, json.dumps(record))
    reader = read_transcripts(path, strict=True)
    (ep,) = list(reader)
    assert reader.skipped == []
    assert (ep.id, ep.protocol.name, ep.protocol.hash) == ("ext-1", "debate", None)
    assert [(m.role, m.content, m.turn) for m in ep.messages] == [("user", "2+2?", 0), ("assistant", "4", 0)]
    assert ep.status == "ok" and ep.outcome is None and ep.schema_ == TRANSCRIPT_SCHEMA
    assert "dataset" not in ep.to_json_line()
    # records built in code stay strict
    with pytest.raises(ValidationError, match="dataset"):
        Episode.model_validate(record)


def test_torn_last_line_is_skipped_and_counted(tmp_path):
    path = tmp_path / "run.jsonl"
    complete = [make_episode(i).to_json_line() for i in range(2)]
    torn = make_episode(2).to_json_line()[:57]
    write_lines(path, *complete, torn, end="")
    reader = read_transcripts(path, strict=True)  # a torn tail is not an error, even when strict
    assert [ep.id for ep in reader] == ["taboo-1-000000", "taboo-1-000001"]
    assert reader.torn_tail and len(reader.skipped) == 1
    assert reader.skipped[0].line == 3 and "torn last line" in reader.skipped[0].reason


def test_writer_repairs_torn_tail_without_losing_complete_lines(tmp_path):
    path = tmp_path / "run.jsonl"
    complete = [make_episode(i).to_json_line() for i in range(2)]
    torn = make_episode(2).to_json_line()[:80]
    write_lines(path, *complete, torn, end="")
    with TranscriptWriter(path) as out:
        assert out.repaired_bytes == len(torn.encode())
        out.write(make_episode(2))
    reader = read_transcripts(path, strict=True)
    assert [ep.id for ep in reader] == [episode_id("taboo", i, 1) for i in range(3)]
    assert reader.skipped == []


def test_writer_keeps_complete_last_line_lacking_newline(tmp_path):
    path = tmp_path / "run.jsonl"
    write_lines(path, make_episode(0).to_json_line(), end="")  # complete, just no "\n"
    with TranscriptWriter(path) as out:
        assert out.repaired_bytes == 0
        out.write(make_episode(1))
    assert [ep.id for ep in read_transcripts(path, strict=True)] == ["taboo-1-000000", "taboo-1-000001"]


def test_writer_repairs_a_file_holding_only_a_torn_line(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes('{"id": "x", "messages": [{"role": "a", "content": "é'.encode()[:-1])  # cut mid-character
    with TranscriptWriter(path) as out:
        out.write(make_episode(0))
    assert path.read_text(encoding="utf-8") == make_episode(0).to_json_line() + "\n"


def test_malformed_middle_line_strict_error_and_lenient_skip(tmp_path):
    path = tmp_path / "run.jsonl"
    bad_shape = json.dumps({"id": "x", "protocol": {"name": "p"}, "variables": {}})  # no messages
    write_lines(path, make_episode(0).to_json_line(), "{not json", bad_shape, "[1, 2]", "", make_episode(1).to_json_line())
    with pytest.raises(TranscriptError, match=rf"{path.name}:2: not valid JSON"):
        list(read_transcripts(path, strict=True))

    reader = read_transcripts(path)
    assert [ep.id for ep in reader] == ["taboo-1-000000", "taboo-1-000001"]
    assert [s.line for s in reader.skipped] == [2, 3, 4] and not reader.torn_tail
    assert "messages: missing" in reader.skipped[1].reason
    assert "not a JSON object" in reader.skipped[2].reason


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(TranscriptError, match="not found") as info:
        read_transcripts(tmp_path / "nope.jsonl")
    assert isinstance(info.value, SparringError)
    assert completed_ids(tmp_path / "nope.jsonl", missing_ok=True) == set()
    with pytest.raises(TranscriptError):
        completed_ids(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    reader = read_transcripts(tmp_path / "empty.jsonl", strict=True)
    assert list(reader) == [] and reader.skipped == []


def test_completed_ids_and_latest_by_id(tmp_path):
    path = tmp_path / "run.jsonl"
    with TranscriptWriter(path) as out:
        out.write(make_episode(0))
        out.write(make_episode(1, status="error"))
        out.write(make_episode(2, status="error"))
    ids = [episode_id("taboo", i, 1) for i in range(3)]
    assert completed_ids(path) == {ids[0]}
    assert completed_ids(path, include_errors=True) == set(ids)

    with TranscriptWriter(path) as out:  # resume replays the error episodes; one succeeds
        out.write(make_episode(1, content="second try"))
        out.write(make_episode(2, status="error"))
    assert completed_ids(path) == {ids[0], ids[1]}
    latest = latest_by_id(read_transcripts(path))
    assert list(latest) == ids
    assert latest[ids[1]].status == "ok" and latest[ids[1]].messages[1].content == "second try"
    assert latest[ids[2]].status == "error"


def test_episode_id_is_deterministic():
    assert episode_id("taboo", 7, seed=42) == "taboo-42-000007" == episode_id("taboo", 7, 42)
    assert episode_id("taboo", 7, seed=43) != episode_id("taboo", 7, seed=42)
    with pytest.raises(TranscriptError, match="index must be >= 0"):
        episode_id("taboo", -1, seed=0)


def test_error_status_needs_message_and_closed_writer_refuses(tmp_path):
    with pytest.raises(ValidationError, match="set `error`"):
        Episode(id="x", protocol=ProtocolRef(name="p"), variables={}, messages=[], status="error")
    out = TranscriptWriter(tmp_path / "deep" / "dir" / "run.jsonl")  # parents are created
    out.close()
    out.close()
    with pytest.raises(TranscriptError, match="closed"):
        out.write(make_episode(0))


def test_unserialisable_variables_raise_transcript_error(tmp_path):
    ep = make_episode(0)
    ep.variables["obj"] = object()
    with TranscriptWriter(tmp_path / "run.jsonl") as out, pytest.raises(TranscriptError, match="JSON-serialisable"):
        out.write(ep)
    assert (tmp_path / "run.jsonl").read_bytes() == b""


async def test_concurrent_asyncio_writers_write_whole_lines(tmp_path):
    path = tmp_path / "run.jsonl"
    big = "x" * 20_000  # large lines make interleaving visible if writes were not serialised

    async def play(i: int, out: TranscriptWriter) -> None:
        await asyncio.sleep(0)
        ep = make_episode(i, content=f"{i}:{big}")
        if i % 2:
            await asyncio.to_thread(out.write, ep)  # threads too, not only loop tasks
        else:
            out.write(ep)

    with TranscriptWriter(path) as out:
        await asyncio.gather(*(play(i, out) for i in range(50)))
    reader = read_transcripts(path, strict=True)
    episodes = list(reader)
    assert len(episodes) == 50 and reader.skipped == []
    assert sorted(ep.id for ep in episodes) == sorted(episode_id("taboo", i, 1) for i in range(50))
    assert all(ep.messages[1].content == f"{int(ep.id[-6:])}:{big}" for ep in episodes)
