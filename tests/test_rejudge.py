"""Re-judging (`sparring judge`, `rejudge`) is safe: refusals, the schedule's message cap,
atomic output, no duplicates, and failures that mark one episode instead of ending the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sparring.cli import app
from sparring.errors import TranscriptError
from sparring.protocols import Judge, load_protocol, parse_protocol, rejudge
from sparring.protocols._schema import ScheduleSpec
from sparring.transcripts import read_transcripts

TABOO = "adversarial_taboo"
HINT = {"role": "attacker", "content": "Many people live close together there."}
CALM = {"role": "defender", "content": "Hmm, no idea yet."}
SAID = {"role": "defender", "content": "Big cities are loud."}


def record(id: str, messages: list[dict], protocol: str = TABOO, target: str = "city", **extra) -> dict:
    """A transcript record as another tool might write it."""
    return {"id": id, "protocol": {"name": protocol}, "variables": {"target": target}, "messages": messages, **extra}


def write(path: Path, *records: dict) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def judge_cli(*args: str):
    return CliRunner().invoke(app, ["judge", *map(str, args)])


def test_schedule_speaking_rounds_and_message_cap():
    taboo = load_protocol(TABOO).spec.schedule
    assert taboo.speaking_rounds() == [["attacker"], ["defender"]] * 5 and taboo.max_messages() == 10
    sequence = ScheduleSpec(type="sequence", order=["a", "b", "a"], rounds=2)
    assert sequence.speaking_rounds() == [["a"], ["b"], ["a"]] * 2 and sequence.max_messages() == 6
    debate = ScheduleSpec(type="simultaneous", order=["a", "b", "c"], rounds=3)
    assert debate.speaking_rounds() == [["a", "b", "c"]] * 3 and debate.max_messages() == 9


def test_output_equal_to_input_is_refused(tmp_path):
    source = write(tmp_path / "in.jsonl", record("x1", [HINT, SAID]))
    before = source.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    for out in (source, link, tmp_path / "." / "in.jsonl"):
        result = judge_cli(TABOO, source, "-o", out, "--overwrite")
        assert result.exit_code == 1 and "is the input transcript" in result.output, result.output
        assert "in-rejudged.jsonl" in result.output
    assert source.read_bytes() == before


def test_other_protocols_records_are_refused_unless_forced(tmp_path):
    source = write(tmp_path / "debate.jsonl", record("d1", [HINT], protocol="debate"),
                   record("d2", [HINT], protocol="debate"), record("t1", [HINT, SAID]))
    out = tmp_path / "out.jsonl"
    result = judge_cli(TABOO, source, "-o", out)
    assert result.exit_code == 1, result.output
    assert "2 of 3 records" in result.output and "2 under 'debate'" in result.output and "--force" in result.output
    assert not out.exists()

    forced = judge_cli(TABOO, source, "-o", out, "--force")
    assert forced.exit_code == 0, forced.output
    episodes = list(read_transcripts(out))
    assert [e.id for e in episodes] == ["d1", "d2", "t1"] and {e.protocol.name for e in episodes} == {TABOO}


def test_only_the_messages_the_schedule_allows_are_judged(tmp_path):
    late = [HINT, CALM] * 5 + [HINT, SAID]  # 12 messages; the defender says the word in the 12th
    in_time = [HINT, CALM] * 4 + [HINT, SAID, HINT, CALM]  # ... and here in the 10th
    source = write(tmp_path / "imported.jsonl", record("late", late), record("in_time", in_time))
    out = tmp_path / "out.jsonl"
    result = judge_cli(TABOO, source, "-o", out)
    assert result.exit_code == 0, result.output
    assert "2 episode(s) go on past where adversarial_taboo's schedule ends (at most 10 messages" in result.output
    late_episode, in_time_episode = read_transcripts(out)
    assert (late_episode.outcome.winner, late_episode.outcome.reason) == (None, "tie")
    assert (in_time_episode.outcome.winner, in_time_episode.outcome.reason) == ("attacker", "defender said the word")
    assert [m.content for m in late_episode.messages] == [m["content"] for m in late]  # kept, unjudged

    summary = rejudge(load_protocol(TABOO), source)
    assert summary.capped == 2 and summary.reasons == {"tie": 1, "defender said the word": 1}


LLM_JUDGED = """\
name: chat_judged
roles:
  alice: {system: You talk.}
  bob: {system: You talk.}
schedule: {order: [alice, bob], max_turns: 2}
judge:
  llm:
    system: You judge.
    prompt: Who won?
    verdicts:
      alice: {winner: alice, reason: judged for alice}
      bob: {winner: bob, reason: judged for bob}
"""


def test_an_llm_verdict_does_not_count_against_the_cap(tmp_path):
    protocol = parse_protocol(LLM_JUDGED)
    talk = [{"role": "alice", "content": "hi"}, {"role": "bob", "content": "hello"}]
    verdict = {"role": "judge", "content": "Bob."}
    source = write(tmp_path / "in.jsonl", record("full", [*talk, verdict], protocol="chat_judged"),
                   record("long", [*talk, talk[0], verdict], protocol="chat_judged"))
    summary = rejudge(protocol, source, tmp_path / "out.jsonl")
    assert summary.capped == 1
    full, long = read_transcripts(tmp_path / "out.jsonl")
    assert full.outcome.reason == "judged for bob"
    assert long.outcome is None or long.outcome.reason != "judged for bob"  # its verdict judged a left-out message
    assert len(long.messages) == 4


def test_existing_output_is_refused_unless_overwrite_and_runs_never_duplicate(tmp_path):
    source = write(tmp_path / "in.jsonl", record("x1", [HINT, CALM]), record("x2", [HINT]),
                   record("x1", [HINT, SAID]))  # x1 replayed: its latest record counts
    out = tmp_path / "out.jsonl"
    first = judge_cli(TABOO, source, "-o", out)
    assert first.exit_code == 0, first.output
    assert "dropped 1 earlier record(s)" in first.output
    written = out.read_bytes()
    episodes = list(read_transcripts(out))
    assert [e.id for e in episodes] == ["x1", "x2"] and episodes[0].outcome.reason == "defender said the word"

    again = judge_cli(TABOO, source, "-o", out)
    assert again.exit_code == 1 and "already holds data" in again.output and "--overwrite" in again.output
    assert out.read_bytes() == written

    replaced = judge_cli(TABOO, source, "-o", out, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert out.read_bytes() == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temporary file left

    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert judge_cli(TABOO, source, "-o", empty).exit_code == 0 and len(list(read_transcripts(empty))) == 2


def test_a_crash_mid_way_leaves_the_previous_output(tmp_path, monkeypatch):
    source = write(tmp_path / "in.jsonl", *(record(f"x{i}", [HINT, SAID]) for i in range(3)))
    out = write(tmp_path / "out.jsonl", record("old", [HINT]))
    before = out.read_bytes()
    calls = []

    def crash_on_the_second(self, outcome, variables, messages=()):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return {"attacker": 1.0, "defender": -1.0}

    monkeypatch.setattr(Judge, "rewards", crash_on_the_second)
    with pytest.raises(RuntimeError, match="power cut"):
        rejudge(load_protocol(TABOO), source, out, overwrite=True)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out.jsonl"]  # no temporary file left

    calls.clear()
    fresh = tmp_path / "new" / "out.jsonl"
    with pytest.raises(RuntimeError):
        rejudge(load_protocol(TABOO), source, fresh)
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []


def test_an_episode_the_judge_fails_on_is_marked_and_the_run_goes_on(tmp_path):
    source = write(tmp_path / "in.jsonl", record("good", [HINT, SAID]), record("bad", [HINT, SAID], target=""),
                   record("also_good", [HINT, CALM]))
    out = tmp_path / "out.jsonl"
    result = judge_cli(TABOO, source, "-o", out)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "1 episode(s) could not be judged" in result.output and "bad: " in result.output
    good, bad, also_good = read_transcripts(out)
    assert good.status == "ok" and good.outcome.reason == "defender said the word"
    assert bad.status == "error" and "target word is empty" in bad.error and bad.outcome is None
    assert also_good.status == "ok" and also_good.outcome.reason == "tie"

    summary = rejudge(load_protocol(TABOO), source)
    assert summary.errors == 1 and len(summary.failures) == 1 and summary.failures[0].startswith("bad: ")
    assert summary.games == 3


def test_logged_errors_are_kept_and_no_output_only_summarises(tmp_path):
    failed = record("failed", [HINT], status="error", error="backend timed out")
    source = write(tmp_path / "in.jsonl", failed, record("ok", [HINT, SAID]))
    summary = rejudge(load_protocol(TABOO), source)
    assert (summary.games, summary.errors, summary.failures) == (2, 1, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
    with pytest.raises(TranscriptError, match="transcript not found"):
        rejudge(load_protocol(TABOO), tmp_path / "missing.jsonl", tmp_path / "out.jsonl")


COUNTDOWN = """\
name: countdown
state: {asked: 0}
update:
  - when: "role == 'asker'"
    set: {asked: "state.asked + 1"}
roles:
  asker: {system: You ask.}
  teller: {system: You answer.}
schedule:
  order: [asker, teller]
  max_turns: 20
  until: "state.asked >= 2"
judge:
  rules:
    - when: "role == 'asker' and mentions(message, 'apple')"
      winner: asker
      reason: guessed
  default: {when: "true", winner: teller, reason: out of questions}
"""


def test_judging_stops_where_until_stops_the_game(tmp_path):
    """Play ends the game after the round where `until` turns true; re-judging does the same, so a
    record that goes on (another tool's, or one played under looser rules) is not won later."""
    protocol = parse_protocol(COUNTDOWN)
    ask, tell = {"role": "asker", "content": "Is it red?"}, {"role": "teller", "content": "Yes."}
    late_guess = {"role": "asker", "content": "Is it an apple?"}
    source = write(tmp_path / "in.jsonl",
                   record("late", [ask, tell, ask, tell, late_guess], protocol="countdown"),
                   record("early", [ask, tell, late_guess], protocol="countdown"))
    summary = rejudge(protocol, source, tmp_path / "out.jsonl")
    early, late = sorted(read_transcripts(tmp_path / "out.jsonl"), key=lambda e: e.id)
    assert late.outcome.reason == "out of questions"  # `until` ended it after the second question's round
    assert early.outcome.reason == "guessed"  # the guess is the second question: still within the game
    assert len(late.messages) == 5 and summary.capped == 1  # the record keeps every message
